"""Parquet results: one dataset directory per table, one part file per run, written atomically.

`pandas.read_parquet(dir)` reads all runs of a table; each run's rows carry `run_id`,
`created_at` and the configuration columns needed to filter without joining. A run id is a hash
of the job's options, so re-running the same job replaces its part instead of duplicating rows.
Schemas are documented in docs/results.md; tests check files against SCHEMAS.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from rpgan.atomic import atomic_write
from rpgan.config import RunConfig

CONTEXT = [  # every analysis table starts with these: who made the rows and from which model
    ("run_id", pa.string()), ("created_at", pa.timestamp("us", tz="UTC")), ("ckpt", pa.string()),
    ("step", pa.int64()), ("preset", pa.string()), ("data", pa.string()), ("arch", pa.string()),
    ("blocks", pa.string()), ("n_buckets", pa.int64()), ("linear", pa.bool_()), ("input", pa.string()),
    ("seed", pa.int64()),
]
RESPONSIBILITY_SUMMARY = [  # per method x layer x distance; also a sweep's per-trial rows (sweeps.results)
    ("method", pa.string()), ("layer", pa.int64()), ("distance", pa.string()), ("evaluations", pa.int64()),
    ("ratio_mean", pa.float64()), ("ratio_std", pa.float64()), ("spread_mean", pa.float64()),
    ("spread_std", pa.float64())]
SCHEMAS = {
    "responsibility": pa.schema(CONTEXT + [
        ("method", pa.string()), ("evaluation", pa.int64()), ("layer", pa.int64()), ("distance", pa.string()),
        ("spread", pa.float64()), ("ratio", pa.float64())]),
    "responsibility_summary": pa.schema(CONTEXT + RESPONSIBILITY_SUMMARY),
    "quality": pa.schema(CONTEXT + [
        ("reference", pa.string()), ("n_generated", pa.int64()), ("n_reference", pa.int64()),
        ("fid", pa.float64()), ("prd_f8_recall", pa.float64()), ("prd_f1_8_precision", pa.float64())]),
    "unit_activation": pa.schema(CONTEXT + [
        ("layer", pa.int64()), ("unit", pa.int64()), ("units", pa.int64()), ("rank", pa.int64()),
        ("mean", pa.float64()), ("q50", pa.float64()), ("q90", pa.float64()), ("q99", pa.float64())]),
    "ablation_effect": pa.schema(CONTEXT + [
        ("method", pa.string()), ("layer", pa.int64()), ("distance", pa.string()), ("samples", pa.int64()),
        ("effect_mean", pa.float64()), ("effect_std", pa.float64()), ("ratio_mean", pa.float64()),
        ("ratio_std", pa.float64())]),
    "directions": pa.schema(CONTEXT + [
        ("bucket", pa.int64()), ("direction", pa.int64()), ("directions", pa.int64()), ("steps", pa.int64()),
        ("final_loss", pa.float64()), ("accuracy", pa.float64()), ("semantic_spread", pa.float64()),
        ("color_spread", pa.float64())]),
    "comparison": pa.schema([
        ("run_id", pa.string()), ("created_at", pa.timestamp("us", tz="UTC")), ("model", pa.string()),
        ("family", pa.string()), ("source_run_id", pa.string()), ("ckpt", pa.string()), ("step", pa.int64()),
        ("preset", pa.string()), ("arch", pa.string()), ("blocks", pa.string()), ("method", pa.string()),
        ("layer", pa.int64()), ("distance", pa.string()), ("ratio_mean", pa.float64()), ("ratio_std", pa.float64())]),
    "prd_curve": pa.schema(CONTEXT + [
        ("reference", pa.string()), ("angle_index", pa.int64()), ("precision", pa.float64()),
        ("recall", pa.float64())]),
}


def run_id(options: dict) -> str:
    """A short stable id of a job's options (same options -> same id)."""
    return hashlib.sha1(json.dumps(options, sort_keys=True, default=str).encode()).hexdigest()[:12]


def context(rid: str, ckpt: Path, step: int, config: RunConfig, seed: int) -> dict:
    """The CONTEXT columns for a checkpoint's rows."""
    m = config.model
    return {"run_id": rid, "created_at": dt.datetime.now(dt.UTC), "ckpt": str(ckpt), "step": step,
            "preset": config.preset, "data": config.data, "arch": m.arch, "blocks": ",".join(map(str, m.blocks)),
            "n_buckets": m.n_buckets, "linear": m.linear, "input": m.input, "seed": seed}


def write_table(out_dir: Path, table: str, ctx: dict, rows: list[dict]) -> Path:
    """Write rows (context columns added) as out_dir/table/part-<run_id>.parquet, atomically."""
    schema = SCHEMAS[table]
    data = pa.Table.from_pylist([{**ctx, **row} for row in rows], schema=schema)
    path = Path(out_dir) / table / f"part-{ctx['run_id']}.parquet"
    return atomic_write(path, lambda tmp: pq.write_table(data, tmp))
