"""Parquet results: one dataset directory per table, one part file per job (rpgan.io.parquet).

`pandas.read_parquet(dir)` reads all jobs of a table; each job's rows carry `job_id`,
`created_at` and the configuration columns needed to filter without joining: `run_columns`,
the one set that analysis tables and sweep tables share (the model's preset, data and blocks,
and every setting of rpgan.overrides). A job id is a hash of the job's options, so re-running the
same job replaces its part instead of duplicating rows. Each job module registers
its tables (`table`); schemas are documented in docs/results.md.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from rpgan.config import GeneratorWeights, RunConfig, generator_weights
from rpgan.io.parquet import write_part
from rpgan.io.run import Folder
from rpgan.overrides import SETTINGS

import pyarrow as pa


def _arrow(kind: object) -> pa.DataType:
    if kind is bool:
        return pa.bool_()
    return {int: pa.int64(), float: pa.float64()}.get(kind, pa.string())  # str and Literal: text


# The model a row was made from: its preset, data and blocks, and every setting but the seed
# (a table's `seed` is that of whatever made its rows: an analysis job, a sweep trial).
RUN_COLUMNS = [
    ("preset", pa.string()), ("data", pa.string()), ("labels", pa.string()), ("blocks", pa.string()),
    ("n_buckets", pa.int64()), ("total_blocks", pa.int64()), ("blocks_per_bucket", pa.int64()),
    *((s.name, _arrow(s.kind)) for s in SETTINGS.values() if s.name != "seed"),
    ("generator_weights", pa.string()),  # the generator the rows are of: "ema" (the moving average) or "raw"
]
CONTEXT = [  # every analysis table starts with these: who made the rows and from which model
    ("job_id", pa.string()), ("created_at", pa.timestamp("us", tz="UTC")), ("ckpt", pa.string()),
    ("step", pa.int64()), *RUN_COLUMNS, ("seed", pa.int64()),
]
SCHEMAS: dict[str, pa.Schema] = {}  # every analysis table, by name (each job module registers its own)


@dataclass(frozen=True)
class Table:
    """An analysis table: a dataset directory OUT/NAME of part files of one schema."""

    name: str
    schema: pa.Schema

    def write(self, out: Path | str, ctx: dict, rows: list[dict]) -> str:
        """Write rows (context columns added) as OUT/NAME/part-<job_id>.parquet, OUT a local
        directory or a URI; returns where it went."""
        return write_part(Folder.at(out), self.name, ctx["job_id"], self.schema, [{**ctx, **row} for row in rows])


def table(name: str, columns: list[tuple[str, pa.DataType]], context: bool = True) -> Table:
    """Register the table NAME: the CONTEXT columns (unless `context` is False), then `columns`."""
    taken = {c for c, _ in CONTEXT} & {c for c, _ in columns} if context else set()
    if name in SCHEMAS or taken:
        raise ValueError(f"analysis table {name}: the name or its columns {sorted(taken)} are taken")
    SCHEMAS[name] = pa.schema((CONTEXT if context else []) + columns)
    return Table(name, SCHEMAS[name])


def job_id(options: dict) -> str:
    """A short stable id of a job's options (same options -> same id)."""
    return hashlib.sha1(json.dumps(options, sort_keys=True, default=str).encode()).hexdigest()[:12]


def run_columns(config: RunConfig, weights: GeneratorWeights = "auto") -> dict:
    """The RUN_COLUMNS of rows made from a model of this configuration (its generator `weights`)."""
    m, sections = config.model, {"model": config.model, "train": config.train}
    even = len(set(m.blocks)) == 1
    return {"preset": config.preset, "data": config.data, "labels": config.labels,
            "blocks": ",".join(map(str, m.blocks)), "n_buckets": m.n_buckets, "total_blocks": sum(m.blocks),
            "blocks_per_bucket": m.blocks[0] if even else None,
            **{s.name: getattr(sections[s.section], s.name) for s in SETTINGS.values() if s.name != "seed"},
            "generator_weights": generator_weights(config, weights)}


def context(job: str, ckpt: Path | str, step: int, config: RunConfig, seed: int,
            weights: GeneratorWeights = "auto") -> dict:
    """The CONTEXT columns for the rows of a checkpoint's generator `weights`."""
    return {"job_id": job, "created_at": dt.datetime.now(dt.UTC), "ckpt": str(ckpt), "step": step,
            **run_columns(config, weights), "seed": seed}
