"""A sweep's Parquet results: `trials/` (one row per trial), `responsibility/` (per trial,
method, bucket and distance) and `metrics/` (every logged step of every trial's training),
each one part file per trial under the sweep's directory.

A trial's part is named by its key and written atomically, so a retried or resumed trial
replaces its row: the dataset always holds exactly one row per trial that has finished or
failed. Every row carries the sweep, the trial and every configuration value as a column, so
`pandas.read_parquet(STORAGE/NAME/trials)` filters without joining. Schemas: docs/results.md.
"""

from __future__ import annotations

import datetime as dt

from analysis.analyze import RESPONSIBILITY_SUMMARY
from analysis.results import RUN_COLUMNS, run_columns
from rpgan.io.parquet import read_parts, write_part
from rpgan.io.run import Folder
from rpgan.metrics.quality import COLUMNS
from rpgan.training.run_log import SCHEMA as RUN_LOG
from sweeps.spec import Plan, Trial

import pandas as pd
import pyarrow as pa

TEXT_AXES = ("random_buckets", "generator")  # search axes that are not a model column; null where not swept
_CONFIG = [  # who made the row (the sweep, its trial), and the trial's whole configuration
    ("sweep_id", pa.string()), ("created_at", pa.timestamp("us", tz="UTC")), ("sweep", pa.string()),
    ("variant", pa.string()), ("trial", pa.string()), *((axis, pa.string()) for axis in TEXT_AXES), *RUN_COLUMNS,
    ("seed", pa.int64()),
]
SCHEMAS = {
    "trials": pa.schema(_CONFIG + [
        ("status", pa.string()), ("error", pa.string()), ("step", pa.int64()),
        *[(column, pa.float64()) for column in COLUMNS], ("n_generated", pa.int64()),
        ("n_reference", pa.int64()), ("train_time_s", pa.float64()), ("eval_time_s", pa.float64()),
        ("ckpt", pa.string())]),
    "responsibility": pa.schema(_CONFIG + RESPONSIBILITY_SUMMARY),
    # every metrics row of every trial's training run (metrics.parquet), its configuration leading
    "metrics": pa.schema(_CONFIG + [f for f in RUN_LOG if f.name not in {name for name, _ in _CONFIG}]),
}
DONE = ("ok", "stopped")  # statuses of trials a resumed sweep does not run again


def config_columns(plan: Plan, trial: Trial) -> dict:
    """The leading columns of every row of a trial."""
    return {"sweep_id": plan.sweep_id, "created_at": dt.datetime.now(dt.UTC), "sweep": plan.sweep,
            "variant": plan.variant, "trial": trial.key,
            **{axis: trial.point.get(axis) for axis in TEXT_AXES},
            **run_columns(trial.config), "seed": trial.config.train.seed}


def write_rows(sweep: Folder, table: str, plan: Plan, trial: Trial, rows: list[dict]) -> str:
    """Replace the trial's part of `table` with rows (configuration columns added); returns where it went."""
    columns = config_columns(plan, trial)
    return write_part(sweep, table, trial.key, SCHEMAS[table], [{**columns, **row} for row in rows])


def read_table(sweep: Folder, table: str) -> pd.DataFrame:
    """All parts of a table (see rpgan.io.parquet.read_parts)."""
    return read_parts(sweep, table, SCHEMAS[table], "delete trials/{name}, responsibility/{name} and metrics/{name}, "
                      "then resume the sweep (rpgan sweep ... --resume) to evaluate that trial again")


def finished(sweep: Folder, statuses: tuple[str, ...] = ("ok",)) -> dict[str, dict]:
    """The rows of trials that finished (status ok; or any of `statuses`), by trial key."""
    rows = read_table(sweep, "trials")
    return {r["trial"]: r for r in rows[rows["status"].isin(statuses)].to_dict("records")}


def summarise_trials(trials: pd.DataFrame, x: str) -> pd.DataFrame:
    """Per value of x (in the sweep's order): trials, and mean and std over seeds of each metric."""
    ok = trials[trials["status"] == "ok"]
    metrics = [*COLUMNS, "train_time_s"]
    g = ok.groupby(x, sort=False)[metrics]
    mean, std = g.mean(), g.std()
    summary = pd.DataFrame({"trials": g.size()})
    for m in metrics:
        summary[f"{m}_mean"], summary[f"{m}_std"] = mean[m], std[m]
    return summary.reset_index()
