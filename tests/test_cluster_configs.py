"""The cluster launcher configs pass Ray's own validation and keep the cluster private."""

from __future__ import annotations

from pathlib import Path

import pytest
import ray
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

CLUSTER = Path(__file__).resolve().parents[1] / "cluster"


def load(name: str) -> dict:
    return yaml.safe_load((CLUSTER / name).read_text())


@pytest.mark.parametrize("name", ["gpu.yaml", "local.yaml"])
def test_ray_accepts_the_config(name):
    validate_config(prepare_config(load(name)))


@pytest.mark.parametrize("name", ["gpu.yaml", "local.yaml"])
def test_the_dashboard_stays_private(name):
    text = (CLUSTER / name).read_text()
    head = " ".join(load(name)["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head and "0.0.0.0" not in text


def test_the_gpu_cluster_runs_the_pinned_ray_with_gpu_workers():
    cfg = load("gpu.yaml")
    assert cfg["docker"]["image"] == f"rayproject/ray:{ray.__version__}-py311-gpu"
    assert cfg["provider"]["type"] == "aws"
    worker = cfg["available_node_types"]["gpu_worker"]
    assert worker["min_workers"] == 0 and worker["max_workers"] > 0 and worker["node_config"]["InstanceType"][0] == "g"
    assert any("pip install" in c and "/home/ray/rpgan" in c for c in cfg["setup_commands"])


def test_validation_rejects_a_broken_config():
    cfg = load("gpu.yaml")
    cfg["available_node_types"]["gpu_worker"]["min_workers"] = "many"
    with pytest.raises(Exception, match="min_workers|many"):
        validate_config(prepare_config(cfg))
