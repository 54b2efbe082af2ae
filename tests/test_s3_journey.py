"""The cluster journey on S3, through a real S3 endpoint on 127.0.0.1 (tests/s3_server.py, the
session's `s3`) and the code paths a cloud run takes, on the session's two-node cluster, whose
nodes reach the endpoint as a cloud's do: Ray Train into s3:// with a worker fault, a quick
sweep, `results --best`, analyze / fid / sample / info / compare on what it printed, pandas on
the Parquet through pyarrow.fs, and bad remote input refused in one line."""

from __future__ import annotations

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


def test_sweep_then_the_best_trial_analysed_on_s3(rpgan, s3, ray_cluster, tmp_path):
    sweeps = f"{s3}/sweeps"
    code, out, err = rpgan("sweep", "ablation_blocks", "--quick", "--steps", 2, "--fid-samples", 10,
                           "--evaluations", 1, "--space", "blocks_per_bucket=2", "--storage", sweeps)
    assert code == 0, err
    trials = _table(f"{sweeps}/ablation_blocks-quick/trials")
    assert trials.blocks_per_bucket.tolist() == [2] and set(trials.status) == {"ok"}
    code, best, err = rpgan("results", "ablation_blocks", "--quick", "--storage", sweeps, "--best")
    best = best.strip()
    assert code == 0 and best == trials.sort_values("fid").ckpt.iloc[0] and best.startswith(sweeps), err

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
