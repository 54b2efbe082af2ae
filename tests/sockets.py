"""What a process tree listens on, read from Linux's /proc (no ss, no psutil needed)."""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
import subprocess
import time
from pathlib import Path


def listening_sockets() -> dict[int, str]:
    """inode -> local IP of every listening TCP socket (IPv4 and IPv6) of this machine."""
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


def is_loopback(ip: str) -> bool:
    addr = ipaddress.ip_address(ip)
    return addr.is_loopback or bool(getattr(addr, "ipv4_mapped", None) and addr.ipv4_mapped.is_loopback)


def descendants(root: int) -> set[int]:
    """root and every process below it."""
    children: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                ppid = int((proc / "stat").read_text().rpartition(")")[2].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(proc.name))
    tree, todo = set(), [root]
    while todo:
        pid = todo.pop()
        tree.add(pid)
        todo.extend(children.get(pid, []))
    return tree


def socket_owners(pids: set[int]) -> dict[int, str]:
    """inode -> process name of every socket the processes hold."""
    owners = {}
    for pid in pids:
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    owners[int(target[8:-1])] = name
        except OSError:
            continue
    return owners


def watch(cmd: list[str], env: dict[str, str], timeout: float) -> tuple[int, str, set[tuple[str, str]]]:
    """Run cmd, sampling what its process tree listens on until it exits: (exit code, its
    output, {(process name, IP)})."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen: set[tuple[str, str]] = set()
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        owners, listening = socket_owners(descendants(proc.pid)), listening_sockets()
        seen |= {(owners[i], listening[i]) for i in owners if i in listening}
        time.sleep(0.2)
    if proc.poll() is None:
        proc.kill()
    out = proc.communicate()[0]
    return proc.returncode, out, seen
