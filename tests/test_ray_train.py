"""`rpgan train --workers N` on a two-node local Ray cluster: it trains, its checkpoint loads, a
crashed worker resumes from the last checkpoint with every metrics row exactly once, and a
run's name cannot be reused for another configuration. (An EigenGAN on Ray Train:
tests/test_ray_jobs.py, from the head's shell.)"""

from __future__ import annotations

from datetime import UTC, datetime

from rpgan.training.checkpoint import load_generator
from rpgan.training.run_log import SCHEMA

import pandas as pd
import pyarrow.parquet as pq
import pytest
import ray
import torch

SLOW = pytest.mark.slow  # Ray Train on the shared cluster: `make test` only

# Small and fast: 12 steps, a checkpoint every 4, a metrics row every 2.
RUN = ["train", "--preset", "digits", "--blocks", "3", "--width", "16", "--batch", "8", "--d-steps", "1",
       "--steps", "12", "--checkpoint-every", "4", "--log-every", "2", "--sample-every", "0", "--seed", "3",
       "--workers", "2", "--shared-storage"]  # the session cluster's two nodes share this machine's disk
LOGGED = list(range(2, 13, 2))


@pytest.fixture
def cluster(ray_cluster):
    """The session's two nodes of one CPU each: a 2-worker run puts one worker on each node."""
    return ray_cluster


@pytest.fixture(scope="module")
def storage(tmp_path_factory):
    return tmp_path_factory.mktemp("storage")


def clean_run(rpgan, storage):
    """The uninterrupted 2-worker run that several tests compare with: made once per module."""
    run = storage / "clean"
    if not (run / "metrics.parquet").exists():
        code, _, err = rpgan(*RUN, "--storage", storage, "--name", "clean")
        assert code == 0, err
    return run


def _metrics(run) -> pd.DataFrame:
    table = pq.read_table(run / "metrics.parquet")
    assert table.schema.equals(SCHEMA, check_metadata=False)
    return table.to_pandas()


@SLOW
def test_two_workers_on_two_nodes_train_and_sample(rpgan, cluster, storage, tmp_path):
    assert len([n for n in ray.nodes() if n["Alive"]]) == 2
    code, out, err = rpgan(*RUN, "--storage", storage, "--name", "clean")
    assert code == 0, err
    run = storage / "clean"
    assert f"checkpoint: {run / 'checkpoints' / 'step_00000012'}" in out
    metrics = _metrics(run)
    assert metrics.step.tolist() == LOGGED and set(metrics.workers) == {2} and set(metrics.run_id) == {"clean"}
    assert (metrics.images_per_s > 0).all() and metrics.d_loss.notna().all()
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    code, out, err = rpgan("sample", "--ckpt", run, "--n", "8", "--out", tmp_path / "s.png")
    assert code == 0, err
    assert (tmp_path / "s.png").stat().st_size > 0
    code, out, err = rpgan("info", "--ckpt", run)
    assert "step         12 of 12" in out


@SLOW
def test_a_crashed_worker_resumes_from_the_last_checkpoint(rpgan, cluster, storage):
    """A worker process that dies (os._exit); one that raises goes through the same restart,
    which test_a_run_out_of_retries_fails_with_one_line sees fail when no retry is left. Tracked
    in MLflow by rank 0 alone, the restarted group continuing the same MLflow run."""
    from mlflow import MlflowClient

    mode = "exit"
    name = f"fault-{mode}"
    store = f"sqlite:///{storage / 'mlflow.db'}"
    code, out, err = rpgan(*RUN, "--storage", storage, "--name", name, "--inject-fault", f"{mode}@7",
                           "--eval-every", "6", "--eval-samples", "4", "--mlflow", store)
    assert code == 0, err
    run = storage / name
    crashed_at = datetime.fromtimestamp((run / f".fault-{mode}-7").stat().st_mtime, UTC)
    metrics = _metrics(run)
    assert metrics.step.tolist() == LOGGED  # every logged step exactly once
    assert metrics[metrics.fid.notna()].step.tolist() == [6, 12]  # FID at 6 ran twice, kept once
    # steps up to the checkpoint at 4 were logged before the crash and kept; the rest re-ran after it
    before = metrics[metrics.step <= 4].created_at
    after = metrics[metrics.step > 4].created_at
    assert (before < crashed_at).all() and (after > crashed_at).all()
    assert sorted(p.name for p in (run / "checkpoints").iterdir())[-1] == "step_00000012"
    # per-step seeding: the resumed run computes what an uninterrupted one computes
    clean = _metrics(clean_run(rpgan, storage))
    assert metrics.d_loss.tolist() == pytest.approx(clean.d_loss.tolist(), rel=1e-6)

    client = MlflowClient(store)
    (tracked,) = client.search_runs([client.get_experiment_by_name("rpgan").experiment_id])
    assert tracked.info.run_name == name and tracked.info.status == "FINISHED"
    history = sorted(client.get_metric_history(tracked.info.run_id, "d_loss"), key=lambda m: (m.step, m.timestamp))
    last = {m.step: m.value for m in history}  # the steps re-run after the crash: their later value
    assert last == dict(zip(metrics.step, metrics.d_loss))
    once = [m.step for m in history if m.step > 7]
    assert once == [8, 10, 12]  # logged by rank 0 only, once
    fid = {m.step: m.value for m in sorted(client.get_metric_history(tracked.info.run_id, "fid"),
                                           key=lambda m: m.timestamp)}
    assert fid == dict(zip(metrics.step[metrics.fid.notna()], metrics.fid.dropna()))


