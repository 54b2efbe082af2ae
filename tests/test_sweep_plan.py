"""Hostile sweep input refused while planning: duplicate grid points, values of the wrong type
for their configuration field, impossible configurations, and too few images for PRD."""

from __future__ import annotations

import dataclasses
import inspect
import re

from rpgan.errors import UserError
from rpgan.metrics.prd import compute_prd
from sweeps import get_sweep
from sweeps.commands import parse_space
from sweeps.spec import PRD_CLUSTERS, PRD_MIN_SAMPLES, Plan, plan

import numpy as np
import pytest


def _plan(*space: str, name: str = "ablation_blocks", **budget) -> Plan:
    return plan(get_sweep(name), True, 0, parse_space(space), **budget)


@pytest.mark.parametrize("space, message", [
    (["blocks_per_bucket=1,01"], "blocks_per_bucket has the value 1 twice ('1' and '01')"),
    (["blocks_per_bucket=3, 3"], "blocks_per_bucket has the value 3 twice"),
    (["lr=0.1,0.10"], "lr has the value 0.1 twice ('0.1' and '0.10')"),
    (["loss=hinge,hinge"], "loss has the value 'hinge' twice"),
])
def test_values_equal_once_typed_are_refused(space, message):
    with pytest.raises(UserError, match=re.escape(f"search key {message}")):
        _plan(*space)


def test_points_sharing_a_run_directory_or_a_configuration_are_refused():
    with pytest.raises(UserError, match=r"share one run directory \(random_buckets-1\+3_seed-0\)"):
        _plan("random_buckets=1,3;1, 3", name="random_buckets")
    with pytest.raises(UserError, match="share the same configuration"):
        _plan("random_buckets=all-but-2;all-but-02", name="random_buckets")
    with pytest.raises(UserError, match="share the same configuration"):  # 4 buckets: all of them is 'all'
        _plan("random_buckets=all;1,2,3,4", name="random_buckets")
    with pytest.raises(UserError, match="--space width is given twice"):
        parse_space(("width=8", "width=16"))


def test_duplicate_points_are_refused_by_the_cli_before_anything_starts(rpgan, tmp_path):
    for args, message in [
        (["--space", "blocks_per_bucket=1,01"], "blocks_per_bucket has the value 1 twice"),
        (["--space", "width=1.5"], "search key width takes whole numbers, got '1.5'"),
        (["--fid-samples", "5"], f"--fid-samples must be at least {PRD_MIN_SAMPLES}"),
    ]:
        code, _, err = rpgan("sweep", "ablation_blocks", "--quick", *args, "--storage", tmp_path / "storage")
        assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "storage").exists()


@pytest.mark.parametrize("item, message", [
    ("width=1.5", "width takes whole numbers, got '1.5'"),
    ("width=abc", "width takes whole numbers, got 'abc'"),
    ("d_width=true", "d_width takes whole numbers, got 'true'"),
    ("batch=8.0", "batch takes whole numbers, got '8.0'"),
    ("n_buckets=4.5", "n_buckets takes whole numbers, got '4.5'"),
    ("lr=abc", "lr takes finite numbers, got 'abc'"),
    ("lr=nan", "lr takes finite numbers, got nan"),
    ("linear=yes", "linear takes true or false, got 'yes'"),
    ("arch=gan", "arch takes one of resnet, dcgan, fc, eigengan, got 'gan'"),
    ("loss=Hinge", "loss takes one of hinge, wgan-gp, got 'Hinge'"),
    ("routing=fast", "routing takes one of group, gather, loop, got 'fast'"),
    ("input=noise", "input takes one of learned, fixed, gaussian, got 'noise'"),
    ("d_arch=fc", "d_arch takes one of resnet, dcgan, got 'fc'"),
])
def test_values_of_the_wrong_type_are_refused_naming_key_and_value(item, message):
    with pytest.raises(UserError, match=f"search key {message}"):
        _plan(item)


