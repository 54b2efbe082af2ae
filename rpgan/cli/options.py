"""Options shared by the commands of every package (rpgan, analysis, sweeps), defined once.

`--workers` means the same everywhere: the Ray workers a command spreads its work over, 0 for
all of it in this process. Its default differs with the work, and says why in each --help:
`train` defaults to 0 (one process trains fastest on one machine; Ray Train pays for several GPUs
or nodes), the analysis commands to as many workers as the cluster holds (their chunks are
independent, and the numbers do not depend on the count).
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from rpgan.config import MAX_SEED, GeneratorWeights
from rpgan.errors import UserError
from rpgan.io.tracking import DEFAULT_STORE
from rpgan.overrides import SETTINGS, Setting

import click

Device = Literal["auto", "cpu", "cuda"]


def pick_device(device: Device) -> str:
    """The torch device for --device: auto is cuda when a GPU is visible, else cpu."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA GPU is visible here; use --device cpu or auto")
    return device


class _NonEmpty:
    """Refuses an empty value (`--out ""`), which would otherwise mean the current directory or
    a default location the user did not ask for."""

    def convert(self, value, param, ctx):
        if isinstance(value, str) and not value.strip():
            self.fail("is empty; give a path, a URI or a name", param, ctx)
        return super().convert(value, param, ctx)


class _Text(_NonEmpty, click.types.StringParamType):
    pass


class _Path(_NonEmpty, click.Path):
    pass


TEXT = _Text()  # a name, a data set, a URI or a path: any non-empty text
PATH = _Path(path_type=Path)  # a local path


class _FileOut(_Path):
    """A file to write, of one kind: its suffix, not a directory, and not an existing file of
    another kind (rpgan replaces only its own kind of file, never one it did not write)."""

    def __init__(self, suffix: str, magic: bytes, kind: str, example: str):
        super().__init__(path_type=Path)
        self.suffix, self.magic, self.kind, self.example = suffix, magic, kind, example

    def convert(self, value, param, ctx):
        path = super().convert(value, param, ctx)
        if path.is_dir():
            self.fail(f"{str(path)!r} is a directory; give a file name inside it, like {path / self.example}",
                      param, ctx)
        if path.suffix.lower() != self.suffix:
            self.fail(f"{str(path)!r} does not end in {self.suffix}; rpgan writes {self.kind} (give a name like "
                      f"{self.example})", param, ctx)
        if path.exists():
            with open(path, "rb") as f:
                if f.read(len(self.magic)) != self.magic:
                    self.fail(f"{str(path)!r} exists and is not a {self.kind}; rpgan does not overwrite it "
                              "(remove it or choose another name)", param, ctx)
        return path


PNG = _FileOut(".png", b"\x89PNG\r\n\x1a\n", "PNG image", "grid.png")
NPZ = _FileOut(".npz", b"PK\x03\x04", "NumPy .npz file", "features.npz")  # an .npz is a zip archive


def choice(kind: object) -> click.Choice:
    """A click choice of a Literal type's values."""
    return click.Choice(typing.get_args(kind))


DEVICE = click.option("--device", type=choice(Device), default="auto", show_default=True)
SEED = click.option("--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True,
                    help="Seed of every random choice: the same seed gives the same results.")
ADDRESS = click.option("--address", type=TEXT, help="Ray cluster to join [default: $RAY_ADDRESS, else a local Ray].")
CKPT = click.option("--ckpt", type=TEXT, required=True, help="Checkpoint or run: a directory, or a URI (s3://..., file://...).")
GENERATOR = click.option("--generator-weights", type=choice(GeneratorWeights), default="auto", show_default=True,
                         help="Which generator of the checkpoint: auto (the moving average of a run trained with "
                              "--ema-kimg, else the trained weights), ema, or raw (the trained weights).")
MLFLOW = click.option("--mlflow", type=TEXT, is_flag=False, flag_value=DEFAULT_STORE, metavar="[URI]",
                      help="Also track in MLflow (pip install 'rpgan[mlflow]'): a tracking URI (http://..., "
                           f"sqlite:///FILE), or alone a SQLite store {DEFAULT_STORE} here; view it with `mlflow ui "
                           f"--backend-store-uri sqlite:///{DEFAULT_STORE}`. A store that fails costs a warning.")
GPUS = click.option("--gpus-per-worker", type=click.FloatRange(0),
                    help="GPUs per Ray worker [default: 1 on CUDA: --device cuda, or auto (the only choice of "
                         "a sweep) when the cluster has GPUs; else 0].")


def workers(default: int | None, why: str) -> Callable:
    """The --workers option with a command's default and the reason for it (see the module)."""
    return click.option("--workers", type=click.IntRange(0), default=default,
                        help=f"Ray workers to spread the work over; 0: all of it in this process [default: {why}].")


def example(*lines: str) -> str:
    """A --help epilog showing example command lines, kept as written."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


def _setting_option(s: Setting) -> Callable:
    if s.kind is bool:
        return click.option(f"{s.flag}/--no-{s.flag[2:]}", s.name, default=None, help=s.help)
    kind = choice(s.kind) if s.choices else s.kind
    return click.option(s.flag, s.name, type=kind, help=s.help)


def setting_options(command: Callable) -> Callable:
    """One option per setting of the run configuration (rpgan.overrides), but --seed (see SEED)."""
    for s in reversed(SETTINGS.values()):
        if s.name != "seed":
            command = _setting_option(s)(command)
    return command
