"""Every command that starts a private local Ray listens on loopback only, also when a stale
/tmp/ray/ray_current_cluster names another Ray (a `ray start` writes it), and Ray Train's
process group (TCPStore, gloo) too. Each command runs as a user runs it: the `rpgan` program in
its own process, whose listening sockets (and its children's) are sampled until it exits."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.sockets import is_loopback, watch

pytestmark = pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")
RPGAN = str(Path(sys.executable).with_name("rpgan"))


@pytest.fixture
def ckpt(tiny_ckpt) -> Path:
    return tiny_ckpt


@pytest.fixture(scope="module")
def env():
    """The user's environment, without a Ray address or the switch rpgan sets for Ray (the
    command must set it itself), and with Ray's temp folder holding a stale record of a cluster
    at a loopback port where nothing listens. Short: Ray's socket paths live there."""
    tmp = tempfile.mkdtemp(prefix="rpgan-ray-", dir="/tmp")
    (Path(tmp) / "ray").mkdir()
    (Path(tmp) / "ray" / "ray_current_cluster").write_text("127.0.0.1:1\n")
    unset = ("RAY_ADDRESS", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")
    yield {**{k: v for k, v in os.environ.items() if k not in unset}, "RAY_TMPDIR": tmp}
    shutil.rmtree(tmp, ignore_errors=True)


def commands(ckpt: Path, out: Path) -> dict[str, list]:
    """Training (Ray Train's process group) and one analysis command: every analysis command
    starts its Ray through the same analysis.commands._fanout, so `analyze` stands for all."""
    return {
        "train": ["train", "--preset", "digits", "--workers", 2, "--steps", 1, "--batch", 4, "--d-steps", 1,
                  "--storage", out, "--name", "t"],
        "analyze": ["analyze", "--ckpt", ckpt, "--evaluations", 1, "--grids", 0, "--workers", 1, "--out", out / "a"],
    }


@pytest.mark.slow  # two private Rays
def test_every_command_that_starts_a_private_ray_listens_on_loopback_only(ckpt, env, tmp_path):
    """Both at once (each with its own Ray): the wall time of the slower. `rpgan sweep` is
    watched the same way in tests/test_sweeps.py, on a run that is there anyway."""
    runs = watch({name: [RPGAN, *map(str, args)] for name, args in commands(ckpt, tmp_path).items()}, env, timeout=400)
    for command, (code, out, seen, _) in runs.items():
        assert code == 0, f"{command}: {out[-3000:]}"
        names = {name for name, _ in seen}
        assert {"gcs_server", "raylet"} <= names, (command, seen)  # Ray ran, and was watched
        if command == "train":  # Ray Train's workers hold the process group's store
            assert any(name.startswith("ray::RayTrainWo") for name in names), seen  # comm: 15 characters
        exposed = {(name, ip) for name, ip in seen if not is_loopback(ip)}
        assert not exposed, f"{command} listens beyond loopback: {exposed}"


def test_ray_imported_before_rpgan_is_refused(env):
    script = ("import ray; print(ray.util.get_node_ip_address(), flush=True); "
              "from rpgan.distributed.ray_session import connect; connect(num_cpus=1)")
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    if is_loopback(result.stdout.split()[0]):
        pytest.skip("this machine has no network address for Ray to bind")
    assert result.returncode != 0 and "import rpgan first" in result.stderr
