"""A private local Ray listens on loopback only (nothing reachable from the network)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.sockets import is_loopback, watch

pytestmark = pytest.mark.slow  # a local Ray or real training: `make test` only


PRIVATE_RAY = """
import rpgan  # first: a local Ray binds to loopback
import ray
from rpgan.distributed.ray_session import connect
connect(num_cpus=1)
assert ray.get(ray.remote(lambda: 1).remote()) == 1
import time; time.sleep(2)  # its agents are up
"""


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")
def test_local_ray_listens_on_loopback_only():
    """A process that starts rpgan's private Ray and runs a task: every socket its tree listens on."""
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")}
    run = watch({"ray": [sys.executable, "-c", PRIVATE_RAY]}, env, timeout=180)["ray"]
    assert run.code == 0, run.out
    assert {"gcs_server", "raylet"} <= {name for name, _ in run.listening}, run.listening
    assert all(is_loopback(ip) for _, ip in run.listening), run.listening


def test_a_private_ray_ends_with_its_command_even_one_killed_with_sigkill(tiny_ckpt, tmp_path):
    """`kill -9` of `rpgan analyze` once its private Ray is up: within seconds no process of that
    Ray (GCS, raylet, agents, workers) is left; without the reaper, Ray's agents waited minutes."""
    import signal
    import subprocess
    import sys
    import time

    from tests.processes import descendants, wait_for_output, wait_until_gone

    ckpt = tiny_ckpt
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    driver = subprocess.Popen([str(Path(sys.executable).with_name("rpgan")), "analyze", "--ckpt", str(ckpt),
                               "--evaluations", "400", "--workers", "1", "--out", str(tmp_path / "a")],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    wait_for_output(driver, "Ray: 1 node(s)", 180)
    time.sleep(3)  # the agents and the analysis worker start
    ray_processes = descendants(driver.pid) - {driver.pid}
    assert len(ray_processes) >= 3, ray_processes  # GCS, raylet and its agents at least
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    wait_until_gone(ray_processes, seconds=30)
    left = [pid for pid in ray_processes if _running(pid)]
    assert not left, left


def _running(pid: int) -> bool:
    """Whether the process exists and is not a zombie waiting to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return False
