"""Experiment tracking in MLflow, an optional extra (`pip install 'rpgan[mlflow]'`) that is off
unless asked for (`--mlflow [URI]`). The run's Parquet and TensorBoard files stay the source of
truth; MLflow gets a copy as training goes, so a lab sees its rpgan runs beside its other work:
the settings, every metrics row, the sample grids, and for a sweep one parent MLflow run with a
child per trial and the trials table.

One MLflow run per rpgan run, found again by its tag RUN_TAG (the run's folder URI): a resumed
run, a retried trial or a halving trial promoted to its next rung logs into the MLflow run it
started. Tracking never costs a run: the first call that fails (a server that is down, a store
that cannot be written, MLflow not installed) prints one warning line and ends the tracking of
that process; the run goes on. MLflow is imported only here, and only when tracking is on.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_STORE = "mlflow.db"  # in the working directory, as MLflow's own default: `mlflow ui` there finds it
EXPERIMENT = "rpgan"  # unless $MLFLOW_EXPERIMENT_NAME names another (MLflow's own variable)
RUN_TAG = "rpgan.run"  # the rpgan run's (or sweep's) folder URI
ARTIFACTS = "mlartifacts"  # beside a SQLite store: the artifacts of its experiments


# The tracking processes that failed once, by store URI: the first failure is the process's only
# warning, and a later Tracker of the same store (a trial's row after its training) does not try again.
_FAILED: set[str] = set()


@dataclass(frozen=True)
class Tracking:
    """Where a run is tracked: the store's URI, the experiment and, for a sweep's trial, its
    parent MLflow run. Made once by the command (`tracking_for`) and handed to every process, which
    on a cluster does not share the command's working directory or environment."""

    uri: str
    experiment: str = EXPERIMENT
    parent: str = ""  # the parent MLflow run's id ("" for a run of its own)


def tracking_for(value: str) -> Tracking:
    """--mlflow's value as a Tracking: a URI as given (http://..., databricks); a SQLite file (a
    file name, or sqlite:///FILE, relative or absolute) as the absolute URI of that file, so that
    every process (a sweep's trials run in other working directories) writes the same one. The
    experiment is $MLFLOW_EXPERIMENT_NAME (MLflow's own variable) or EXPERIMENT."""
    experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT
    if value.startswith("sqlite:///"):
        value = value.removeprefix("sqlite:///")
    elif "://" in value or value == "databricks":
        return Tracking(value, experiment)
    return Tracking(f"sqlite:///{Path(value).expanduser().resolve()}", experiment)


