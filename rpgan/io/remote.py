"""Storage behind a URI: s3:// (AWS or any S3-compatible store), gs://, file://, any pyarrow.fs URI.

Ray Train and rpgan reach it through pyarrow.fs, so credentials come from the standard AWS
chain (environment, ~/.aws files, the instance profile) and are never read here; an
S3-compatible store (MinIO, Ceph, R2, moto) is reached by setting AWS_ENDPOINT_URL (e.g.
http://127.0.0.1:9000). A checkpoint named by a URI is fetched once into this machine's cache,
$RPGAN_CACHE/checkpoints/<key>: the key hashes the URI with every file's size and modification
time (a checkpoint rewritten under its name is fetched again), and the copy is downloaded
into a temporary directory and renamed into place, so a partial download is never taken for a
checkpoint.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rpgan.errors import RemoteError, UserError

import pyarrow.fs as pafs


def is_uri(ref: str | Path) -> bool:
    return "://" in str(ref)


def cache_root() -> Path:
    """rpgan's local cache: $RPGAN_CACHE, else ~/.cache/rpgan."""
    return Path(os.environ.get("RPGAN_CACHE", Path.home() / ".cache" / "rpgan"))


@contextmanager
def remote_errors(uri: str) -> Iterator[None]:
    """Turn a failure of the store behind `uri` into one line naming it (RemoteError, exit 1);
    for a local path, OSErrors pass through."""
    try:
        yield
    except (UserError, FileNotFoundError):
        raise
    except OSError as e:
        if not is_uri(uri):  # a local path's own errors (a path through a file, a full disk): main() says them
            raise
        detail = " ".join(str(e).split())[:240]
        where = "Google's application default credentials" if uri.startswith(("gs://", "gcs://")) else \
            "the credentials (AWS chain) and AWS_ENDPOINT_URL"
        raise RemoteError(f"{uri}: {detail}; check the URI and {where}") from None


RETRY_S = 5  # GCS: how long a store that does not answer is retried (its backoff ends within about twice that)


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem of a URI and the path inside it. A store that does not answer fails
    within seconds (S3's client by itself; GCS's would retry for 15 minutes: RETRY_S)."""
    query = uri
    if uri.startswith(("gs://", "gcs://")) and "retry_limit_seconds=" not in uri:  # the URI's own options kept
        query += f"{'&' if '?' in uri else '?'}retry_limit_seconds={RETRY_S}"
    try:
        with remote_errors(uri):
            return pafs.FileSystem.from_uri(query)
    except ValueError as e:  # pyarrow's ArrowInvalid: an unknown scheme, a malformed URI
        raise UserError(f"{uri}: {e}; pass a local path or a URI such as s3://bucket/path") from None


def join(uri: str, *names: str) -> str:
    return "/".join([uri.rstrip("/"), *names])


def _files(fs: pafs.FileSystem, path: str) -> list[pafs.FileInfo]:
    return [i for i in fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
            if i.type == pafs.FileType.File]


def local_checkpoint(uri: str) -> Path:
    """The checkpoint at `uri` (an exact checkpoint: rpgan.io.run.checkpoint_location) as a local
    directory of the cache, fetched again when its files changed."""
    uri = uri.rstrip("/")
    fs, path = filesystem(uri)
    with remote_errors(uri):
        files = _files(fs, path)
        stamp = "\n".join(f"{i.path}\t{i.size}\t{i.mtime}" for i in sorted(files, key=lambda i: i.path))
        key = hashlib.sha256(f"{uri}\n{stamp}".encode()).hexdigest()[:24]
        target = cache_root() / "checkpoints" / f"{uri.rpartition('/')[2]}-{key}"
        if not target.is_dir():
            download(uri, target)
    return target


def download(uri: str, target: Path) -> Path:
    """Copy the tree under `uri` into the local directory `target`, whole or not at all."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        tmp.mkdir()
        with remote_errors(uri):
            pafs.copy_files(uri, str(tmp))
        try:
            os.rename(tmp, target)
        except OSError:  # another process fetched it first: keep theirs
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def upload(local: Path, uri: str) -> list[str]:
    """Write every file under the local directory `local` to the same place under `uri`, each
    under a temporary name, then moved; returns the URIs written."""
    fs, root = filesystem(uri)
    written = []
    with remote_errors(uri):
        for file in sorted(p for p in Path(local).rglob("*") if p.is_file()):
            name = file.relative_to(local).as_posix()
            written.append(put_bytes(fs, f"{root.rstrip('/')}/{name}", file.read_bytes()))
    return [join(uri, w[len(root.rstrip("/")) + 1:]) for w in written]


def put_bytes(fs: pafs.FileSystem, path: str, data: bytes) -> str:
    """Write `data` to `path` of `fs` under a temporary name, then move it there; returns path."""
    parent_dir, _, base = path.rpartition("/")
    fs.create_dir(parent_dir, recursive=True)
    tmp = f"{parent_dir}/.{base}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        with fs.open_output_stream(tmp) as f:
            f.write(data)
        fs.move(tmp, path)
    except BaseException:
        try:
            fs.delete_file(tmp)
        except OSError:
            pass
        raise
    return path
