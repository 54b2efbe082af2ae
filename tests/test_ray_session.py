"""A private local Ray listens on loopback only (nothing reachable from the network)."""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from pathlib import Path

import pytest


def _listening_sockets() -> dict[int, str]:
    """inode -> local IP of every listening TCP socket (IPv4 and IPv6), from /proc/net."""
    found = {}
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A":  # LISTEN
                continue
            raw = bytes.fromhex(fields[1].split(":")[0])
            words = struct.unpack(f"<{len(raw) // 4}I", raw)  # kernel order: 32-bit little-endian words
            found[int(fields[9])] = socket.inet_ntop(family, struct.pack(f">{len(words)}I", *words))
    return found


def _loopback(ip: str) -> bool:
    addr = ipaddress.ip_address(ip)
    return addr.is_loopback or bool(getattr(addr, "ipv4_mapped", None) and addr.ipv4_mapped.is_loopback)


def _ray_socket_inodes() -> set[int]:
    inodes = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes()
            if b"ray" not in cmd and int(proc.name) != os.getpid():
                continue
            for fd in (proc / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(int(target[8:-1]))
        except OSError:
            continue
    return inodes


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")
def test_local_ray_listens_on_loopback_only(monkeypatch):
    import ray

    from rpgan.ray_session import connect

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    connect(num_cpus=1)
    try:
        assert ray.get(ray.remote(lambda: 1).remote()) == 1
        listening = _listening_sockets()
        ray_ips = {listening[i] for i in _ray_socket_inodes() if i in listening}
        assert ray_ips and all(_loopback(ip) for ip in ray_ips), ray_ips
    finally:
        ray.shutdown()
