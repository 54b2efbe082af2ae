"""The cluster journey on S3, through a real S3 endpoint on 127.0.0.1 (tests/s3_server.py, the
session's `s3`) and the code paths a cloud run takes, on the session's two-node cluster, whose
nodes reach the endpoint as a cloud's do: Ray Train into s3:// with a worker fault, a quick
sweep that ASHA stops a trial of, `results --best`, analyze / fid / sample / info / compare on
what it printed, pandas on the Parquet through pyarrow.fs, and bad remote input refused in one
line."""

from __future__ import annotations

import json

from rpgan.training.run_log import SCHEMA
from tests import s3_server

import pandas as pd
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from PIL import Image

pytestmark = pytest.mark.slow  # a Ray cluster and an S3 endpoint: `make test` only

TRAIN = ["train", "--preset", "digits", "--blocks", "2", "--width", "8", "--batch", "4", "--d-steps", "1",
         "--steps", "4", "--checkpoint-every", "2", "--log-every", "1", "--sample-every", "2", "--seed", "1"]


def _files(uri: str) -> list[str]:
    fs, root = pafs.FileSystem.from_uri(uri)
    infos = fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
    return sorted(i.path[len(root) + 1:] for i in infos if i.type == pafs.FileType.File)


def _table(uri: str) -> pd.DataFrame:
    """A Parquet dataset behind a URI, as a user reads it: pandas through a pyarrow filesystem."""
    fs, path = pafs.FileSystem.from_uri(uri)
    return pd.read_parquet(path, filesystem=fs)


def test_ray_train_into_s3_recovers_from_a_fault_and_reads_back(rpgan, s3, ray_cluster, tmp_path):
    run = f"{s3}/runs/t"
    code, out, err = rpgan(*TRAIN, "--workers", 2, "--storage", f"{s3}/runs", "--name", "t",
                           "--inject-fault", "raise@3")
    assert code == 0, err
    assert f"checkpoint: {run}/checkpoints/step_00000004" in out
    files = _files(run)
    assert {"checkpoints/step_00000004/generator.pt", "metrics.parquet", "run.json", "samples.png",
            "frozen_path.png", "samples/step_00000002.png", "samples/step_00000004.png"} <= set(files), files
    assert any(f.startswith("tensorboard/events.out.tfevents.") for f in files), files
    assert not [f for f in files if ".tmp-" in f]
    metrics = pq.read_table(f"{run}/metrics.parquet")
    assert metrics.schema.equals(SCHEMA, check_metadata=False)
    assert metrics.column("step").to_pylist() == [1, 2, 3, 4]  # every step once, across the fault

    code, out, err = rpgan("info", "--ckpt", run)
    assert code == 0 and f"checkpoint   {run}/checkpoints/step_00000004" in out and "step         4 of 4" in out
    code, _, err = rpgan("sample", "--ckpt", run, "--n", 4, "--out", tmp_path / "s.png")
    assert code == 0, err
    with Image.open(tmp_path / "s.png") as grid:
        assert grid.size[0] > 100


def _text(uri: str) -> str:
    fs, path = pafs.FileSystem.from_uri(uri)
    with fs.open_input_stream(path) as f:
        return f.read().decode()


