"""A named folder under a storage root, a local path (one machine, NFS) or a URI such as s3://...
(`Folder`: a sweep, an analysis output), and the one owner of a training run's directory (`Run`):

    run.json              the run's configuration (Ray Train and sweep runs: another configuration
                          under the same name is refused)
    checkpoints/step_N/   checkpoints, each written whole, then moved into place
                          (rpgan.training.checkpoint writes their files)
    metrics.parquet       one row per logged step (rpgan.training.run_log)
    tensorboard/          the same scalars, sample grids and settings as TensorBoard events
    analysis/             analysis jobs' tables and plots, by default
    .lock                 held by the process writing the run (rpgan.io.run_lock)

and what training draws there (samples/, samples.png, the layer grid), named where it is drawn
(rpgan.training.train.OUTPUTS). Only this module names the files above or lists a run's
checkpoints: in-process training, Ray Train, `extend`, `compress`, the sweeps and every `--ckpt`
reader go through `Run`. Files go through
pyarrow.fs, Ray's own storage layer, so local paths and cloud URIs behave alike; each is written
to a temporary name, then moved into place.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from rpgan.config import RunConfig
from rpgan.errors import UserError
from rpgan.io.atomic import atomic_dir, atomic_write, fsync_tree, remove_leftovers
from rpgan.io.remote import filesystem, is_uri, put_bytes, remote_errors, upload

import pyarrow.fs as pafs

RUN_CONFIG = "run.json"
CHECKPOINTS = "checkpoints"
CHECKPOINT_CONFIG = "config.json"  # what makes a directory a checkpoint
METRICS_FILE = "metrics.parquet"
TENSORBOARD = "tensorboard"
ANALYSIS = "analysis"  # where analysis jobs write by default
LOCK = ".lock"
RUN_FILES = frozenset({RUN_CONFIG, CHECKPOINTS, METRICS_FILE, TENSORBOARD, ANALYSIS, LOCK})
STEP_DIR = re.compile(r"^step_(\d+)$")
KEEP = 3  # checkpoints a run keeps


def plain_name(name: str) -> str:
    """`name` if it names a directory inside its storage root (no separator, not hidden, not ..)."""
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise UserError(f"--name {name!r}: use a plain directory name like cifar10-blocks40")
    return name


class Folder:
    """A named directory STORAGE/NAME, local or behind a URI, read and written through pyarrow.fs."""

    def __init__(self, storage: str, name: str, typed: bool = True):
        """`typed`: `name` is a --name the user typed, refused unless a plain directory name."""
        self.name = plain_name(name) if typed else name
        if is_uri(storage):
            self.fs, root = filesystem(storage)
            self.storage, self.local = storage.rstrip("/"), None
        else:
            root = str(Path(storage).expanduser().resolve())
            self.fs, self.storage = pafs.LocalFileSystem(), root
            self.local = Path(root) / name
        self.path = f"{root.rstrip('/')}/{name}"
        self.uri = f"{self.storage}/{name}"

    @classmethod
    def at(cls, location: str | Path) -> Folder:
        """The folder at a local path or a URI (its last component is the name)."""
        if is_uri(location):  # as given, a bucket's root (s3://bucket) included
            folder = cls.__new__(cls)
            folder.uri, folder.local = str(location).rstrip("/"), None
            folder.storage, _, folder.name = folder.uri.rpartition("/")
            folder.fs, folder.path = filesystem(folder.uri)
            return folder
        path = Path(location).expanduser().resolve()
        return cls(str(path.parent), path.name, typed=False)

    def read_bytes(self, name: str) -> bytes | None:
        """The file NAME (a path relative to the folder), or None if there is none."""
        try:
            with remote_errors(self.uri), self.fs.open_input_stream(f"{self.path}/{name}") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def read_text(self, name: str) -> str | None:
        data = self.read_bytes(name)
        return None if data is None else data.decode()

    def create(self) -> None:
        """Make the folder; refuses a storage that cannot be written (a missing bucket, a path
        through a file) before any work starts."""
        with remote_errors(self.uri):
            self.fs.create_dir(self.path, recursive=True)

    def exists(self, name: str) -> bool:
        with remote_errors(self.uri):
            return self.fs.get_file_info(f"{self.path}/{name}".rstrip("/")).type != pafs.FileType.NotFound

    def write_bytes(self, name: str, data: bytes) -> None:
        """Write the file NAME (may hold subdirectories) under a temporary name, then move it
        (locally: flushed to disk first, rpgan.io.atomic)."""
        if self.local is not None:
            atomic_write(self.local / name, lambda tmp: tmp.write_bytes(data))
            return
        with remote_errors(self.uri):
            put_bytes(self.fs, f"{self.path}/{name}", data)

    def upload(self, local: Path, subdir: str = "") -> None:
        """Write every file under the local directory `local` into SUBDIR of the folder."""
        if self.local is not None:
            for file in sorted(p for p in Path(local).rglob("*") if p.is_file()):
                self.write_bytes(f"{subdir}/{file.relative_to(local).as_posix()}".lstrip("/"), file.read_bytes())
            return
        upload(local, f"{self.uri}/{subdir}".rstrip("/"))

    def files(self, subdir: str) -> list[str]:
        """Names of the plain files in SUBDIR (hidden temporaries left out), sorted."""
        return self._list(subdir, pafs.FileType.File)

    def dirs(self, subdir: str) -> list[str]:
        """Names of the directories in SUBDIR, sorted."""
        return self._list(subdir, pafs.FileType.Directory)

    def _list(self, subdir: str, kind: pafs.FileType) -> list[str]:
        with remote_errors(self.uri):
            found = self.fs.get_file_info(pafs.FileSelector(f"{self.path}/{subdir}", allow_not_found=True))
        return sorted(i.base_name for i in found if i.type == kind and not i.base_name.startswith("."))


class Mirror:
    """A local folder whose new and changed files `sync` copies into a Folder (TensorBoard
    events and sample grids of a run stored behind a URI)."""

    def __init__(self, folder: Folder, local: Path):
        self.folder, self.local = folder, Path(local)
        self._synced: dict[str, tuple[int, int]] = {}

    def sync(self) -> None:
        for file in sorted(p for p in self.local.rglob("*") if p.is_file()):
            name, stat = file.relative_to(self.local).as_posix(), file.stat()
            if self._synced.get(name) != (stat.st_size, stat.st_mtime_ns):
                self.folder.write_bytes(name, file.read_bytes())
                self._synced[name] = (stat.st_size, stat.st_mtime_ns)


class Run(Folder):
    """The directory of one training run (the layout above), at a local path or a URI."""

    @staticmethod
    def checkpoint_name(step: int) -> str:
        """Where the checkpoint of `step` lives inside a run: checkpoints/step_NNNNNNNN."""
        return f"{CHECKPOINTS}/step_{step:08d}"

    def checkpoint(self, step: int) -> str:
        """The checkpoint of `step`: a local path, or a URI."""
        return str(self.local / self.checkpoint_name(step)) if self.local is not None else \
            f"{self.uri}/{self.checkpoint_name(step)}"

    def checkpoint_steps(self) -> list[int]:
        """Steps of the run's checkpoints, ascending."""
        return sorted(int(m.group(1)) for name in self.dirs(CHECKPOINTS) if (m := STEP_DIR.match(name)))

    def checkpoints(self) -> list[str]:
        """The run's checkpoints (`checkpoint`), oldest first."""
        return [self.checkpoint(step) for step in self.checkpoint_steps()]

    def put_checkpoint(self, step: int, write: Callable[[Path], None]) -> str:
        """Make the checkpoint of `step`: `write(folder)` writes its files into an empty local
        folder, which becomes checkpoints/step_N whole (locally: flushed to disk, then renamed;
        behind a URI: each file uploaded, and a partial upload fails to load, so a resume skips
        it). Then deletes what `prunable` says. Returns the checkpoint."""
        if self.local is not None:
            atomic_dir(self.local / self.checkpoint_name(step), write)
        else:
            with tempfile.TemporaryDirectory(prefix="rpgan-checkpoint-") as folder:
                write(Path(folder))
                upload(Path(folder), self.checkpoint(step))
        self.prune_checkpoints(step)
        return self.checkpoint(step)

    def settle_checkpoint(self, step: int) -> str:
        """After another writer (Ray Train copies the checkpoints its workers report) put the
        checkpoint of `step` into the run: flush it to disk (locally), then prune. Returns it."""
        if self.local is not None:  # on disk before anything older goes
            fsync_tree(self.local / self.checkpoint_name(step))
        self.prune_checkpoints(step)
        return self.checkpoint(step)

    def prune_checkpoints(self, step: int) -> None:
        """Delete what `prunable` says, once the checkpoint of `step` is persisted."""
        for old in prunable(self.checkpoint_steps(), step):
            if self.local is not None:
                shutil.rmtree(self.local / self.checkpoint_name(old), ignore_errors=True)
            else:
                with remote_errors(self.uri):
                    self.fs.delete_dir(f"{self.path}/{self.checkpoint_name(old)}")

    def remove_leftovers(self) -> None:
        """Delete the temporaries of writes killed mid-way (locally; a URI's are the store's business)."""
        if self.local is not None:
            for folder in (self.local, self.local / CHECKPOINTS):
                remove_leftovers(folder)

    def foreign_files(self, outputs: frozenset[str]) -> list[str]:
        """Names in the run's folder, hidden ones too, that are neither Run's files nor the
        trainer's `outputs` (a new run refuses to write there)."""
        with remote_errors(self.uri):
            found = self.fs.get_file_info(pafs.FileSelector(self.path, allow_not_found=True))
        return sorted(i.base_name for i in found if i.base_name not in RUN_FILES | outputs)

    def saved_config(self) -> RunConfig | None:
        """The configuration the run was started with, or None for a new name."""
        data = self.read_bytes(RUN_CONFIG)  # bytes: RunConfig.from_json reports bad UTF-8 as one line
        if data is None:
            if self.checkpoint_steps():
                raise UserError(f"{self.uri} holds an in-process run (rpgan train without --workers); continue it "
                                "with rpgan train --resume --out, or choose another --name")
            return None
        try:
            return RunConfig.from_json(data)
        except UserError as e:
            raise UserError(f"{self.uri}/{RUN_CONFIG}: {e}") from None


