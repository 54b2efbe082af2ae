"""rpgan's private local Ray, as a user meets it on one machine. Every command that starts one
listens on loopback only, also when a stale /tmp/ray/ray_current_cluster names another Ray (a
`ray start` writes it), and Ray Train's process group (TCPStore, gloo) too; the Ray of a command
killed with SIGKILL ends with it; workers that it could not hold are refused before it starts
and before anything is written. Each command runs as a user runs it, the `rpgan` program in its
own process, all of them at once, their listening sockets (and their children's) sampled until
they exit."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.processes import wait_until_gone
from tests.sockets import is_loopback, watch

import pytest

pytestmark = pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")
RPGAN = str(Path(sys.executable).with_name("rpgan"))


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
    """Training (Ray Train's process group), an analysis command (every analysis command starts
    its Ray through the same analysis.commands._fanout, so `analyze` stands for all), long enough
    to be killed mid-way, and three commands whose workers do not fit this machine."""
    return {
        "train": ["train", "--preset", "digits", "--workers", 2, "--steps", 1, "--batch", 4, "--d-steps", 1,
                  "--storage", out, "--name", "t"],
        "analyze": ["analyze", "--ckpt", ckpt, "--evaluations", 400, "--grids", 0, "--workers", 1, "--out", out / "a"],
        "too-many-gpus": ["analyze", "--ckpt", ckpt, "--workers", 1, "--gpus-per-worker", 1, "--evaluations", 2,
                          "--grids", 0, "--out", out / "g"],
        "too-many-workers": ["train", "--preset", "digits", "--blocks", 2, "--width", 8, "--steps", 3, "--workers", 64,
                             "--storage", out, "--name", "r"],
        "too-many-per-trial": ["sweep", "ablation_blocks", "--quick", "--workers-per-trial", 64, "--storage", out,
                               "--name", "s"],
    }


@pytest.fixture(scope="module")
def private_rays(tiny_ckpt, env, tmp_path_factory):
    """The commands at once, each with its own private Ray, `analyze` SIGKILLed once its first
    task is done: (their outputs folder, {name: Watched})."""
    out = tmp_path_factory.mktemp("private")
    cmds = {name: [RPGAN, *map(str, args)] for name, args in commands(tiny_ckpt, out).items()}
    return out, watch(cmds, env, timeout=400, kill_at={"analyze": "task 1/40 "})


@pytest.mark.slow  # private Rays
def test_every_command_that_starts_a_private_ray_listens_on_loopback_only(private_rays):
    _, runs = private_rays
    assert runs["train"].code == 0 and runs["analyze"].code == -signal.SIGKILL, runs
    for command in ("train", "analyze"):  # the others are refused before their Ray starts (below)
        run = runs[command]
        names = {name for name, _ in run.listening}
        assert {"gcs_server", "raylet"} <= names, (command, run.listening)  # Ray ran, and was watched
        if command == "train":  # Ray Train's workers hold the process group's store
            assert any(name.startswith("ray::RayTrainWo") for name in names), run.listening  # comm: 15 characters
        exposed = {(name, ip) for name, ip in run.listening if not is_loopback(ip)}
        assert not exposed, f"{command} listens beyond loopback: {exposed}"


@pytest.mark.slow  # private Rays
def test_a_private_ray_ends_with_its_command_even_one_killed_with_sigkill(private_rays):
    """Within seconds of `kill -9` no process of that Ray (GCS, raylet, agents, workers) is left;
    before rpgan.distributed.reaper, Ray's agents waited minutes on the dead GCS."""
    _, runs = private_rays
    killed = runs["analyze"]
    assert len(killed.pids) >= 4, killed.pids  # the command, its GCS, raylet and agents at least
    wait_until_gone(killed.pids, seconds=30)
    assert not [pid for pid in killed.pids if _running(pid)]


def _running(pid: int) -> bool:
    """Whether the process exists and is not a zombie waiting to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@pytest.mark.slow  # private Rays
def test_workers_that_a_local_ray_could_not_hold_are_refused_before_it_starts_or_anything_is_written(private_rays):
    out, runs = private_rays
    for name, flags in (("too-many-gpus", "--gpus-per-worker"), ("too-many-workers", "64 workers"),
                        ("too-many-per-trial", "--workers-per-trial")):
        run = runs[name]
        last = run.out.strip().splitlines()[-1]
        assert run.code == 2 and last.startswith("rpgan: ") and "do not fit this machine" in last, run.out
        assert flags in last
        assert not run.listening, run.listening  # no private Ray started, nothing listened
    assert not (out / "g").exists() and not any((out / "r").iterdir()) and not (out / "s").exists()


def test_ray_imported_before_rpgan_is_refused(env):
    script = ("import ray; print(ray.util.get_node_ip_address(), flush=True); "
              "from rpgan.distributed.ray_session import connect; connect(num_cpus=1)")
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    if is_loopback(result.stdout.split()[0]):
        pytest.skip("this machine has no network address for Ray to bind")
    assert result.returncode != 0 and "import rpgan first" in result.stderr


def test_a_private_ray_is_sized_and_judged_before_it_starts(monkeypatch):
    """This machine's CPUs and the GPUs torch sees; a named cluster is never judged (it may grow)."""
    from rpgan.distributed.ray_session import local_resources, refuse_before_start
    from rpgan.errors import UserError

    import torch

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert local_resources() == {"CPU": 4.0, "GPU": 2.0}
    refuse_before_start(None, 2, 2.0, None, "auto", "--workers")  # auto on a machine with GPUs: 1 each
    with pytest.raises(UserError, match=r"3 workers x \(1 CPU, 1 GPU\) do not fit this machine \(4 CPUs, 2 GPUs\)"):
        refuse_before_start(None, 3, 1.0, None, "auto", "--workers")
    with pytest.raises(UserError, match="lower --workers or --cpus-per-worker"):
        refuse_before_start(None, 3, 1.5, 0.0, "auto", "--workers or --cpus-per-worker")
    refuse_before_start("127.0.0.1:6379", 64, 1.0, 8.0, "cuda", "--workers")  # a cluster: no refusal here
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    refuse_before_start(None, 4, 1.0, None, "auto", "--workers")  # no GPU: none by default
    with pytest.raises(UserError, match="0 GPUs"):
        refuse_before_start(None, 1, 1.0, None, "cuda", "--workers")
