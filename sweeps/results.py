"""A sweep's Parquet results: `trials/` (one row per trial) and `responsibility/` (per trial,
method, bucket and distance), each one part file per trial under the sweep's directory.

A trial's part is named by its key and written atomically, so a retried or resumed trial
replaces its row: the dataset always holds exactly one row per trial that has finished or
failed. Every row carries the sweep, the trial and every configuration value as a column, so
`pandas.read_parquet(STORAGE/NAME/trials)` filters without joining. Schemas: docs/results.md.
"""

from __future__ import annotations

import datetime as dt
import io

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from analysis.results import RESPONSIBILITY_SUMMARY
from rpgan.config import RunConfig
from rpgan.errors import UserError
from rpgan.run_store import Folder
from sweeps.spec import Plan, Trial

TABLES = ("trials", "responsibility")
_CONFIG = [  # who made the row, and the trial's whole configuration
    ("run_id", pa.string()), ("created_at", pa.timestamp("us", tz="UTC")), ("sweep", pa.string()),
    ("variant", pa.string()), ("trial", pa.string()), ("preset", pa.string()), ("data", pa.string()),
    ("arch", pa.string()), ("image_size", pa.int64()), ("channels", pa.int64()), ("blocks", pa.string()),
    ("n_buckets", pa.int64()), ("total_blocks", pa.int64()), ("blocks_per_bucket", pa.int64()),
    ("random_buckets", pa.string()), ("width", pa.int64()), ("z_dim", pa.int64()), ("input", pa.string()),
    ("linear", pa.bool_()), ("routing", pa.string()), ("d_arch", pa.string()), ("d_width", pa.int64()),
    ("steps", pa.int64()), ("batch", pa.int64()), ("d_steps", pa.int64()), ("loss", pa.string()),
    ("lr", pa.float64()), ("diversity_weight", pa.float64()), ("gp_weight", pa.float64()), ("seed", pa.int64()),
]
SCHEMAS = {
    "trials": pa.schema(_CONFIG + [
        ("status", pa.string()), ("error", pa.string()), ("step", pa.int64()), ("fid", pa.float64()),
        ("prd_f8_recall", pa.float64()), ("prd_f1_8_precision", pa.float64()), ("n_generated", pa.int64()),
        ("n_reference", pa.int64()), ("train_time_s", pa.float64()), ("eval_time_s", pa.float64()),
        ("ckpt", pa.string())]),
    "responsibility": pa.schema(_CONFIG + RESPONSIBILITY_SUMMARY),
}


def config_columns(plan: Plan, trial: Trial) -> dict:
    """The leading columns of every row of a trial."""
    c: RunConfig = trial.config
    m, t = c.model, c.train
    even = len(set(m.blocks)) == 1
    return {
        "run_id": plan.run_id, "created_at": dt.datetime.now(dt.UTC), "sweep": plan.sweep, "variant": plan.variant,
        "trial": trial.key, "preset": c.preset, "data": c.data, "arch": m.arch, "image_size": m.image_size,
        "channels": m.channels, "blocks": ",".join(map(str, m.blocks)), "n_buckets": m.n_buckets,
        "total_blocks": sum(m.blocks), "blocks_per_bucket": m.blocks[0] if even else None,
        "random_buckets": trial.point.get("random_buckets"), "width": m.width, "z_dim": m.z_dim, "input": m.input,
        "linear": m.linear, "routing": m.routing, "d_arch": m.d_arch, "d_width": m.d_width, "steps": t.steps,
        "batch": t.batch, "d_steps": t.d_steps, "loss": t.loss, "lr": t.lr, "diversity_weight": t.diversity_weight,
        "gp_weight": t.gp_weight, "seed": t.seed,
    }


def write_rows(sweep: Folder, table: str, plan: Plan, trial: Trial, rows: list[dict]) -> str:
    """Replace the trial's part of `table` with rows (configuration columns added); returns its name."""
    data = pa.Table.from_pylist([{**config_columns(plan, trial), **row} for row in rows], schema=SCHEMAS[table])
    buffer = io.BytesIO()
    pq.write_table(data, buffer)
    name = f"{table}/part-{trial.key}.parquet"
    sweep.write_bytes(name, buffer.getvalue())
    return name


def read_table(sweep: Folder, table: str) -> pd.DataFrame:
    """All parts of a table (an empty frame with the schema's columns if there are none). A part
    that is not Parquet, is truncated or has columns of other types is a one-line UserError naming
    it; columns a part lacks (an older rpgan's) read as nulls."""
    parts = [_read_part(sweep, table, name) for name in sweep.files(table) if name.endswith(".parquet")]
    frame = pa.concat_tables(parts) if parts else SCHEMAS[table].empty_table()
    return frame.to_pandas()


def _read_part(sweep: Folder, table: str, name: str) -> pa.Table:
    """One part, conformed to the table's schema."""
    schema, data = SCHEMAS[table], sweep.read_bytes(f"{table}/{name}")
    try:
        part = pq.read_table(io.BytesIO(data or b""))
        columns = [part.column(f.name).cast(f.type) if f.name in part.column_names else pa.nulls(len(part), f.type)
                   for f in schema]
        return pa.Table.from_arrays(columns, schema=schema)
    except (pa.ArrowException, OSError, ValueError, KeyError) as e:  # ArrowInvalid: not Parquet, truncated ...
        detail = " ".join(str(e).split())[:160] or type(e).__name__
        raise UserError(f"sweep result {sweep.uri}/{table}/{name} is unreadable ({detail}); delete trials/{name} "
                        f"and responsibility/{name}, then resume the sweep (rpgan sweep ... --resume) to evaluate "
                        "that trial again") from None


def finished(sweep: Folder) -> dict[str, dict]:
    """The rows of trials that finished (status ok), by trial key."""
    rows = read_table(sweep, "trials")
    return {r["trial"]: r for r in rows[rows["status"] == "ok"].to_dict("records")}


def summarise(trials: pd.DataFrame, x: str) -> pd.DataFrame:
    """Per value of x (in the sweep's order): trials, and mean and std over seeds of each metric."""
    ok = trials[trials["status"] == "ok"]
    metrics = ["fid", "prd_f8_recall", "prd_f1_8_precision", "train_time_s"]
    g = ok.groupby(x, sort=False)[metrics]
    mean, std = g.mean(), g.std()
    summary = pd.DataFrame({"trials": g.size()})
    for m in metrics:
        summary[f"{m}_mean"], summary[f"{m}_std"] = mean[m], std[m]
    return summary.reset_index()