@SLOW
def test_rerunning_a_finished_run_does_nothing(rpgan, cluster, storage):
    run = clean_run(rpgan, storage)
    before = (run / "metrics.parquet").stat().st_mtime_ns
    code, out, err = rpgan(*RUN, "--storage", storage, "--name", "clean")
    assert code == 0 and "nothing to do" in out
    assert (run / "metrics.parquet").stat().st_mtime_ns == before


@SLOW
def test_another_configuration_under_a_used_name_is_refused(rpgan, cluster, storage):
    clean_run(rpgan, storage)
    code, out, err = rpgan(*[a if a != "3" else "4" for a in RUN], "--storage", storage, "--name", "clean")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "--blocks" in err and "--name" in err


@SLOW
def test_a_run_out_of_retries_fails_with_one_line(rpgan, cluster, storage):
    code, out, err = rpgan(*RUN, "--storage", storage, "--name", "no-retries", "--max-failures", "0",
                           "--inject-fault", "raise@3")
    assert code == 1
    last = err.strip().splitlines()[-1]
    assert last.startswith("rpgan: training failed") and "fault injected" in last


def test_bad_worker_flags_are_refused_before_anything_starts(rpgan, storage):
    code, _, err = rpgan(*RUN, "--storage", storage, "--name", "bad", "--inject-fault", "boom@3")
    assert code == 2 and "--inject-fault" in err
    code, _, err = rpgan(*RUN, "--out", storage / "x", "--name", "y")
    assert code == 2 and "either --out or --storage/--name" in err
    assert not (storage / "bad").exists()


@SLOW
def test_a_corrupt_newest_checkpoint_resumes_from_the_one_before(rpgan, cluster, storage):
    import shutil

    run = storage / "corrupt"
    shutil.copytree(clean_run(rpgan, storage), run)
    generator = run / "checkpoints" / "step_00000012" / "generator.pt"
    generator.write_bytes(generator.read_bytes()[:100])
    code, out, err = rpgan(*[a if a != "12" else "16" for a in RUN], "--storage", storage, "--name", "corrupt")
    assert code == 0, err
    # rank 0 says why (on the driver's terminal when it shows worker output, as `rpgan train` does)
    said = "".join(log.read_text(errors="replace") for log in cluster.logs.glob("worker-*.err"))
    assert "skipping checkpoint" in said and "step_00000012" in said and "generator.pt is truncated" in said
    assert f"resuming {run} from step 8" in said
    # the valid step-8 checkpoint was kept; step 12 is whole again and equals the clean run's
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "step_00000008", "step_00000012", "step_00000016"]
    assert _metrics(run).step.tolist() == list(range(2, 17, 2))  # every logged step exactly once
    twelve = load_generator(run / "checkpoints" / "step_00000012")[0].state_dict()
    clean = load_generator(storage / "clean" / "checkpoints" / "step_00000012")[0].state_dict()
    assert all(torch.equal(v, clean[k]) for k, v in twelve.items())
