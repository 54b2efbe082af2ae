"""One writer per run (rpgan/io/run_lock.py): a second writer is refused in one line naming the
holder, a lock whose holder died is taken over, and a full disk during a checkpoint is one line
with the previous checkpoint intact."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from rpgan.errors import UserError
from rpgan.io import run_lock as lock
from rpgan.io.run import Folder, Run
from rpgan.training.checkpoint import load_generator
from tests.processes import wait_for_output

import pytest

RPGAN = str(Path(sys.executable).with_name("rpgan"))
TINY = ["train", "--blocks", "2", "--width", "8", "--batch", "4", "--sample-every", "0"]


def test_a_second_writer_is_refused_and_a_released_lock_is_free(tmp_path):
    run = Folder.at(tmp_path / "run")
    with lock.run_lock(run, "rpgan train"):
        with pytest.raises(UserError, match=r"is being written by `rpgan train` \(pid \d+ on .*one writer"):
            with lock.run_lock(run, "rpgan train"):
                pass
    with lock.run_lock(run, "rpgan train"):  # released at the end of the block
        pass


def test_a_lock_behind_a_uri_refuses_a_fresh_holder_and_takes_over_a_silent_one(tmp_path, capsys):
    run = Folder(f"file://{tmp_path}", "run")  # the object-store code path, as for s3://
    with lock.run_lock(run, "rpgan sweep"):
        with pytest.raises(UserError, match="is being written by `rpgan sweep`"):
            with lock.run_lock(run, "rpgan sweep"):
                pass
    assert not run.exists(lock.LOCK)  # released
    silent = {"host": "elsewhere", "pid": 1, "what": "rpgan train", "since": 0, "heartbeat": time.time() - 1000}
    run.write_bytes(lock.LOCK, json.dumps(silent).encode())
    with lock.run_lock(run, "rpgan train"):
        assert "taking over the lock" in capsys.readouterr().err


def test_a_refused_run_leaves_no_lock_and_a_lock_file_of_garbage_holds_nothing(tmp_path, rpgan):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "letter.txt").write_text("dear")
    code, _, err = rpgan(*TINY, "--steps", 2, "--out", docs)
    assert code == 2 and "holds other files" in err
    assert [p.name for p in docs.iterdir()] == ["letter.txt"]
    run = Folder(f"file://{tmp_path}", "run")
    run.create()
    for garbage in (b'{"since": "x", "heartbeat": 1e300}', b"[1, 2]", b"\xff"):  # anyone may write the file
        run.write_bytes(lock.LOCK, garbage)
        with lock.run_lock(run, "rpgan train"):
            pass


def test_two_trainings_of_one_run_and_a_killed_writer(tmp_path, rpgan):
    """`rpgan train --out R` while another writes R is refused (a new run or a --resume) and the
    run is left as the writer makes it; once the writer is killed (SIGKILL: no cleanup), the
    next --resume takes the lock over."""
    run = tmp_path / "run"
    writer = subprocess.Popen([RPGAN, *TINY, "--steps", "100000", "--checkpoint-every", "2", "--out", str(run)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_output(writer, "step 1/100000", 120)
        for extra in ([], ["--resume"]):
            code, _, err = rpgan(*TINY, "--steps", "4", "--out", run, *extra)
            assert code == 2 and f"pid {writer.pid}" in err and len(err.strip().splitlines()) == 1, err
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
    code, _, err = rpgan(*TINY, "--steps", 2, "--out", run, "--resume")
    assert code == 0 and "taking over the lock" in err and f"pid {writer.pid}" in err, err


@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs of a few MB (root only: skipped elsewhere), unmounted at the end."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {made.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_during_a_checkpoint_is_one_line_and_keeps_the_previous_one(small_disk, rpgan):
    """On a 3 MB disk the first checkpoint fits and the second does not: one line naming the
    checkpoint, exit 2, no temporary left, and the first loads."""
    run = small_disk / "run"
    code, _, err = rpgan("train", "--blocks", 2, "--width", 16, "--batch", 4, "--sample-every", 0, "--steps", 6,
                         "--checkpoint-every", 2, "--out", run)  # 1.6 MB a checkpoint: weights and Adam's moments
    lines = err.strip().splitlines()
    assert code == 2 and "No space left on device" in lines[-1] and "Traceback" not in err, err
    assert lines[-1].startswith(f"rpgan: {run}/checkpoints/step_") and ".tmp-" not in lines[-1], err
    kept = [Path(c) for c in Run.at(run).checkpoints()]
    assert kept and load_generator(kept[-1])[0] is not None
    assert not [p for p in run.rglob("*") if ".tmp-" in p.name]