def prunable(steps: list[int], step: int, keep: int = KEEP) -> list[int]:
    """The checkpoints to delete once the one of `step` is safely written: all but the newest
    `keep` at or before `step`. Newer ones (a run resumed from an older checkpoint because its
    newest failed to load) are never counted: each is replaced when the run reaches its step, so
    no valid checkpoint is deleted in favour of one that does not exist yet."""
    return sorted(s for s in steps if s <= step)[:-keep]


def checkpoint_location(location: str | Path) -> str:
    """The exact checkpoint a `--ckpt` names, as the user would name it (a local path or a URI):
    itself if it holds config.json, else the newest checkpoint of the run it names. One line if
    there is none."""
    folder = Run.at(location)
    if folder.exists(CHECKPOINT_CONFIG):
        return str(location).rstrip("/") if is_uri(location) else str(Path(location))
    steps = folder.checkpoint_steps()
    if steps:
        ckpt = folder.checkpoint(steps[-1])
        return ckpt if is_uri(location) else str(Path(location) / Run.checkpoint_name(steps[-1]))
    if not folder.exists(""):
        raise UserError(f"checkpoint {location} does not exist; pass a run directory (--out of rpgan train, or "
                        "--storage/--name) or one of its checkpoints/step_* (what `rpgan results --best` prints)")
    raise UserError(f"{location} holds no rpgan checkpoint (no config.json, no checkpoints/step_*)")


def run_of(ckpt: str) -> str:
    """The run a checkpoint RUN/checkpoints/step_N belongs to (a path or a URI)."""
    return ckpt.rstrip("/").rpartition("/")[0].rpartition("/")[0] if is_uri(ckpt) else str(Path(ckpt).parent.parent)


def checkpoint_step(ckpt: Path | str) -> int:
    """The step in a checkpoint's name (.../step_NNNNNNNN)."""
    return int(STEP_DIR.match(str(ckpt).rstrip("/").rpartition("/")[2]).group(1))
