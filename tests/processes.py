"""The processes a test starts: the tree below one, and waiting on what one prints."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time

from rpgan.distributed.reaper import descendants as below
from rpgan.distributed.reaper import with_environ


def descendants(root: int) -> set[int]:
    """root and every process below it."""
    return {root} | below(root)


def wait_for_output(process: subprocess.Popen, text: str, seconds: float) -> str:
    """Read the process's output until `text` appears in it; what was read. Fails if the
    process ends or `seconds` pass first."""
    seen, fd, deadline = "", process.stdout.fileno(), time.monotonic() + seconds
    while text not in seen:
        ready = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]
        chunk = os.read(fd, 65536).decode(errors="replace") if ready else ""
        assert chunk, f"no {text!r} from the process before it ended or {seconds:g} s passed:\n{seen}"
        seen += chunk
    return seen


def wait_until_gone(pids: set[int], seconds: float = 60) -> None:
    """Ray's workers outlive a killed driver by a moment (until they notice their raylet is
    gone), and one could still finish writing a row: wait until they have all exited. A
    pidfd becomes readable when its process exits."""
    fds = []
    for pid in pids:
        try:
            fds.append(os.pidfd_open(pid))
        except ProcessLookupError:
            pass  # already gone
    try:
        deadline = time.monotonic() + seconds
        waiting = list(fds)
        while waiting and time.monotonic() < deadline:
            ready = select.select(waiting, [], [], deadline - time.monotonic())[0]
            waiting = [fd for fd in waiting if fd not in ready]
    finally:
        for fd in fds:
            os.close(fd)


def kill_marked(marker: bytes) -> None:
    """Stop the Ray a test started (`ray start`) by the ids of its own processes, found by
    `marker`. Not `ray stop --force`: that kills every Ray process on the machine, other
    clusters and other tests' local Rays included."""
    deadline = time.monotonic() + 20
    while (pids := with_environ(marker)) and time.monotonic() < deadline:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        wait_until_gone(set(pids), seconds=2)
