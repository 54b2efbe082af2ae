"""A cluster whose nodes have their own addresses, CPUs and disks (the session's: two nodes of one
CPU, the second without the driver's `private` folder): analysis reads a local run on any node,
workers are sized to fit a node, what cannot be placed is refused at once or within the bound,
and a local --storage or data that another node cannot see is refused before any work."""

from __future__ import annotations

import shutil
import time

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # a Ray cluster: `make test` only

TRAIN = ["train", "--preset", "digits", "--blocks", "2", "--width", "8", "--batch", "4", "--d-steps", "1",
         "--steps", "2", "--sample-every", "0"]


@pytest.fixture
def private(ray_cluster):
    """A folder of this machine's disk that the cluster's second node does not see."""
    if ray_cluster.private is None:
        pytest.skip("no mount namespace here (it needs root): the session's two nodes share one disk")
    return ray_cluster.private


def _one_line(code: int, err: str, expected_code: int, *texts: str) -> None:
    last = err.strip().splitlines()[-1] if err.strip() else ""
    assert code == expected_code and last.startswith("rpgan: ") and all(t in last for t in texts), err


def test_analysis_of_a_run_on_the_drivers_disk_runs_on_every_node(rpgan, tiny_ckpt, private):
    """Two workers of one CPU: one on each node; the second node cannot read the run, so its
    worker gets the generator through Ray's object store. One worker by default takes an equal
    share of the cluster's 2 CPUs, capped at a node's 1 (it used to ask for 2 and wait forever)."""
    run = private / "run"
    shutil.copytree(tiny_ckpt.parent.parent, run)
    for job in (["analyze", "--evaluations", 2, "--grids", 0, "--workers", 2],
                ["analyze", "--evaluations", 2, "--grids", 0, "--workers", 1],
                ["fid", "--n", 10, "--reference-n", 10, "--no-prd", "--workers", 2],
                ["dissect", "--n", 4, "--units", 1, "--strips", 0, "--chunk", 2, "--workers", 2],
                ["directions", "--directions", 2, "--steps", 1, "--batch", 2, "--workers", 2]):
        code, out, err = rpgan(*job, "--ckpt", run, "--out", private / f"out-{job[0]}-{job[-1]}")
        assert code == 0, (job, err)


def test_what_no_node_holds_is_refused_at_once_and_what_finds_no_room_within_the_bound(ray_cluster, rpgan, tiny_ckpt,
                                                                                       s3, monkeypatch):
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group

    analysis = ["analyze", "--ckpt", tiny_ckpt, "--evaluations", 4, "--chunk", 1, "--grids", 0]
    code, _, err = rpgan(*analysis, "--workers", 1, "--gpus-per-worker", 1, "--out", s3 + "/never")
    _one_line(code, err, 2, "no node of this cluster has (", "1 GPU)", "its nodes: (1 CPU)", "--gpus-per-worker")
    monkeypatch.setenv("RPGAN_PLACEMENT_TIMEOUT_S", "6")  # over the 5 s after which training says it waits
    start = time.monotonic()
    code, _, err = rpgan(*analysis, "--workers", 3, "--out", s3 + "/never")  # 3 of 1 CPU on 2 CPUs
    _one_line(code, err, 1, "did not start 3 analysis workers", "in 6 s", "--workers")
    # within the bound, also one shorter than the 30 s before the waiting line (it used to wait those first)
    assert time.monotonic() - start < 6 + 12
    code, _, err = rpgan(*TRAIN, "--workers", 3, "--storage", f"{s3}/runs", "--name", "three")
    _one_line(code, err, 1, "did not find room for 3 workers", "--workers")
    # nothing left running or reserved: both nodes' CPUs can be taken again, one each
    both = placement_group([{"CPU": 1}] * 2, strategy="STRICT_SPREAD")
    try:
        ready, _ = ray.wait([both.ready()], timeout=30)
        assert ready
    finally:
        remove_placement_group(both)


def test_a_local_storage_or_data_that_another_node_cannot_see_is_refused_before_training(rpgan, private, s3):
    storage = ["--storage", private / "runs", "--name", "r"]
    code, _, err = rpgan(*TRAIN, "--workers", 2, *storage)
    _one_line(code, err, 2, "is a local path and this Ray cluster has 2 nodes", "s3://", "--shared-storage")
    code, _, err = rpgan(*TRAIN, "--workers", 2, *storage, "--shared-storage")
    _one_line(code, err, 2, "is not shared by every node", "127.0.0.2")
    assert not list((private / "runs").rglob("checkpoints"))
    np.savez(private / "images.npz", x=np.random.default_rng(0).integers(0, 255, (16, 16, 16, 3), dtype=np.uint8))
    code, _, err = rpgan(*TRAIN, "--workers", 2, "--data", f"npz:{private / 'images.npz'}", "--storage", f"{s3}/runs",
                         "--name", "npz")
    _one_line(code, err, 2, "is not on every node", "127.0.0.2", "same path on every node")