def test_values_take_their_fields_type_also_given_directly():
    p = _plan("lr=1,2e-4", "linear=TRUE", "blocks_per_bucket=2")
    assert p.space == {"blocks_per_bucket": (2,), "lr": (1.0, 2e-4), "linear": (True,)}
    assert [t.config.train.lr for t in p.trials] == [1.0, 2e-4] and all(t.config.model.linear for t in p.trials)
    assert [type(t.config.train.lr) for t in p.trials] == [float, float]
    assert Plan.from_json(p.to_json()) == p
    for space, message in [({"width": (1.5,)}, "width takes whole numbers, got 1.5"),
                           ({"width": (True,)}, "width takes whole numbers, got True"),
                           ({"linear": (1,)}, "linear takes true or false, got 1")]:
        with pytest.raises(UserError, match=message):
            plan(get_sweep("ablation_blocks"), True, 0, space)


@pytest.mark.parametrize("item", ["width=1.5", "z_dim=0"])
def test_impossible_configurations_are_refused_while_planning(item):
    # z_dim=0 relies on ModelConfig.validate refusing it (plan validates every trial's configuration)
    with pytest.raises(UserError, match="z_dim|width"):
        _plan(item)


def test_fid_samples_below_what_prd_needs_are_refused_when_the_sweep_measures_prd():
    with pytest.raises(UserError, match=f"--fid-samples must be at least {PRD_MIN_SAMPLES} for this sweep's PRD.*"
                                        f"got {PRD_MIN_SAMPLES - 1}"):
        _plan(fid_samples=PRD_MIN_SAMPLES - 1)
    assert _plan(fid_samples=PRD_MIN_SAMPLES).budget.fid_samples == PRD_MIN_SAMPLES
    no_prd = dataclasses.replace(get_sweep("ablation_blocks"), metrics=("fid", "responsibility"))
    assert plan(no_prd, True, 0, fid_samples=2).budget.fid_samples == 2
    with pytest.raises(UserError, match="at least 2"):
        plan(no_prd, True, 0, fid_samples=1)


def test_prd_minimum_is_what_compute_prd_needs():
    assert inspect.signature(compute_prd).parameters["num_clusters"].default == PRD_CLUSTERS
    rng = np.random.default_rng(0)
    compute_prd(rng.normal(size=(PRD_MIN_SAMPLES, 4)), rng.normal(size=(PRD_MIN_SAMPLES, 4)), num_runs=1)
    with pytest.raises(ValueError, match="n_clusters"):
        compute_prd(rng.normal(size=(PRD_MIN_SAMPLES - 1, 4)), rng.normal(size=(PRD_MIN_SAMPLES - 1, 4)), num_runs=1)


def test_rpgan_vs_standard_changes_only_the_generator():
    p = _plan(name="rpgan_vs_standard")
    by = {(t.point["generator"], t.config.train.seed): t.config for t in p.trials}
    assert sorted(by) == [(g, s) for g in ("rpgan", "standard") for s in range(3)]
    rpgan, standard = by["rpgan", 0], by["standard", 0]
    assert rpgan.model.blocks == (10,) * 4 and rpgan.model.input == "learned"
    assert standard.model.blocks == (1,) * 4 and standard.model.input == "gaussian"
    same = dataclasses.replace(standard.model, blocks=rpgan.model.blocks, input=rpgan.model.input)
    assert same == rpgan.model and standard.train == rpgan.train and standard.data == rpgan.data


def test_a_sweep_runs_on_another_preset_and_data_set():
    p = plan(get_sweep("rpgan_vs_standard"), False, 0, preset="digits", data="digits-gray", samples=1)
    assert {t.config.preset for t in p.trials} == {"digits"} and {t.config.data for t in p.trials} == {"digits-gray"}
    assert Plan.from_json(p.to_json()).data == "digits-gray"
    assert '"data"' not in _plan().to_json()  # a sweep on its preset's data keeps the id it always had
    with pytest.raises(UserError, match="preset anime has no default data set; pass --data folder:PATH"):
        plan(get_sweep("rpgan_vs_standard"), False, 0, preset="anime")


@pytest.mark.parametrize("item, message", [
    ("generator=rpgan,gan", "search key generator takes one of rpgan, standard, got 'gan'"),
    ("input=learned", "generator standard has a Gaussian input; drop the input key"),
])
def test_bad_comparisons_are_refused(item, message):
    with pytest.raises(UserError, match=message):
        _plan(item, name="rpgan_vs_standard")


