"""A run's metrics: one row per logged step, saved as Parquet and mirrored to TensorBoard
(with the sample grids and the run's settings as hparams) and, when tracked, to MLflow
(rpgan.io.tracking: the same rows, grids and settings).

The rows live in memory and are saved inside every checkpoint (metrics.parquet), so a run that
resumes from a checkpoint resumes its metrics from the same step: steps re-run after a crash
replace the lost ones instead of adding duplicates. TensorBoard's event files are trimmed to the
checkpoint's step the same way on resume (and `purge_step` marks the restart, TensorBoard's own
way). Schema: docs/results.md.
"""

from __future__ import annotations

import dataclasses
import io
import struct
import time
from datetime import UTC, datetime
from pathlib import Path

from rpgan.config import RunConfig, generator_weights
from rpgan.errors import UserError
from rpgan.io.atomic import atomic_write
from rpgan.io.run import METRICS_FILE
from rpgan.io.tracking import Tracker
from rpgan.training.evaluation import EVALUATION_COLUMNS, MEASUREMENT

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

LOSSES = ("d_loss", "g_loss", "diversity", "orthogonality")
SCHEMA = pa.schema([
    ("run_id", pa.string()), ("created_at", pa.timestamp("us", tz="UTC")), ("preset", pa.string()),
    ("data", pa.string()), ("arch", pa.string()), ("blocks", pa.string()), ("batch", pa.int64()),
    ("seed", pa.int64()), ("workers", pa.int64()), ("step", pa.int64()),
    *[(name, pa.float64()) for name in LOSSES],
    ("step_time_s", pa.float64()), ("images_per_s", pa.float64()),
    *[(name, pa.float64()) for name in EVALUATION_COLUMNS],  # null but at the steps evaluated (--eval-every)
    (MEASUREMENT, pa.string()),
    ("generator_weights", pa.string()),  # the generator evaluated and drawn: "ema" (--ema-kimg) or "raw"
])


def reported(row: dict) -> dict[str, float]:
    """The numbers of a row that Ray Train and Tune see: step, losses, speed, and the quality
    columns where they were measured."""
    keys = ("step", *LOSSES, "step_time_s", "images_per_s", *EVALUATION_COLUMNS)
    return {k: row[k] for k in keys if row.get(k) is not None}


class RunLog:
    """Metrics of one run. `record` once per logged step; `tick` after work that is not a step."""

    def __init__(self, run_id: str, config: RunConfig, workers: int, rows: list[dict] | None = None,
                 tensorboard: str | None = None, step: int = 0, tracker: Tracker | None = None):
        """`rows`: those of the checkpoint the run continues from, at `step` (0: a new run)."""
        self.rows = list(rows or [])
        self.tracker = tracker
        m, t = config.model, config.train
        self.context = {"run_id": run_id, "preset": config.preset, "data": config.data, "arch": m.arch,
                        "blocks": ",".join(map(str, m.blocks)), "batch": t.batch, "seed": t.seed, "workers": workers,
                        "generator_weights": generator_weights(config)}
        last = self.rows[-1]["step"] if self.rows else 0
        self.writer = None
        if tensorboard:
            from tensorboardX import SummaryWriter

            if Path(tensorboard).is_dir():  # the steps after the checkpoint's are logged again, once
                trim_events(Path(tensorboard), step)

            # the name holds the second it was made in: a suffix in nanoseconds keeps the files of a
            # resume within the same second apart, and in the order TensorBoard reads them (by name)
            self.writer = SummaryWriter(tensorboard, purge_step=last + 1 if last else None, flush_secs=30,
                                        filename_suffix=f".{time.time_ns()}")
        self.tick(last)

    def tick(self, step: int) -> None:
        """Restart the step clock at `step` (after start-up, checkpoints, sample grids)."""
        self._t0, self._step0 = time.perf_counter(), step

    def record(self, step: int, losses: dict[str, float], quality: dict[str, float] | None = None) -> dict:
        """Append the row of `step`: losses, mean step time and images/s since the last tick (not
        counting the evaluation's time), and the evaluation's `quality` (EVALUATION_COLUMNS) if it had one."""
        spent = time.perf_counter() - self._t0 - (quality or {}).get("eval_time_s", 0.0)
        seconds = max(spent, 1e-9) / max(step - self._step0, 1)
        row = {**self.context, "created_at": datetime.now(UTC), "step": step, **{k: losses[k] for k in LOSSES},
               "step_time_s": seconds, "images_per_s": self.context["batch"] / seconds,
               **{k: (quality or {}).get(k) for k in (*EVALUATION_COLUMNS, MEASUREMENT)}}
        self.rows.append(row)
        if self.writer:
            for name in (*LOSSES, "step_time_s", "images_per_s"):
                self.writer.add_scalar(f"train/{name}", row[name], step)
            for name in EVALUATION_COLUMNS:
                if row[name] is not None and row[name] == row[name]:  # measured, not nan
                    self.writer.add_scalar(f"quality/{name}", row[name], step)
        if self.tracker:
            self.tracker.metrics({k: v for k, v in reported(row).items() if k != "step"}, step)
        self.tick(step)
        return row

    def add_grid(self, step: int, png: Path) -> None:
        """The sample grid of `step`, saved as `png`, as a TensorBoard image (the PNG's pixels: one
        grid layout for both) and a tracked artifact."""
        if self.writer:
            from PIL import Image

            with Image.open(png) as grid:
                self.writer.add_image("samples", np.asarray(grid.convert("RGB")), step, dataformats="HWC")
        if self.tracker:
            self.tracker.artifact(png, "samples")

    def add_config(self, config: RunConfig) -> None:
        """The run's settings as TensorBoard hparams (with FID as their metric) and tracked
        parameters, and its JSON as text (an artifact config.json when tracked)."""
        flat = {k: (v if isinstance(v, (int, float, str, bool)) else str(v))
                for section in (config.model, config.train) for k, v in dataclasses.asdict(section).items()}
        flat.update(data=config.data, preset=config.preset, labels=config.labels)
        if self.tracker:
            self.tracker.params(flat)
            self.tracker.text(config.to_json(), "config.json")
        if not self.writer:
            return
        from tensorboardX.summary import hparams

        for summary in hparams(flat, {"quality/fid": float("nan")}):
            self.writer._get_file_writer().add_summary(summary)
        self.writer.add_text("config", f"```\n{config.to_json()}\n```")

    def to_parquet(self) -> bytes:
        buffer = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(self.rows, schema=SCHEMA), buffer)
        return buffer.getvalue()

    def flush(self) -> None:
        """Write the TensorBoard events recorded so far to their file."""
        if self.writer:
            self.writer.flush()

    def close(self, failed: bool = False) -> None:
        """Close the TensorBoard file, and end the tracked run (FAILED if `failed`)."""
        if self.writer:
            self.writer.close()
        if self.tracker:
            self.tracker.close(failed)


