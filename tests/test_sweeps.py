"""Named sweeps: plans built and validated up front, Parquet results with one row per trial,
a quick sweep end to end on a local Ray, and a killed sweep resumed without running a finished
trial again or writing any row twice."""

from __future__ import annotations

import os
import shutil
import signal
import sys
from pathlib import Path

from rpgan.errors import UserError
from rpgan.io.remote import local_checkpoint
from rpgan.io.run import Folder
from sweeps import NAMES, get_sweep
from sweeps.results import SCHEMAS, read_table, summarise_trials, write_rows
from sweeps.spec import Plan, plan
from tests.conftest import compute_threads
from tests.processes import wait_until_gone
from tests.sockets import is_loopback, watch

import pandas as pd
import pyarrow.parquet as pq
import pytest

# The quick ablation with a tiny budget: 3 trials, seconds of training each.
TINY = ["--quick", "--steps", "4", "--fid-samples", "10", "--evaluations", "1", "--space", "blocks_per_bucket=1,2,3"]
KEYS = [f"blocks_per_bucket-{b}_seed-0" for b in (1, 2, 3)]


def test_every_sweep_plans_valid_trials_on_both_variants():
    for name in NAMES:
        sweep = get_sweep(name)
        for quick in (False, True):
            p = plan(sweep, quick, seed=5)
            keys = [t.key for t in p.trials]
            assert len(keys) == len(set(keys)) >= 3
            assert {t.config.train.seed for t in p.trials} == {5 + s for s in range(p.budget.samples)}
            assert all(t.config.train.steps == p.budget.steps for t in p.trials)
            assert Plan.from_json(p.to_json()) == p and [t.config for t in Plan.from_json(p.to_json()).trials] == \
                [t.config for t in p.trials]
    full = plan(get_sweep("ablation_blocks"), False, 0)
    assert full.preset == "cifar10" and [t.point["blocks_per_bucket"] for t in full.trials[::3]] == \
        [1, 2, 5, 10, 20, 40, 80]
    assert full.trials[-1].config.model.blocks == (80,) * 5


def test_search_keys_set_the_blocks_of_every_bucket():
    depth = plan(get_sweep("bucket_counts"), True, 0)
    assert [t.config.model.blocks for t in depth.trials] == [
        (10, 10, 10, 10), (8, 8, 8, 8, 8), (7, 7, 7, 7, 6, 6), (6, 6, 6, 6, 6, 5, 5)]
    ablations = {t.point["random_buckets"]: t.config.model.blocks
                 for t in plan(get_sweep("random_buckets"), True, 0).trials}
    assert ablations["all"] == (10, 10, 10, 10)
    assert ablations["2"] == (1, 10, 1, 1)
    assert ablations["all-but-2"] == (10, 1, 10, 10)
    lr = plan(get_sweep("ablation_blocks"), True, 0, {"lr": (1e-4, 2e-4), "blocks_per_bucket": (4,)})
    assert [(t.config.train.lr, t.config.model.blocks) for t in lr.trials] == [(1e-4, (4,) * 4), (2e-4, (4,) * 4)]


@pytest.mark.parametrize("name, space, message", [
    ("ablation_blocks", {"blocks_per_bucket": (0, 5)}, "at least 1 block"),
    ("random_buckets", {"random_buckets": ("9",)}, "random_buckets '9'"),
    ("bucket_counts", {"n_buckets": (3,)}, "needs at least 4 buckets"),
    ("ablation_blocks", {"momentum": (0.9,)}, "unknown search key 'momentum'"),
    ("ablation_blocks", {"blocks_per_bucket": ()}, "at least one value"),
    ("ablation_blocks", {"image_size": (8, 16)}, "share one image size"),
])
def test_impossible_search_values_are_refused_while_planning(name, space, message):
    with pytest.raises(UserError, match=message):
        plan(get_sweep(name), True, 0, space)