def test_a_bad_data_set_leaves_no_sweep_behind(rpgan, tmp_path):
    code, _, err = rpgan("sweep", "rpgan_vs_standard", "--quick", "--data", f"folder:{tmp_path / 'typo'}",
                         "--storage", tmp_path / "sweeps")
    assert code == 2 and "is not a directory of images" in err
    assert not list((tmp_path / "sweeps").rglob("sweep.json"))  # so the corrected command starts afresh


def test_asha_evaluates_during_training_from_the_budget_and_grid_stays_as_it_was():
    sweep = get_sweep("ablation_blocks")
    grid = plan(sweep, True, 0)
    assert "schedule" not in grid.to_json() and {t.config.train.eval_every for t in grid.trials} == {0}
    asha = plan(sweep, True, 0, scheduler="asha")
    assert asha.schedule.grace_period == 250 and asha.schedule.eval_every == 0  # half the 500 steps
    # FID at the rungs only, a checkpoint at each; PRD too, so the evaluation at the last step is the trial's row
    assert {(t.config.train.eval_at, t.config.train.eval_every, t.config.train.eval_samples,
             t.config.train.checkpoint_every, t.config.train.eval_prd) for t in asha.trials} == \
        {((250, 500), 0, 200, 250, True)}
    assert asha.sweep_id != grid.sweep_id and Plan.from_json(asha.to_json()).schedule == asha.schedule
    assert [rung for rung, _ in asha.schedule.tune_scheduler(500, print)._brackets[0]._rungs] == [500, 250]
    # cheaper rungs: the rung at the last step decides nothing and its 50 images cannot be the
    # trial's FID, so it is not measured; curves every 100 steps beside the rungs
    cheap = plan(sweep, True, 0, scheduler="asha",
                 schedule={"grace_period": 125, "reduction_factor": 4, "eval_samples": 50, "eval_every": 100})
    assert [rung for rung, _ in cheap.schedule.tune_scheduler(500, print)._brackets[0]._rungs] == [500, 125]
    assert {(t.config.train.eval_at, t.config.train.eval_every, t.config.train.checkpoint_every)
            for t in cheap.trials} == {((125,), 100, 125)}
    halving = plan(sweep, True, 0, scheduler="halving", schedule={"grace_period": 125, "reduction_factor": 4})
    assert halving.schedule.rungs(halving.budget) == (125,) and halving.schedule.tune_scheduler(500, print) is None
    assert {(t.config.train.eval_at, t.config.train.checkpoint_every) for t in halving.trials} == {((125, 500), 125)}
    assert halving.sweep_id not in (asha.sweep_id, cheap.sweep_id)
    curves = plan(sweep, True, 0, schedule={"eval_every": 100})  # a grid with FID during training
    assert {t.config.train.eval_every for t in curves.trials} == {100} and curves.schedule.scheduler == "grid"


@pytest.mark.parametrize("scheduler, schedule, message", [
    ("grid", {"grace_period": 10}, "need --scheduler asha"),
    ("asha", {"grace_period": 500}, "--grace-period must be 1..499"),
    ("asha", {"reduction_factor": 1}, "--reduction-factor must be at least 2"),
    ("asha", {"grace_period": 0}, "--grace-period must be 1..499"),
    ("asha", {"eval_every": 0}, "--eval-every must be at least 1"),
    ("grid", {"eval_samples": 50}, "--eval-samples needs --eval-every"),
    ("pbt", {}, "--scheduler takes grid, asha or halving"),
])
def test_impossible_schedules_are_refused(scheduler, schedule, message):
    with pytest.raises(UserError, match=re.escape(message)):
        plan(get_sweep("ablation_blocks"), True, 0, scheduler=scheduler, schedule=schedule)


def test_an_unknown_scheduler_is_refused_by_the_cli(rpgan, tmp_path):
    code, _, err = rpgan("sweep", "ablation_blocks", "--quick", "--scheduler", "hyperband", "--storage", tmp_path)
    assert code == 2 and "--scheduler" in err and not list(tmp_path.iterdir())