def trim_events(folder: Path, up_to_step: int) -> None:
    """Drop the events after `up_to_step` from every TensorBoard events file in `folder` (each a
    sequence of records: length, its CRC, an Event protobuf, its CRC), rewriting only files that
    change, atomically; a record cut short by a killed writer goes too."""
    from google.protobuf.message import DecodeError
    from tensorboardX.proto.event_pb2 import Event
    from tensorboardX.record_writer import masked_crc32c

    for file in sorted(folder.glob("events.out.tfevents.*")):
        data, kept, pos = file.read_bytes(), [], 0
        while pos + 12 <= len(data):
            (size,) = struct.unpack_from("<Q", data, pos)
            end = pos + 12 + size + 4
            payload = data[pos + 12:pos + 12 + size]
            if end > len(data) or struct.unpack_from("<I", data, pos + 8)[0] != masked_crc32c(data[pos:pos + 8]) \
                    or struct.unpack_from("<I", data, end - 4)[0] != masked_crc32c(payload):
                break  # cut short, or not a whole record: nothing after it can be read either
            try:
                step = Event.FromString(payload).step
            except DecodeError:
                break
            if step <= up_to_step:
                kept.append(data[pos:end])
            pos = end
        trimmed = b"".join(kept)
        if trimmed != data:
            atomic_write(file, lambda tmp, trimmed=trimmed: tmp.write_bytes(trimmed))


def read_rows(ckpt: Path, up_to_step: int) -> list[dict]:
    """The metrics rows saved in checkpoint `ckpt`, up to its step ([] if it has none). A file
    that is not Parquet, is truncated or lacks the schema's columns is a one-line UserError."""
    file = Path(ckpt) / METRICS_FILE
    if not file.is_file():
        return []
    try:
        rows = pq.read_table(file).to_pylist()
        pa.Table.from_pylist(rows, schema=SCHEMA)  # what the next checkpoint writes: refuse it now, not then
        return [r for r in rows if r["step"] <= up_to_step]
    except (pa.ArrowException, OSError, KeyError, TypeError) as e:  # ArrowInvalid: not Parquet, truncated
        detail = f"no {e} column" if isinstance(e, KeyError) else " ".join(str(e).split())[:160] or type(e).__name__
        raise UserError(f"checkpoint {ckpt}: {METRICS_FILE} is corrupt ({detail}); resume from another checkpoint "
                        "or delete this one") from None
