"""Experiment tracking (rpgan.io.tracking) against a real local MLflow store (SQLite): a run logs
its settings, every metrics row (the same numbers as its metrics.parquet) and its sample grids, a
resumed run continues its MLflow run, and a tracking server that is down costs one warning line,
never the run. A sweep's parent run with a child per trial: tests/test_sweeps.py (halving)."""

from __future__ import annotations

from tests.conftest import _free_port

import pandas as pd
import pytest

TINY = ["train", "--preset", "digits", "--blocks", "2", "--width", "8", "--batch", "4", "--sample-every", "2"]
EVALUATED = ["--eval-every", "2", "--eval-samples", "10"]


@pytest.mark.slow
def test_training_logs_its_rows_settings_and_grids_and_a_resume_continues_its_mlflow_run(rpgan, tmp_path,
                                                                                          monkeypatch):
    from rpgan.io.run import Run

    from mlflow import MlflowClient

    run_dir = tmp_path / "run"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "lab")
    # a new store named by a relative URI, as `mlflow ui --backend-store-uri sqlite:///mlflow.db` names it
    code, _, err = rpgan(*TINY, *EVALUATED, "--steps", "2", "--out", run_dir, "--mlflow", "sqlite:///mlflow.db")
    assert code == 0 and "MLflow" not in err, err
    # --mlflow alone: the SQLite store mlflow.db here, the same one
    code, _, err = rpgan(*TINY, *EVALUATED, "--steps", "4", "--out", run_dir, "--resume", "--mlflow")
    assert code == 0 and "MLflow" not in err, err

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("lab")
    (tracked,) = client.search_runs([experiment.experiment_id])  # the resume continued it
    assert tracked.info.status == "FINISHED" and tracked.info.run_name == "run"
    assert tracked.data.tags["rpgan.run"] == Run.at(run_dir).uri
    assert tracked.data.params["batch"] == "4" and tracked.data.params["blocks"] == "(2, 2, 2, 2)"
    rows = pd.read_parquet(run_dir / "metrics.parquet")
    assert list(rows["step"]) == [2, 4]

    def history(name: str) -> dict[int, float]:
        return {m.step: m.value for m in client.get_metric_history(tracked.info.run_id, name)}

    assert history("fid") == dict(zip(rows["step"], rows["fid"])) and rows["fid"].notna().all()
    assert history("d_loss") == dict(zip(rows["step"], rows["d_loss"]))
    assert history("images_per_s") == dict(zip(rows["step"], rows["images_per_s"]))
    grids = [a.path for a in client.list_artifacts(tracked.info.run_id, "samples")]
    assert grids == ["samples/step_00000002.png", "samples/step_00000004.png"]
    assert client.download_artifacts(tracked.info.run_id, "config.json", str(tmp_path)).endswith("config.json")


def test_mlflow_names_one_store_and_experiment_for_every_process(tmp_path, monkeypatch):
    from rpgan.io.tracking import EXPERIMENT, Tracking, tracking_for

    monkeypatch.chdir(tmp_path)  # a trial runs in another working directory: its store must not move
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    here = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert tracking_for("mlflow.db") == tracking_for("sqlite:///mlflow.db") == Tracking(here, EXPERIMENT)
    assert tracking_for(here).uri == here and tracking_for("http://mlflow:5000").uri == "http://mlflow:5000"
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "lab")  # read by the command, carried to its workers
    assert tracking_for("databricks") == Tracking("databricks", "lab")


def test_a_tracking_server_that_is_down_costs_one_warning_line_and_never_the_run(rpgan, tmp_path):
    down = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    code, out, err = rpgan(*TINY, "--steps", "2", "--out", tmp_path / "run", "--mlflow", down)
    assert code == 0, err
    warnings = [line for line in err.splitlines() if "MLflow" in line]
    assert len(warnings) == 1 and warnings[0].startswith(f"rpgan: warning: MLflow tracking at {down} stopped")
    assert list(pd.read_parquet(tmp_path / "run" / "metrics.parquet")["step"]) == [2]
    assert "checkpoint:" in out