def test_an_asha_sweep_then_the_best_trial_analysed_on_s3(rpgan, s3, ray_cluster, tmp_path):
    """ASHA on the FID measured during training: a stopped trial keeps a row (status stopped, its
    last step and FID), its metrics rows, and is not run again by --resume. One trial at a time,
    in the order seed 0 shuffles them to: the first (3 blocks) goes on, as ASHA's first always
    does; the second (1 block per bucket: one image) trails it at the first rung, step 4, and is
    stopped. The stop reaches the training a few steps later, so the run is long enough for it to
    arrive before the end. Then the best trial, as `results --best` prints it, analysed."""
    sweeps = f"{s3}/sweeps"
    code, _, err = rpgan("sweep", "ablation_blocks", "--quick", "--steps", 24, "--fid-samples", 10, "--evaluations", 1,
                         "--space", "blocks_per_bucket=3,1", "--scheduler", "asha", "--grace-period", 4,
                         "--eval-samples", 10, "--max-concurrent", 1, "--storage", sweeps)
    assert code == 0, err
    sweep = f"{sweeps}/ablation_blocks-quick"
    trials = _table(f"{sweep}/trials")
    rows = trials.set_index("trial")
    stopped = rows[rows["status"] == "stopped"]
    assert list(stopped.index) == ["blocks_per_bucket-1_seed-0"] and len(rows) == 2, rows
    assert (stopped["step"] < 24).all() and (stopped["fid"] > 0).all()
    assert all(c.rsplit("/", 1)[1] == f"step_{s:08d}" and "generator.pt" in _files(c)
               for c, s in zip(stopped["ckpt"], stopped["step"]))
    ok = rows[rows["status"] == "ok"]
    assert (ok["step"] == 24).all() and ok["eval_time_s"].notna().all()
    assert "stopped by asha at step" in err
    metrics = _table(f"{sweep}/metrics")
    assert set(metrics["trial"]) == set(rows.index)
    assert metrics[metrics["fid"].notna()].groupby("trial")["step"].min().eq(4).all()  # every trial evaluated at 4
    # Tune saw every logged row of a trial, FID where it was measured: what ASHA decided on
    key = ok.index[0]
    seen = [json.loads(line) for line in _text(f"{sweep}/tune/attempt-1/{key}/result.json").splitlines()]
    training = [r for r in seen if "g_loss" in r]  # not the final row, nor a checkpoint's bare step
    assert [r["step"] for r in training] == metrics[metrics["trial"] == key]["step"].tolist()
    assert [r["step"] for r in training if "fid" in r] == [4, 8, 16, 24]  # the rungs, and the last step
    # the finished trial's FID and PRD are its training's at the last step: the same paths and reference
    last = metrics[(metrics["trial"] == key) & (metrics["step"] == 24)].iloc[0]
    assert [last[k] for k in ("fid", "prd_f8_recall", "prd_f1_8_precision")] == \
        [ok.loc[key, k] for k in ("fid", "prd_f8_recall", "prd_f1_8_precision")]
    code, out, err = rpgan("sweep", "ablation_blocks", "--quick", "--resume", "--storage", sweeps)
    assert code == 0 and "all 2 trials have finished, nothing to do" in out, err

    code, best, err = rpgan("results", "ablation_blocks", "--quick", "--storage", sweeps, "--best")
    best = best.strip()  # the finished trial's: a stopped one is never the best, whatever its FID
    assert code == 0 and best == ok.loc[key, "ckpt"] and best.startswith(sweeps), err

    # what --best printed is taken as it is; the outputs go beside the run, on S3
    code, out, err = rpgan("analyze", "--ckpt", best, "--evaluations", 2, "--grids", 1, "--workers", 1)
    assert code == 0, err
    analysis = best.rsplit("/checkpoints/", 1)[0] + "/analysis"
    assert f"responsibility_summary: {analysis}/responsibility_summary" in out
    summary = _table(f"{analysis}/responsibility_summary")
    assert set(summary.ckpt) == {best} and (summary[summary.layer == 1].ratio_mean == 1).all()
    assert "responsibility.png" in _files(analysis)
    code, out, err = rpgan("fid", "--ckpt", best, "--n", 10, "--reference-n", 10, "--workers", 1,
                           "--out", f"{s3}/fid")
    assert code == 0 and "FID " in out, err
    assert _table(f"{s3}/fid/quality").fid.iloc[0] > 0
    for job in (["dissect", "--n", 4, "--units", 1, "--strips", 0, "--chunk", 4],
                ["directions", "--directions", 2, "--steps", 1, "--batch", 2]):
        code, out, err = rpgan(*job, "--ckpt", best, "--workers", 0)
        assert code == 0 and f"table: {analysis}/" in out or f"ablation_effect: {analysis}/" in out, err
    assert {"ablation_effect", "directions"} <= {f.split("/")[0] for f in _files(analysis)}
    code, out, err = rpgan("compare", analysis, "--out", f"{s3}/cmp")
    assert code == 0 and "comparison.png" in " ".join(_files(f"{s3}/cmp")), err


def test_bad_remote_input_is_one_line(rpgan, s3, monkeypatch, tmp_path):
    def refused(code: int, *args, text: str) -> str:
        got, out, err = rpgan(*args)
        assert got == code and len(err.strip().splitlines()) == 1 and text in err, err
        return err

    assert "s3://nobucket/run" in refused(2, "info", "--ckpt", "s3://nobucket/run", text="does not exist")
    refused(2, "sample", "--ckpt", s3, "--out", tmp_path / "x.png", text="holds no rpgan checkpoint")
    refused(1, *TRAIN, "--workers", 1, "--storage", "s3://nobucket/runs", "--name", "n", text="s3://nobucket/runs")
    with monkeypatch.context() as m:
        m.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
        err = refused(1, "info", "--ckpt", f"{s3}/runs/t", text="ACCESS_DENIED")
        assert "wrong" not in err  # credentials are never printed
    with monkeypatch.context() as m:
        m.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{s3_server.free_port()}")  # nothing listens there
        refused(1, "info", "--ckpt", f"{s3}/runs/t", text="AWS_ENDPOINT_URL")
    assert not [f for f in _files(s3) if ".tmp-" in f or f.startswith("runs/n")]  # nothing half-written
