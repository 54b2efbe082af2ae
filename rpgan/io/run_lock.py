"""One writer per run: a lock held for a run's (or a sweep's) whole life.

Two `rpgan train --out R` started together, or two `--resume` of one run, would interleave their
checkpoints and metrics. The command that writes a run holds `RUN/.lock`; a second one is
refused in one line naming the holder.

- A local folder (or a shared mount that supports it, such as NFSv4): an exclusive `flock` on
  the file. The kernel releases it when the holding process ends, however it ends, so the lock of
  a process killed with SIGKILL is taken over at once (with a line saying so).
- Behind a URI (s3://, gs://): object stores offer no atomic create-if-absent through pyarrow, so
  the lock is an object holding its holder and a heartbeat, rewritten every HEARTBEAT_S seconds.
  A second writer is refused while the heartbeat is fresh; a lock whose heartbeat is older than
  STALE_S (a writer killed without cleanup) is taken over. Two writers started within the same
  second may both start: that is not guarded against.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rpgan.errors import UserError
from rpgan.io.run import LOCK, Folder

HEARTBEAT_S = 60.0
STALE_S = 300.0


def _holder(what: str) -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "what": what, "since": time.time(),
            "heartbeat": time.time()}


def _describe(holder: dict) -> str:
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder["since"]))
    return f"`{holder['what']}` (pid {holder['pid']} on {holder['host']}, since {since})"


def _read(data: bytes | None) -> dict | None:
    """The holder a lock file names, its fields checked (the file is anyone's to write), or None."""
    try:
        raw = json.loads(data) if data else None
        return {"what": str(raw["what"])[:80], "pid": int(raw["pid"]), "host": str(raw["host"])[:80],
                "since": float(raw["since"]) % 1e11, "heartbeat": float(raw["heartbeat"])}
    except (ValueError, TypeError, KeyError, OverflowError):
        return None


def _same(a: dict | None, b: dict) -> bool:
    return a is not None and all(a[k] == b[k] for k in ("host", "pid", "since"))


@contextmanager
def run_lock(folder: Folder, what: str, other: str = "--out") -> Iterator[None]:
    """Hold `folder`'s lock (creating the folder) while the block runs; UserError naming the
    holder and `other` (the flag that picks another folder) if another process holds it.
    `what`: this command, as the refusal shown to a second writer names it."""
    existed = folder.local is not None and folder.local.exists()
    folder.create()
    if folder.local is None:
        with _lease(folder, what, other):
            yield
        return
    with _flock(folder, what, other, made_folder=not existed):
        yield


def _open(path: Path) -> tuple[int, bool]:
    """A descriptor of the lock file, and whether this call created it."""
    while True:
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644), True
        except FileExistsError:
            try:
                return os.open(path, os.O_RDWR), False
            except FileNotFoundError:  # its holder removed it in between: create it
                continue


@contextmanager
def _flock(folder: Folder, what: str, other: str, made_folder: bool) -> Iterator[None]:
    path = folder.local / LOCK
    fd, made = _open(path)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # the holder's lock and folder are the holder's: nothing is touched
            holder = _read(path.read_bytes())
            who = _describe(holder) if holder else "another process"
            raise UserError(f"{folder.uri} is being written by {who}; a run has one writer: wait for it to end, or "
                            f"choose another {other}") from None
        left = _read(os.pread(fd, 1 << 16, 0))  # what a holder killed without cleanup left behind
        if left:
            print(f"rpgan: taking over the lock of {folder.uri} from {_describe(left)}, which ended without "
                  "releasing it", file=sys.stderr)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(_holder(what)).encode(), 0)
        try:
            yield
        except BaseException:
            if made:  # a failed command leaves no lock file, nor a folder it made and left empty (while it holds it)
                path.unlink(missing_ok=True)
                if made_folder and not any(folder.local.iterdir()):
                    folder.local.rmdir()
            raise
        finally:
            os.ftruncate(fd, 0)  # empty: released cleanly (the flock goes with the descriptor)
    finally:
        os.close(fd)


@contextmanager
def _lease(folder: Folder, what: str, other: str) -> Iterator[None]:
    held = _read(folder.read_bytes(LOCK))
    if held and time.time() - held["heartbeat"] < STALE_S:
        raise UserError(f"{folder.uri} is being written by {_describe(held)}; a run has one writer: wait for it "
                        f"to end, or choose another {other} (a lock without a heartbeat for {STALE_S:.0f} s is "
                        "taken over)")
    if held:
        print(f"rpgan: taking over the lock of {folder.uri} from {_describe(held)}, silent for "
              f"{time.time() - held['heartbeat']:.0f} s", file=sys.stderr)
    mine = _holder(what)
    folder.write_bytes(LOCK, json.dumps(mine).encode())
    done = threading.Event()

    def beat() -> None:
        while not done.wait(HEARTBEAT_S):
            try:
                if not _same(_read(folder.read_bytes(LOCK)), mine):  # taken over: this writer was silent too long
                    print(f"rpgan: the lock of {folder.uri} was taken over by another writer", file=sys.stderr)
                    return
                folder.write_bytes(LOCK, json.dumps({**mine, "heartbeat": time.time()}).encode())
            except Exception as e:  # a store that is down now: the run goes on, the lock may go stale
                print(f"rpgan: could not refresh the lock of {folder.uri} ({type(e).__name__})", file=sys.stderr)

    thread = threading.Thread(target=beat, daemon=True, name="rpgan-lock-heartbeat")
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        try:
            if _same(_read(folder.read_bytes(LOCK)), mine):
                folder.fs.delete_file(f"{folder.path}/{LOCK}")
        except OSError:
            pass
