"""A named folder under a storage root, a local path (one machine, NFS) or a URI such as s3://...:
a run (`RunStore`), or a sweep (sweeps/).

Ray Train writes the checkpoints there (checkpoints/step_N, the same layout as an in-process
run); rpgan adds run.json (the run's configuration, to refuse another configuration under the
same name) and metrics.parquet. Files go through pyarrow.fs, Ray's own storage layer, so local
paths and cloud URIs behave alike; each is written to a temporary name, then moved into place.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from rpgan.config import RunConfig
from rpgan.errors import UserError
from rpgan.io.atomic import atomic_dir, atomic_write
from rpgan.io.remote import filesystem, is_uri, put_bytes, remote_errors, upload
from rpgan.training.checkpoint import CHECKPOINTS, STEP_DIR, checkpoint_name, prunable

import pyarrow.fs as pafs

RUN_CONFIG = "run.json"


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
        if is_uri(location):
            storage, _, name = str(location).rstrip("/").rpartition("/")
            return cls(storage, name, typed=False)
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
            return self.fs.get_file_info(f"{self.path}/{name}").type != pafs.FileType.NotFound

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


class RunStore(Folder):
    """The directory STORAGE/NAME of one run."""

    def checkpoint_steps(self) -> list[int]:
        """Steps of the run's persisted checkpoints, ascending."""
        return sorted(int(m.group(1)) for name in self.dirs(CHECKPOINTS) if (m := STEP_DIR.match(name)))

    def put_checkpoint(self, folder: Path, step: int) -> None:
        """Make the checkpoint written in the local `folder` the run's checkpoints/step_N: copied
        under a temporary name, flushed and renamed; behind a URI, each file uploaded (a partial
        upload fails to load and is skipped by a resume)."""
        if self.local is not None:
            atomic_dir(self.local / checkpoint_name(step), lambda tmp: shutil.copytree(folder, tmp, dirs_exist_ok=True))
        else:
            upload(Path(folder), f"{self.uri}/{checkpoint_name(step)}")

    def prune_checkpoints(self, step: int) -> None:
        """Delete what `rpgan.training.checkpoint.prunable` says, once the checkpoint of `step` is persisted."""
        for old in prunable(self.checkpoint_steps(), step):
            self.fs.delete_dir(f"{self.path}/{checkpoint_name(old)}")

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
