"""The private local Ray ends with the command that started it, however that command ends.

`ray.init` stops its processes when the driver exits or is interrupted, but a driver killed with
SIGKILL cleans up nothing: Ray's agents then wait minutes on a GCS that is gone (about 220 MB
for about 3 minutes, seen after `kill -9` of `rpgan analyze`). Before a private Ray starts, the
driver marks its environment, which Ray's workers inherit, and starts this reaper in its own
session. The reaper notes the driver's process tree every second (Ray starts its agents with
an environment of its own, so they carry no mark) and, once the driver has ended, kills what is
left of that tree and every process still carrying the mark.

    python -m rpgan.distributed.reaper DRIVER_PID MARK
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

MARK = "RPGAN_PRIVATE_RAY"  # the environment variable that marks a private Ray's processes


def start(environ: dict[str, str] = os.environ) -> None:
    """Mark `environ` (this process's, inherited by the Ray it is about to start) and start the
    reaper of what carries the mark once this process ends. Linux only (pidfd, /proc)."""
    if not hasattr(os, "pidfd_open") or not Path("/proc/self/environ").exists():
        return
    environ[MARK] = uuid.uuid4().hex
    subprocess.Popen([sys.executable, "-m", "rpgan.distributed.reaper", str(os.getpid()), environ[MARK]],
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True, env={k: v for k, v in environ.items() if k != MARK})


def marked(mark: str) -> list[int]:
    """The processes whose environment holds MARK=mark."""
    return with_environ(f"{MARK}={mark}".encode())


def with_environ(entry: bytes) -> list[int]:
    """The processes (this one excepted) whose environment holds `entry` (b"NAME=value")."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                if entry in (proc / "environ").read_bytes().split(b"\0"):
                    found.append(int(proc.name))
            except OSError:  # gone, or not ours to read
                continue
    return found


def _started(pid: int) -> str | None:
    """A process's start time (field 22 of /proc/PID/stat): with the pid, it names one process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[19]
    except (OSError, IndexError):
        return None


def descendants(root: int) -> set[int]:
    """Every process below root (root excepted)."""
    children: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                parent = int((proc / "stat").read_text().rpartition(")")[2].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(proc.name))
    found, todo = set(), list(children.get(root, []))
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo.extend(children.get(pid, []))
    return found


def _tree(root: int) -> dict[int, str]:
    """root's descendants but this process, pid -> start time."""
    return {pid: started for pid in descendants(root) if pid != os.getpid() and (started := _started(pid))}


def reap(driver: int, mark: str) -> None:
    """Note `driver`'s process tree until the driver ends, then SIGKILL what is left of it and the
    marked processes until none is left (Ray's processes may still start others for a moment)."""
    seen: dict[int, str] = {}
    try:
        fd = os.pidfd_open(driver)
        while not select.select([fd], [], [], 1.0)[0]:  # readable once the driver has exited
            seen.update(_tree(driver))
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        left = [pid for pid, started in seen.items() if _started(pid) == started] + marked(mark)
        if not left:
            return
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.2)


if __name__ == "__main__":
    reap(int(sys.argv[1]), sys.argv[2])
