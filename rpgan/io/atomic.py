"""Atomic, durable writes: write under a temporary name in the same directory, flush it to disk,
then rename.

A killed job leaves either the old file (or directory) or the new one, never half of one, and
a power cut after the rename cannot leave a renamed but empty file: the data is fsynced before
the rename and the directory after it. Leftover temporaries of a killed write are hidden
(`.NAME.tmp-*`) and removed by `remove_leftovers`.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path


def fsync_path(path: Path) -> None:
    """Flush a file, or a directory's entries, to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(folder: Path) -> None:
    """Flush every file under `folder`, and the folders themselves, to disk."""
    for parent, _, files in os.walk(folder):
        for name in files:
            fsync_path(Path(parent) / name)
        fsync_path(Path(parent))


def _temporary(path: Path, kind: str) -> Path:
    return path.with_name(f".{path.name}.{kind}-{uuid.uuid4().hex[:8]}")


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Call write(tmp_path), flush it, then rename tmp_path to path. Returns path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(path, "tmp")
    try:
        write(tmp)
        fsync_path(tmp)
        os.replace(tmp, path)
        fsync_path(path.parent)
    except OSError as e:
        raise _named(e, path, tmp) from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _named(e: OSError, path: Path, tmp: Path) -> OSError:
    """The error of a write into the temporary `tmp`, naming `path`, the file the user asked for,
    instead (an error about any other file is left as it is)."""
    if e.errno and (e.filename is None or str(e.filename).startswith(str(tmp))):
        return OSError(e.errno, e.strerror, str(path))
    return e


def atomic_dir(path: Path, fill: Callable[[Path], None]) -> Path:
    """Call fill(tmp_dir), flush it, then move tmp_dir into place as path, replacing any old one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp, old = _temporary(path, "tmp"), _temporary(path, "old")
    try:
        tmp.mkdir()
        fill(tmp)
        fsync_tree(tmp)
        if path.exists():
            os.rename(path, old)
        os.rename(tmp, path)
        fsync_path(path.parent)
    except OSError as e:
        raise _named(e, path, tmp) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return path


def remove_leftovers(folder: Path) -> list[Path]:
    """Delete the temporaries that killed atomic writes left in `folder`; returns them. Call it
    only while no other process writes there (at the start of a run)."""
    found = [p for p in Path(folder).glob(".*") if ".tmp-" in p.name or ".old-" in p.name] \
        if Path(folder).is_dir() else []
    for p in found:
        shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink(missing_ok=True)
    return found