def test_bad_input_is_refused_before_any_trial_starts(rpgan, tmp_path):
    for args, message in [
        (["sweep", "no_such_sweep"], "unknown sweep 'no_such_sweep'"),
        (["sweep", "ablation_blocks", "--quick", "--space", "blocks_per_bucket=0,5"], "at least 1 block"),
        (["sweep", "ablation_blocks", "--quick", "--space", "blocks=3"], "--space takes KEY=V1,V2"),
        (["sweep", "ablation_blocks", "--quick", "--fid-samples", "1"], "--fid-samples must be at least 2"),
        (["sweep", "ablation_blocks", "--quick", "--samples", "0"], "--samples must be at least 1"),
        (["results", "ablation_blocks", "--quick"], "no sweep at"),
    ]:
        code, out, err = rpgan(*args, "--storage", tmp_path / "storage")
        assert code == 2, (args, err)
        assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "storage").exists()  # nothing written, no Ray started
    code, out, _ = rpgan("sweeps")
    assert code == 0 and [line.split()[0] for line in out.splitlines()[::2]] == list(NAMES)


def test_trial_rows_replace_their_part_and_keep_the_schema(tmp_path):
    p = plan(get_sweep("ablation_blocks"), True, 0, {"blocks_per_bucket": (2, 3)})
    folder = Folder(str(tmp_path), "s")
    write_rows(folder, "trials", p, p.trials[0], [{"status": "error", "error": "boom"}])
    write_rows(folder, "trials", p, p.trials[0], [{"status": "ok", "fid": 50.0, "step": 600}])
    write_rows(folder, "trials", p, p.trials[1], [{"status": "ok", "fid": 40.0, "step": 600}])
    assert pq.read_table(tmp_path / "s" / "trials").schema.equals(SCHEMAS["trials"], check_metadata=False)
    rows = read_table(folder, "trials")
    assert sorted(rows["trial"]) == sorted(t.key for t in p.trials) and set(rows["status"]) == {"ok"}
    summary = summarise_trials(rows, "blocks_per_bucket")
    assert summary.set_index("blocks_per_bucket")["fid_mean"].to_dict() == {2: 50.0, 3: 40.0}


def test_results_and_checkpoints_behind_a_uri(tmp_path):
    """Cloud storage goes through pyarrow.fs; a file:// URI takes the same code path as s3://."""
    p = plan(get_sweep("ablation_blocks"), True, 0, {"blocks_per_bucket": (2,)})
    folder = Folder(f"file://{tmp_path}", "s")
    assert folder.local is None and folder.uri == f"file://{tmp_path}/s"
    write_rows(folder, "trials", p, p.trials[0], [{"status": "ok", "fid": 7.0}])
    assert folder.files("trials") == [f"part-{p.trials[0].key}.parquet"] and folder.dirs(".") == ["trials"]
    assert read_table(folder, "trials")["fid"].tolist() == [7.0]
    (tmp_path / "ckpt" / "step_1").mkdir(parents=True)
    (tmp_path / "ckpt" / "step_1" / "config.json").write_text("{}")
    copy = local_checkpoint(f"file://{tmp_path}/ckpt/step_1")
    assert copy.name.startswith("step_1-") and (copy / "config.json").read_text() == "{}"


RPGAN = str(Path(sys.executable).with_name("rpgan"))


