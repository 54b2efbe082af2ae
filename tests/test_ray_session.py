"""A private local Ray listens on loopback only (nothing reachable from the network)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.sockets import is_loopback, listening_sockets, socket_owners

pytestmark = pytest.mark.slow  # a local Ray or real training: `make test` only


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")
def test_local_ray_listens_on_loopback_only(monkeypatch):
    import ray

    from rpgan.distributed.ray_session import connect

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    connect(num_cpus=1)
    try:
        assert ray.get(ray.remote(lambda: 1).remote()) == 1
        ray_pids = {int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _is_ray(p)}
        listening = listening_sockets()
        ray_ips = {listening[i] for i in socket_owners(ray_pids | {os.getpid()}) if i in listening}
        assert ray_ips and all(is_loopback(ip) for ip in ray_ips), ray_ips
    finally:
        ray.shutdown()


def _is_ray(proc: Path) -> bool:
    try:
        return b"ray" in (proc / "cmdline").read_bytes()
    except OSError:
        return False
