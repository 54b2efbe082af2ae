"""Named Ray Tune sweeps: one small file per sweep (plain data, see spec.py), and the runner.

Add a sweep by writing a file like ablation_blocks.py and listing its module here.
"""

from __future__ import annotations

from importlib import import_module

from rpgan.errors import UserError
from sweeps.spec import Sweep

NAMES = ("ablation_blocks", "bucket_counts", "random_buckets", "rpgan_vs_standard")


def get_sweep(name: str) -> Sweep:
    if name not in NAMES:
        raise UserError(f"unknown sweep {name!r}; `rpgan sweeps` lists them: {', '.join(NAMES)}")
    return import_module(f"sweeps.{name}").SWEEP