def _user_env(cache: Path) -> dict[str, str]:
    """A user's shell: no Ray address (a private local Ray), nor the switch rpgan sets for Ray."""
    unset = ("RAY_ADDRESS", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")
    return {k: v for k, v in os.environ.items() if k not in unset} | {"RPGAN_CACHE": str(cache)}


def _ok_rows(sweep: Path) -> pd.DataFrame:
    parts = list((sweep / "trials").glob("part-*.parquet"))
    rows = pd.concat([pd.read_parquet(p) for p in parts]) if parts else pd.DataFrame({"status": []})
    return rows[rows["status"] == "ok"]


@pytest.fixture(scope="module")
def journey(tmp_path_factory):
    """The sweep journey of a user on one machine, run once: a tiny quick sweep with its private
    Ray, tracked in MLflow (a SQLite store beside it), SIGKILLed once a trial has written its row,
    then resumed (typing the --samples it was started with); both commands watched for the
    sockets their process trees listen on."""
    storage = tmp_path_factory.mktemp("sweeps")
    sweep, env = storage / "ablation_blocks-quick", _user_env(storage / "cache")
    tracked = ["--mlflow", f"sqlite:///{storage / 'mlflow.db'}"]
    killed = watch({"sweep": [RPGAN, "sweep", "ablation_blocks", *TINY, "--storage", str(storage), *tracked]}, env,
                   600, kill_at={"sweep": ": done, FID"})["sweep"]  # printed once a trial has written its row
    assert killed.code == -signal.SIGKILL, killed.out
    wait_until_gone(killed.pids)  # its Ray ends with it (rpgan.distributed.reaper); no trial writes on
    before = _ok_rows(sweep)
    resumed = watch({"resume": [RPGAN, "sweep", "ablation_blocks", "--quick", "--resume", "--samples", "1",
                                "--storage", str(storage), *tracked]}, env, 600)["resume"]
    assert resumed.code == 0, resumed.out
    return storage, sweep, before, killed, resumed


@pytest.mark.slow
def test_killed_sweep_resumes_with_exactly_one_row_per_trial(journey):
    _, sweep, before, killed, resumed = journey
    assert 1 <= len(before) < len(KEYS)
    rows = pd.read_parquet(sweep / "trials")
    assert sorted(rows["trial"]) == sorted(KEYS) and set(rows["status"]) == {"ok"}
    assert sorted(p.name for p in (sweep / "trials").iterdir()) == sorted(f"part-{k}.parquet" for k in KEYS)
    # a trial that had finished was not run again: its row is the one written before the kill
    kept = rows.set_index("trial").loc[before["trial"], "created_at"]
    assert (kept.to_numpy() == before.set_index("trial")["created_at"].to_numpy()).all()
    assert f"/{len(KEYS) - len(before)} trials" in resumed.out  # the progress lines count only the trials left
    assert "taking over the lock" in resumed.out  # the killed driver's, released by the kernel
    for key in KEYS:  # every trial's training logged each step once, across the kill
        steps = pd.read_parquet(sweep / "runs" / key / "metrics.parquet")["step"]
        assert steps.is_unique and steps.max() == 4


@pytest.mark.slow
def test_the_killed_and_resumed_sweep_is_one_mlflow_run_with_one_child_per_trial(journey, tmp_path):
    storage, sweep, _, killed, resumed = journey
    assert "MLflow" not in killed.out + resumed.out
    _check_tracked(f"sqlite:///{storage / 'mlflow.db'}", sweep, pd.read_parquet(sweep / "trials").set_index("trial"),
                   pd.read_parquet(sweep / "metrics"), "grid", tmp_path)


@pytest.mark.slow
def test_the_sweep_s_private_ray_listens_on_loopback_only_and_counts_this_machine_s_cpus(journey):
    """Its GCS, raylet, agents and trial processes (each trial trains and evaluates in its own
    process: no Ray Train worker for a one-worker trial)."""
    *_, killed, resumed = journey
    for run in (killed, resumed):
        names = {name for name, _ in run.listening}
        assert {"gcs_server", "raylet"} <= names, run.listening
        assert all(is_loopback(ip) for _, ip in run.listening), run.listening
        assert not any(name.startswith("ray::RayTrainWo") for name in names)
    assert f"Ray: 1 node(s), {os.cpu_count()} CPUs" in resumed.out  # not one more (trials train themselves)


@pytest.mark.slow
def test_quick_sweep_results_schema_filter_and_plot(journey, rpgan):
    storage, sweep, *_ = journey
    trials = pq.read_table(sweep / "trials")
    assert trials.schema.equals(SCHEMAS["trials"], check_metadata=False)
    df = trials.to_pandas()
    three = df[df["blocks_per_bucket"] == 3]
    assert len(three) == 1 and three.iloc[0]["blocks"] == "3,3,3,3" and three.iloc[0]["n_buckets"] == 4
    assert (df["fid"] > 0).all() and (df["step"] == 4).all() and df["ckpt"].map(lambda c: Path(c).is_dir()).all()
    resp = pq.read_table(sweep / "responsibility")
    assert resp.schema.equals(SCHEMAS["responsibility"], check_metadata=False)
    resp = resp.to_pandas()
    # one block per bucket leaves nothing to vary; the others have a row per bucket and distance
    assert set(resp["blocks_per_bucket"]) == {2, 3} and set(resp["layer"]) == {1, 2, 3, 4}
    metrics = pq.read_table(sweep / "metrics")  # every trial's training rows, its configuration leading
    assert metrics.schema.equals(SCHEMAS["metrics"], check_metadata=False)
    metrics = metrics.to_pandas()
    assert sorted(metrics.groupby("trial")["step"].apply(list).items()) == [(k, [4]) for k in KEYS]  # the last step
    assert metrics["fid"].isna().all()  # a grid sweep evaluates after training, not during it
    code, out, err = rpgan("results", "ablation_blocks", "--quick", "--storage", storage)
    assert code == 0, err
    assert "3 of 3 trials have results" in out and (sweep / "summary.png").stat().st_size > 10_000
    assert (sweep / "curves.png").stat().st_size > 10_000 and f"curves: {sweep}/curves.png" in out
    code, best, _ = rpgan("results", "ablation_blocks", "--quick", "--storage", storage, "--best")
    assert best.strip() == df.sort_values("fid").iloc[0]["ckpt"]
    code, out, err = rpgan("sample", "--ckpt", best.strip(), "--n", "4", "--out", storage / "best.png")
    assert code == 0 and (storage / "best.png").is_file(), err


@pytest.mark.slow
def test_resume_refuses_other_settings_and_a_finished_sweep_does_nothing(journey, rpgan):
    storage, sweep, *_ = journey
    code, _, err = rpgan("sweep", "ablation_blocks", "--quick", "--storage", storage)
    assert code == 2 and "pass --resume" in err
    code, _, err = rpgan("sweep", "ablation_blocks", "--quick", "--resume", "--samples", "2", "--steps", "4",
                         "--storage", storage)  # --steps is the sweep's own: only --samples differs
    assert code == 2 and "other --samples;" in err and "--steps" not in err and err.count("\n") == 1, err
    stamp = pd.read_parquet(sweep / "trials")["created_at"].sort_values().to_list()
    code, out, err = rpgan("sweep", "ablation_blocks", "--quick", "--resume", "--storage", storage)
    assert code == 0 and "all 3 trials have finished, nothing to do" in out, err
    assert pd.read_parquet(sweep / "trials")["created_at"].sort_values().to_list() == stamp


@pytest.mark.slow
def test_a_sweep_trial_gives_the_numbers_of_the_same_trial_computed_directly(journey, tmp_path, monkeypatch):
    """Train and evaluate one trial of the journey in this process (nothing in common with the
    sweep but the plan: its own reference features, no trial beside it, not killed): every number
    is the sweep's. The threads are the sweep's: 1 for a trial, 2 for the one actor that computes
    the reference features of a 2-CPU private Ray (a thread count changes float sums)."""
    import dataclasses

    from analysis.fanout import Fanout
    from analysis.fid import reference_features
    from rpgan.io.data import training_images
    from rpgan.training.checkpoint import load_generator
    from rpgan.training.evaluation import REFERENCE_SEED
    from rpgan.training.train import train
    from sweeps.trial import evaluate

    _, sweep, *_ = journey
    monkeypatch.setenv("RPGAN_CACHE", str(tmp_path / "cache"))
    chosen = plan(get_sweep("ablation_blocks"), True, 0, {"blocks_per_bucket": ("3",)}, steps=4, fid_samples=10,
                  evaluations=1)
    config = chosen.trials[0].config
    with compute_threads(os.cpu_count()):
        m = config.model
        reference = reference_features(config.data, m.image_size, m.channels, 10, Fanout(workers=0), REFERENCE_SEED)[0]
    with compute_threads(1):  # a 1-CPU trial's
        images = training_images(config)
        ckpt = train(dataclasses.replace(config, dataset_size=len(images)), images, tmp_path / "run", quiet=True)
        row, summary = evaluate(chosen, load_generator(ckpt)[0], ckpt, 0, reference, Fanout(workers=0))
    swept = pd.read_parquet(sweep / "trials").set_index("trial").loc["blocks_per_bucket-3_seed-0"]
    assert [row[k] for k in ("fid", "prd_f8_recall", "prd_f1_8_precision")] == \
        [swept[k] for k in ("fid", "prd_f8_recall", "prd_f1_8_precision")]
    mine = pd.DataFrame(summary).sort_values(["layer", "distance"]).reset_index(drop=True)
    theirs = pd.read_parquet(sweep / "responsibility").query("blocks_per_bucket == 3")
    theirs = theirs.sort_values(["layer", "distance"]).reset_index(drop=True)
    for column in ("spread_mean", "ratio_mean", "ratio_std"):  # std of one evaluation: NaN in both
        pd.testing.assert_series_equal(mine[column], theirs[column], check_exact=True, check_dtype=False)


@pytest.mark.slow
def test_halving_keeps_the_best_at_each_rung_resumes_exactly_and_refuses_another_scheduler(ray_cluster, rpgan,
                                                                                            tmp_path):
    """Synchronous successive halving on the shared cluster: all three trials train to the rung
    (step 4) and measure FID there; the best 3 // 2 = 1 goes on to step 8 from its rung
    checkpoint, the others keep a `stopped` row of the rung. The promoted trial's weights and
    losses are those of the same trial trained straight through; a resume after losing its last
    stage (its row and final checkpoint) trains it from step 4 again and nothing else. Tracked in
    MLflow (a local SQLite store): one run for the sweep, one child per trial whatever the rungs
    and resumes, holding the FIDs of the Parquet tables."""
    import dataclasses

    from rpgan.io.data import training_images
    from rpgan.training.checkpoint import load_generator
    from rpgan.training.train import train
    from sweeps.runner import halving_keeps

    import torch

    args = ["sweep", "ablation_blocks", "--quick", "--steps", "8", "--fid-samples", "10", "--evaluations", "1",
            "--space", "blocks_per_bucket=3,1,2", "--scheduler", "halving", "--grace-period", "4",
            "--eval-samples", "10", "--storage", tmp_path, "--shared-storage"]
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code, _, err = rpgan(*args, "--mlflow", store)
    assert code == 0, err
    sweep = tmp_path / "ablation_blocks-quick"
    rows = pd.read_parquet(sweep / "trials").set_index("trial")
    metrics = pd.read_parquet(sweep / "metrics")
    at_rung = metrics[metrics["step"] == 4].set_index("trial")["fid"]
    order = [f"blocks_per_bucket-{b}_seed-0" for b in (3, 1, 2)]  # the plan's order breaks ties
    kept = halving_keeps({k: at_rung[k] for k in order}, 2)
    assert len(kept) == 1 and rows.loc[kept[0], "status"] == "ok" and rows.loc[kept[0], "step"] == 8
    stopped = rows[rows["status"] == "stopped"]
    assert sorted(stopped.index) == sorted(set(order) - set(kept)) and (stopped["step"] == 4).all()
    assert all(stopped.loc[k, "fid"] == at_rung[k] for k in stopped.index)
    assert "step 4: 1 of 3 trials go on" in err and "MLflow" not in err
    _check_tracked(store, sweep, rows, metrics, "halving", tmp_path / "first")

    chosen = plan(get_sweep("ablation_blocks"), True, 0, {"blocks_per_bucket": ("3", "1", "2")}, scheduler="halving",
                  schedule={"grace_period": 4, "eval_samples": 10}, steps=8, fid_samples=10, evaluations=1)
    config = chosen.trial(kept[0]).config
    images = training_images(config)
    with compute_threads(1):  # a trial's
        straight = train(dataclasses.replace(config, dataset_size=len(images)), images, tmp_path / "straight",
                         quiet=True)
    swept = load_generator(rows.loc[kept[0], "ckpt"])[0].state_dict()
    assert all(torch.equal(v, swept[k]) for k, v in load_generator(straight)[0].state_dict().items())
    losses = ["step", "d_loss", "g_loss", "diversity"]
    assert metrics[metrics["trial"] == kept[0]][losses].reset_index(drop=True).equals(
        pd.read_parquet(tmp_path / "straight" / "metrics.parquet")[losses])

    # the last stage lost (as if killed during it): resumed from the rung, no rung trained again
    run = sweep / "runs" / kept[0]
    (sweep / "trials" / f"part-{kept[0]}.parquet").unlink()
    shutil.rmtree(run / "checkpoints" / "step_00000008")
    rung_files = {f: f.stat().st_mtime_ns for f in (sweep / "runs").glob("*/checkpoints/step_00000004/*")}
    code, _, err = rpgan("sweep", "ablation_blocks", "--quick", "--resume", "--storage", tmp_path, "--shared-storage",
                         "--mlflow", store)
    assert code == 0, err
    assert len(rung_files) == 3 * 5 and all(f.stat().st_mtime_ns == t for f, t in rung_files.items())
    assert (run / "checkpoints" / "step_00000008").is_dir() and "1/1 trials" in err
    again = pd.read_parquet(sweep / "trials").set_index("trial")
    pd.testing.assert_frame_equal(again.drop(columns=["created_at", "train_time_s", "eval_time_s"]).sort_index(),
                                  rows.drop(columns=["created_at", "train_time_s", "eval_time_s"]).sort_index())
    _check_tracked(store, sweep, again, pd.read_parquet(sweep / "metrics"), "halving", tmp_path / "again")
    code, _, err = rpgan("sweep", "ablation_blocks", "--quick", "--resume", "--scheduler", "asha",
                         "--storage", tmp_path, "--shared-storage")
    assert code == 2 and "--scheduler" in err and len(err.strip().splitlines()) == 1, err


def _check_tracked(store: str, sweep: Path, trials: pd.DataFrame, metrics: pd.DataFrame, scheduler: str,
                   download: Path) -> None:
    """The sweep's MLflow run and its children hold what its Parquet tables hold (its trials
    table downloaded into `download`)."""
    from rpgan.io.run import Folder

    from mlflow import MlflowClient

    client = MlflowClient(store)
    runs = client.search_runs([client.get_experiment_by_name("rpgan").experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert parent.data.tags["rpgan.run"] == Folder.at(sweep).uri and parent.info.status == "FINISHED"
    assert parent.data.params["scheduler"] == scheduler and parent.data.params["trials"] == str(len(trials))
    download.mkdir(parents=True, exist_ok=True)
    table = pd.read_parquet(client.download_artifacts(parent.info.run_id, "trials.parquet", str(download)))
    pd.testing.assert_frame_equal(table.set_index("trial")[["status", "step", "fid"]].sort_index(),
                                  trials[["status", "step", "fid"]].sort_index())
    children = {r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    assert sorted(children) == sorted(trials.index) and len(runs) == 1 + len(trials)  # one per trial, ever
    for key, child in children.items():
        fids = {m.step: m.value for m in client.get_metric_history(child.info.run_id, "fid")}
        rows = metrics[(metrics["trial"] == key) & metrics["fid"].notna()]
        assert fids == dict(zip(rows["step"], rows["fid"]))
        if trials.loc[key, "status"] == "ok":  # the trial's own row, after its evaluation
            assert child.data.metrics["trial/fid"] == trials.loc[key, "fid"]
