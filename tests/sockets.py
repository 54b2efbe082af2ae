"""What a process tree listens on, read from Linux's /proc (no ss, no psutil needed)."""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
import subprocess
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

from tests.processes import descendants


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


class Watched(NamedTuple):
    code: int
    out: str
    listening: set  # {(process name, IP)} of every socket the command's process tree listened on
    pids: set  # every process seen in its tree


def watch(cmds: dict[str, list[str]], env: dict[str, str], timeout: float,
          kill_at: dict[str, str] | None = None) -> dict[str, Watched]:
    """Run the commands at once, sampling what each one's process tree listens on until it exits.
    `kill_at[name]`: SIGKILL that command (not its children: as a user's `kill -9`) once its
    output holds this text."""
    procs, outs, seen = {}, {}, {name: set() for name in cmds}
    pids = {name: set() for name in cmds}
    for name, cmd in cmds.items():
        outs[name] = tempfile.TemporaryFile(mode="w+")  # a pipe could fill up and stall the command
        procs[name] = subprocess.Popen(cmd, env=env, stdout=outs[name], stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + timeout
    while any(p.poll() is None for p in procs.values()) and time.monotonic() < deadline:
        listening = listening_sockets()
        for name, proc in procs.items():
            if proc.poll() is None:
                tree = descendants(proc.pid)
                pids[name] |= tree
                owners = socket_owners(tree)
                seen[name] |= {(owners[i], listening[i]) for i in owners if i in listening}
                if kill_at and name in kill_at:
                    outs[name].seek(0)
                    if kill_at[name] in outs[name].read():
                        proc.kill()
        running = next((p for p in procs.values() if p.poll() is None), None)
        if running:  # the next sample in 0.2 s, or as soon as that command ends
            try:
                running.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                pass
    results = {}
    for name, proc in procs.items():
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        outs[name].seek(0)
        results[name] = Watched(proc.returncode, outs[name].read(), seen[name], pids[name])
        outs[name].close()
    return results