class Tracker:
    """One MLflow run, started or continued by `Tracker(tracking, name, key)`. Every method does
    nothing once tracking has failed (see the module)."""

    def __init__(self, tracking: Tracking, name: str, key: str):
        """The MLflow run tagged `key` in the experiment (continued, set running again), or a new
        one named `name`, a child of tracking.parent if given."""
        self.uri = tracking.uri
        self.client, self.run_id, self.known_params = None, "", set()
        if self.uri in _FAILED:
            return
        try:
            self._start(tracking, name, key)
        except Exception as e:  # whatever the tracker does, the run goes on
            self._stop(e)

    def _start(self, tracking: Tracking, name: str, key: str) -> None:
        # MLflow's HTTP client retries a server that does not answer for minutes (7 tries,
        # doubling waits) before it fails; a run must not wait that long for its bookkeeping
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        quiet = "MLFLOW_LOGGING_LEVEL" not in os.environ
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # not its INFO lines amid the run's progress
        from mlflow import MlflowClient

        if quiet:  # the variable counts only where MLflow is first imported; in a process that imported
            # it before (a notebook, a test), a new SQLite store would still announce its tables
            for logger in ("mlflow.store.db.utils", "alembic"):
                logging.getLogger(logger).setLevel(logging.WARNING)

        client = MlflowClient(self.uri)
        experiment = _experiment(client, self.uri, tracking.experiment)
        found = client.search_runs([experiment], filter_string=f"tags.`{RUN_TAG}` = '{_quoted(key)}'",
                                   max_results=1)
        if found:
            self.run_id = found[0].info.run_id
            self.known_params = set(found[0].data.params)
            client.update_run(self.run_id, status="RUNNING")
        else:
            tags = {RUN_TAG: key, **({"mlflow.parentRunId": tracking.parent} if tracking.parent else {})}
            self.run_id = client.create_run(experiment, run_name=name, tags=tags).info.run_id
        self.client = client

    def params(self, values: Mapping[str, object]) -> None:
        """The run's settings. MLflow keeps a parameter's first value: a resumed run that changed
        one (a larger --steps) records the new value in its config.json artifact only."""
        new = {k: v for k, v in values.items() if k not in self.known_params}
        if new and self.client:
            from mlflow.entities import Param

            self._call("log_batch", self.run_id, params=[Param(k, str(v)[:6000]) for k, v in new.items()])
            self.known_params |= set(new)

    def metrics(self, values: Mapping[str, float | None], step: int) -> None:
        """The measured numbers of `values` at `step` (None and NaN left out)."""
        if self.client is None:
            return
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        try:
            batch = [Metric(k, float(v), stamp, step) for k, v in values.items()
                     if v is not None and not math.isnan(float(v))]
        except (TypeError, ValueError) as e:  # a value that is not a number must not cost the run
            return self._stop(e)
        if batch:
            self._call("log_batch", self.run_id, metrics=batch)

    def artifact(self, path: Path, folder: str | None = None) -> None:
        """A file of the run (a sample grid, a table) as an artifact, in `folder`."""
        self._call("log_artifact", self.run_id, str(path), folder)

    def table(self, frame: pd.DataFrame, name: str) -> None:
        """`frame` as the Parquet artifact file `name`."""
        if self.client is None:
            return
        try:
            with tempfile.TemporaryDirectory(prefix="rpgan-mlflow-") as folder:
                path = Path(folder) / name
                frame.to_parquet(path, index=False)
                self.client.log_artifact(self.run_id, str(path))
        except Exception as e:  # whatever the tracker does, the run goes on
            self._stop(e)

    def text(self, text: str, name: str) -> None:
        """`text` as the artifact file `name` (replaced if the run has one)."""
        self._call("log_text", self.run_id, text, name)

    def close(self, failed: bool = False) -> None:
        """End the MLflow run: FINISHED, or FAILED."""
        self._call("set_terminated", self.run_id, "FAILED" if failed else "FINISHED")

    def _call(self, method: str, *args, **kwargs) -> None:
        if self.client is None:
            return
        try:
            getattr(self.client, method)(*args, **kwargs)
        except Exception as e:  # whatever the tracker does, the run goes on
            self._stop(e)

    def _stop(self, e: Exception) -> None:
        self.client = None
        _FAILED.add(self.uri)
        cause = " ".join(str(e).split())[:200] or type(e).__name__
        if isinstance(e, ImportError):
            cause = "MLflow is not installed (pip install 'rpgan[mlflow]')"
        print(f"rpgan: warning: MLflow tracking at {self.uri} stopped: {cause}; the run goes on without it",
              file=sys.stderr, flush=True)


def _experiment(client, uri: str, name: str) -> str:
    """The id of experiment `name` (created if new; a SQLite store keeps its artifacts beside it)."""
    found = client.get_experiment_by_name(name)
    if found:
        return found.experiment_id
    artifacts = None
    if uri.startswith("sqlite:///"):  # else the working directory of whichever process created it
        artifacts = (Path(uri.removeprefix("sqlite:///")).parent / ARTIFACTS).as_uri()
    try:
        return client.create_experiment(name, artifact_location=artifacts)
    except Exception:  # created meanwhile by another process of the same sweep
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def _quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")
