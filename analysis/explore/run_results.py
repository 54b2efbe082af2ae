"""The analysis results the explorer shows beside the rows, read from the run's analysis folder
(`rpgan analyze`, `rpgan dissect`, `rpgan directions` write there by default).

Each result is a plot (served as a file) and its numbers (a small table: one row per method and
distance, one column per layer, "mean ± std"). Files are read on request, so a result written
while the page is open appears on reload, and one deleted is reported, not served stale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd


@dataclass(frozen=True)
class Result:
    """One kind of analysis result: its plot file and its Parquet table under the folder."""

    name: str
    title: str
    command: str  # the command that writes it
    plot: str
    table: str
    value: str  # column of the mean ("ratio_mean"); its std is the same name with _std


RESULTS = (
    Result("responsibility", "Layer responsibility D_{l→1}", "rpgan analyze", "responsibility.png",
           "responsibility_summary", "ratio_mean"),
    Result("dissection", "Unit ablation: effect per layer, ratio to layer 1", "rpgan dissect", "dissection.png",
           "ablation_effect", "ratio_mean"),
    Result("directions", "Learned latent directions", "rpgan directions", "directions.png", "directions", ""),
)
PLOTS = {r.plot: r for r in RESULTS}


def _cell(mean: float, std: float) -> str:
    return f"{mean:.2f}" if math.isnan(std) else f"{mean:.2f} ± {std:.2f}"


def _layer_table(frame: pd.DataFrame, value: str) -> dict:
    """Rows "method · embedding · distance" (method and embedding only where they vary),
    columns layer 1..n."""
    std = value.replace("_mean", "_std")
    layers = sorted(frame["layer"].unique())
    keys = [c for c in ("method", "embedding") if c in frame and frame[c].nunique() > 1] + ["distance"]
    rows = []
    for key, group in frame.groupby(keys, sort=False):
        by_layer = group.set_index("layer")
        cells = [_cell(by_layer.at[la, value], by_layer.at[la, std]) if la in by_layer.index else ""
                 for la in layers]
        rows.append([" · ".join(map(str, key))] + cells)
    return {"columns": [" · ".join(keys)] + [f"layer {la}" for la in layers], "rows": rows}


def _directions_table(frame: pd.DataFrame) -> dict:
    columns = ["direction", "accuracy", "semantic_spread", "color_spread"]
    rows = [[int(r.direction), f"{r.accuracy:.2f}", f"{r.semantic_spread:.3f}", f"{r.color_spread:.3f}"]
            for r in frame.sort_values("direction").itertuples()]
    return {"columns": columns, "rows": rows}


def read_results(folder: Path | None) -> list[dict]:
    """The results present under `folder`: [{"name", "title", "command", "plot" (file name or None),
    "table" ({"columns", "rows"} or None), "jobs" (how many jobs wrote the table: it shows the
    latest, as the plot does), "error" (why a table did not read, or None)}]."""
    if folder is None or not folder.is_dir():
        return []
    found = []
    for r in RESULTS:
        plot, table = folder / r.plot, folder / r.table
        if not plot.is_file() and not table.is_dir():
            continue
        entry = {"name": r.name, "title": r.title, "command": r.command,
                 "plot": r.plot if plot.is_file() else None, "table": None, "jobs": 0, "error": None}
        if table.is_dir():
            try:
                frame = pd.read_parquet(table)
                # every job into the folder keeps its part; the page shows the latest, as the plot does
                entry["jobs"] = frame["job_id"].nunique()
                frame = frame[frame["created_at"] == frame["created_at"].max()]
                entry["table"] = _directions_table(frame) if r.name == "directions" else _layer_table(frame, r.value)
            except Exception as e:  # a half-copied or foreign folder: say so beside the plot
                entry["error"] = f"{r.table}/ does not read ({type(e).__name__}: {str(e).splitlines()[0][:120]})"
        found.append(entry)
    return found
