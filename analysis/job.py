"""What every analysis job (analyze, fid, dissect, directions) starts from and ends with: its
checkpoint, resolved once, and its output folder, local or behind a URI.

A job writes its files into `Job.out`, a local folder: --out itself, or for a URI --out
(s3://...) a staging folder whose files `Job.finish` uploads when the job is done, each under a
temporary name and then moved, so a killed job leaves nothing half-written there either.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from analysis.results import context, job_id
from rpgan.config import GeneratorWeights, RunConfig, generator_weights
from rpgan.errors import UserError
from rpgan.io.remote import is_uri, upload
from rpgan.io.run import ANALYSIS, Folder, checkpoint_location, run_of
from rpgan.model.networks import Generator
from rpgan.training.checkpoint import load_generator, read_config, read_step, resolve_checkpoint


@dataclass(frozen=True)
class Job:
    ckpt: str  # the exact checkpoint, a local directory or a URI: what the workers load, the `ckpt` column
    generator: Generator
    config: RunConfig
    step: int
    out: Path  # where the job writes, locally
    out_uri: str | None  # where `out` goes once the job is done, if that is remote
    weights: GeneratorWeights = "auto"  # which generator of the checkpoint (`generator` is it)

    def context(self, options: dict, seed: int) -> dict:
        """The context columns of the job's tables; the job_id hashes the checkpoint and options."""
        resolved = generator_weights(self.config, self.weights)
        return context(job_id({"ckpt": self.ckpt, "generator_weights": resolved, **options}), self.ckpt, self.step,
                       self.config, seed, self.weights)

    def finish(self, written: dict[str, Path]) -> dict[str, str]:
        """Upload a remote job's files; where each written file now is, by name."""
        if self.out_uri is None:
            return {name: str(path) for name, path in written.items()}
        upload(self.out, self.out_uri)
        return {name: f"{self.out_uri}/{Path(path).relative_to(self.out).as_posix()}" for name, path in written.items()}


def default_out(ckpt: str) -> str:
    """RUN/analysis for a checkpoint RUN/checkpoints/step_N (a path or a URI)."""
    return f"{run_of(ckpt)}/{ANALYSIS}"


def preflight(ckpt: Path | str, out: Path | str | None) -> RunConfig:
    """Check a job's inputs before any work (a Ray start, a model load): the checkpoint exists and
    its config.json reads (returned), and `out` (default: the run's analysis/) can be written: a
    local folder's nearest existing parent takes a file, a URI's store its folder."""
    exact = checkpoint_location(ckpt)
    config = read_config(resolve_checkpoint(exact))
    target = str(out) if out else default_out(exact)
    if is_uri(target):
        Folder.at(target).create()
        return config
    folder = Path(target).expanduser()
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        raise UserError(f"--out {target}: {existing} is a file, not a folder; choose another --out")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        raise UserError(f"--out {target}: cannot write in {existing} ({e.strerror}); choose another --out") from None
    return config


@contextmanager
def open_job(ckpt: Path | str, out: Path | str | None, device: str = "cpu",
             weights: GeneratorWeights = "auto") -> Iterator[Job]:
    """The job on the generator `weights` of checkpoint `ckpt` (a checkpoint or run, a path or a
    URI) writing to `out` (default: the run's analysis/); a remote job's staging folder is removed
    at the end."""
    exact = checkpoint_location(ckpt)
    generator, config, local = load_generator(exact, device, weights)
    target = str(out) if out else default_out(exact)
    staging = Path(tempfile.mkdtemp(prefix="rpgan-out-")).resolve() if is_uri(target) else None
    try:
        yield Job(exact, generator, config, read_step(exact), staging or Path(target).expanduser().resolve(),
                  target.rstrip("/") if staging else None, weights)
    finally:
        if staging:
            shutil.rmtree(staging, ignore_errors=True)
