"""`rpgan compare`: layer responsibility by every method, for every model, in one table and plot.

Reads what `rpgan analyze` (responsibility_summary: RPGAN buckets, noise injection, EigenGAN
dimensions) and `rpgan dissect` (ablation_effect: unit ablation) wrote under each given
directory. Every method reports, per layer l and distance, the mean and std of the same ratio:
how much varying layer l changes the image, relative to layer 1 (D_{l->1} for buckets).

Writes, under the output directory:
  comparison/       Parquet, one row per model x method x layer x distance (docs/results.md)
  comparison.png    the ratio per layer, one line per model x method, semantic and color
"""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

from analysis.plots import plot_comparison
from analysis.results import job_id, table
from rpgan.errors import UserError
from rpgan.io.remote import download, is_uri, upload

import pandas as pd
import pyarrow as pa

SOURCES = ("responsibility_summary", "ablation_effect")
COMPARISON = table("comparison", [
    ("job_id", pa.string()), ("created_at", pa.timestamp("us", tz="UTC")), ("model", pa.string()),
    ("family", pa.string()), ("source_job_id", pa.string()), ("ckpt", pa.string()), ("step", pa.int64()),
    ("preset", pa.string()), ("arch", pa.string()), ("blocks", pa.string()), ("method", pa.string()),
    ("layer", pa.int64()), ("distance", pa.string()), ("ratio_mean", pa.float64()), ("ratio_std", pa.float64())],
    context=False)
KEPT = ["job_id", "ckpt", "step", "preset", "arch", "blocks", "method", "layer", "distance", "ratio_mean", "ratio_std"]


def family(method: str) -> str:
    """The method family of a table's `method` value, in the words of the papers."""
    if method == "buckets":
        return "RPGAN buckets"
    if method == "eigen":
        return "EigenGAN dimensions"
    if method.startswith("noise-"):
        return "noise injection"
    if method.startswith("unit-ablation"):
        return "unit ablation"
    return method


def collect(dirs: list[Path]) -> pd.DataFrame:
    """The semantic and color rows of every SOURCES table under `dirs`, with `family` and a
    `model` label (preset or arch, and blocks). Refuses directories with none of them."""
    frames = []
    for d in dirs:
        found = [Path(d) / t for t in SOURCES if (Path(d) / t).is_dir()]
        if not found:
            raise UserError(f"{d} holds no {' or '.join(SOURCES)} table; run rpgan analyze or rpgan dissect "
                            "with --out there first")
        frames += [_read(path) for path in found]
    rows = pd.concat(frames, ignore_index=True)
    rows = rows[rows["distance"].isin(["semantic", "color"])].rename(columns={"job_id": "source_job_id"})
    rows.insert(0, "family", rows["method"].map(family))
    name = rows["preset"].where(rows["preset"] != "", rows["arch"])
    rows.insert(0, "model", name + " [" + rows["blocks"] + "]")
    return rows.sort_values(["model", "family", "method", "distance", "layer"], kind="stable").reset_index(drop=True)


def _read(path: Path) -> pd.DataFrame:
    """The KEPT columns of one table directory; a corrupt part or missing column is a UserError."""
    try:
        frame = pd.read_parquet(path)
        kept = frame[KEPT]
    except (pa.ArrowException, OSError, ValueError, KeyError) as e:  # ArrowInvalid: a part that is not Parquet
        detail = " ".join(str(e).split())[:160] or type(e).__name__
        raise UserError(f"{path} is unreadable ({detail}); delete it and run rpgan analyze or rpgan dissect "
                        "with --out there again") from None
    if "embedding" in frame and (frame["embedding"] != "inception").any():  # the other methods embed with Inception
        raise UserError(f"{path} measures semantics with --embedding classifier; compare reads Inception-based "
                        "tables: run rpgan analyze without --embedding into another --out")
    return kept


def compare(dirs: list[str], out: str) -> tuple[pd.DataFrame, dict[str, str]]:
    """Collect, write the comparison table and plot under `out`; returns the rows and where the
    files went. Directories and `out` may be URIs (s3://...): those are read, or written, through
    a local copy."""
    with tempfile.TemporaryDirectory(prefix="rpgan-compare-") as tmp:
        local = [download(d, Path(tmp) / f"in-{i}") if is_uri(d) else Path(d) for i, d in enumerate(dirs)]
        rows = collect(local)
        ctx = {"job_id": job_id({"dirs": sorted(d.rstrip("/") if is_uri(d) else str(Path(d).resolve()) for d in dirs)}),
               "created_at": dt.datetime.now(dt.UTC)}
        target = Path(tmp).resolve() / "out" if is_uri(out) else Path(out)
        written = {"comparison": COMPARISON.write(target, ctx, rows.to_dict("records")),
                   "plot": plot_comparison(rows, target / "comparison.png")}
        if not is_uri(out):
            return rows, {name: str(path) for name, path in written.items()}
        upload(target, out)
        return rows, {name: f"{out.rstrip('/')}/{Path(path).relative_to(target).as_posix()}"
                      for name, path in written.items()}


def pivot(rows: pd.DataFrame, distance: str = "semantic") -> pd.DataFrame:
    """Layers down, one column per model x method: the mean ratio, for the terminal."""
    chosen = rows[rows["distance"] == distance]
    return chosen.pivot_table(index="layer", columns=["model", "method"], values="ratio_mean", sort=False)
