"""The command line: real runs, and one-line errors with exit code 2 for bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

TINY = ["--preset", "digits", "--blocks", "2", "--width", "8", "--batch", "4", "--steps", "3"]


@pytest.fixture
def run_dir(tmp_path, rpgan):
    code, _, err = rpgan("train", *TINY, "--out", tmp_path / "run")
    assert code == 0, err
    return tmp_path / "run"


def test_train_sample_info(run_dir, tmp_path, rpgan):
    assert (run_dir / "samples.png").is_file() and (run_dir / "frozen_path.png").is_file()
    grid = tmp_path / "grid.png"
    assert rpgan("sample", "--ckpt", run_dir, "--n", 10, "--out", grid)[0] == 0
    assert Image.open(grid).size[0] > 8 * 64  # 8 per row, each enlarged to at least 64 px
    lines = (tmp_path / "grid.png.paths.txt").read_text().splitlines()[1:]
    assert len(lines) == 10 and all(len(line.split(",")) == 4 for line in lines)
    frozen = tmp_path / "frozen.png"
    assert rpgan("sample", "--ckpt", run_dir, "--path", "1,0,1,0", "--out", frozen)[0] == 0
    width, height = Image.open(frozen).size
    assert height > 5 * 64  # base row + one row per bucket
    code, out, _ = rpgan("info", "--ckpt", run_dir)
    assert code == 0
    assert "step         3 of 3" in out and "latent space 16 paths" in out and f"{16 / 1797:.4g}" in out


def test_sample_writes_its_grid_and_paths_file_atomically(run_dir, tmp_path, rpgan, monkeypatch):
    from rpgan.io import atomic

    written, real = [], atomic.os.replace  # atomic_write's rename of its flushed temporary
    monkeypatch.setattr(atomic.os, "replace", lambda tmp, path: (written.append(Path(path).name), real(tmp, path)))
    assert rpgan("sample", "--ckpt", run_dir, "--n", 4, "--out", tmp_path / "g.png")[0] == 0
    assert sorted(written) == ["g.png", "g.png.paths.txt"]


@pytest.mark.parametrize("name", ["../outside", "/abs/run", ".hidden"])
def test_an_in_process_run_stays_inside_its_storage(name, rpgan, tmp_path):
    storage = tmp_path / "s"
    code, _, err = rpgan("train", *TINY, "--storage", storage, "--name", name)
    assert code == 2 and "plain directory name" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "outside").exists() and not storage.exists()


def test_resume_says_where_it_starts(run_dir, rpgan):
    code, _, err = rpgan("train", *TINY[:-1], "5", "--out", run_dir, "--resume")
    assert code == 0 and "from step 3 (step_00000003)" in err


def test_resume_compares_only_what_is_typed_and_says_when_a_run_is_past_its_steps(tmp_path, rpgan):
    """A run trained with --seed 7 resumes without --seed (the default is not compared); a typed
    --preset that differs is refused like any setting; --steps below the run's step says so."""
    run = tmp_path / "r"
    code, _, err = rpgan("train", "--blocks", "2", "--width", "8", "--batch", "4", "--steps", "2", "--seed", "7",
                         "--out", run)
    assert code == 0, err
    code, _, err = rpgan("train", "--out", run, "--resume", "--steps", "3")
    assert code == 0 and "from step 2" in err, err
    code, _, err = rpgan("train", "--out", run, "--resume", "--steps", "4", "--preset", "mnist-fc")
    assert code == 2 and "--preset" in err and len(err.strip().splitlines()) == 1, err
    code, _, err = rpgan("train", "--out", run, "--resume", "--steps", "1")
    assert code == 0 and "already at step 3, at or past --steps 1" in err, err


def test_same_seed_same_samples(run_dir, tmp_path, rpgan):
    outs = []
    for seed in (5, 5, 6):
        out = tmp_path / f"s{len(outs)}.png"
        rpgan("sample", "--ckpt", run_dir, "--seed", seed, "--out", out)
        outs.append(out.read_bytes())
    assert outs[0] == outs[1] and outs[0] != outs[2]


def test_resume_refuses_a_different_configuration(run_dir, rpgan):
    code, _, err = rpgan("train", *TINY, "--out", run_dir, "--resume", "--loss", "wgan-gp")
    assert code == 2 and "--loss" in err and len(err.strip().splitlines()) == 1
    code, _, err = rpgan("train", *TINY, "--out", run_dir)
    assert code == 2 and "--resume" in err
    code, _, err = rpgan("train", *TINY[:-2], "--steps", 5, "--out", run_dir, "--resume")
    assert code == 0, err


def test_sample_never_overwrites_a_file_it_did_not_write_nor_names_its_temporaries(run_dir, tmp_path, rpgan):
    precious = tmp_path / "precious.png"
    precious.write_text("notes")
    for out, expected in ((precious, "exists and is not a PNG image"), (tmp_path, "is a directory")):
        code, _, err = rpgan("sample", "--ckpt", run_dir, "--out", out)
        assert code == 2 and expected in err and ".tmp-" not in err and len(err.strip().splitlines()) == 1, err
    assert precious.read_text() == "notes"
    again = tmp_path / "grid.png"
    for _ in range(2):  # an image of its own it replaces
        assert rpgan("sample", "--ckpt", run_dir, "--n", 2, "--out", again)[0] == 0


@pytest.mark.parametrize("args,expected", [
    (["train", "--bogus"], "No such option"),
    (["train", "--preset", "nope"], "nope"),
    (["train", "--data", "imagenet"], "unknown data set"),
    (["train", "--blocks", "0"], "at least 1 block"),
    (["train", "--blocks", "3,3"], "at least 4 buckets"),
    (["train", "--blocks", "x"], "--blocks takes"),
    (["train", "--steps", "0"], "--steps must be at least 1"),
    (["train", "--eval-every", "0"], "--no-eval turns them off"),
    (["train", "--eval-every", "5", "--eval-samples", "1"], "--eval-samples must be 2.."),
    (["curves", "--run", "/no/such/run"], "has no metrics.parquet"),
    (["train", "--image-size", "12"], "power-of-two"),
    (["train", "--preset", "anime"], "--data folder:PATH"),
    (["train", "--data", "npz:/no/such.npz"], "/no/such.npz is not a file"),
    (["sample", "--ckpt", "/no/such/run"], "does not exist"),
    (["info"], "Missing option"),
    (["train", "--width", "100000"], "--width must be 1..4096"),
    (["train", "--width", "2048"], "over rpgan's limit of 1,000M"),  # would allocate 6.5 GB of weights
    (["train", "--blocks", "20000"], "at most 10000 blocks"),
    (["train", "--batch", "100000000"], "--batch must be 1..65536"),
    (["train", "--seed", "-1"], "0<=x<="),
    (["train", "--labels", "6-0"], "runs backwards"),
    (["train", "--labels", "0-6,42"], "digits has labels 0..9, not 42"),
    (["train", "--labels", "11-20", "--dry-run"], "digits has labels 0..9"),  # checked before a dry run too
    (["train", "--labels", "foo", "--dry-run"], "--labels takes ranges"),
    (["train", "--labels", "0-", "--dry-run"], "--labels takes ranges"),  # an open range is not a range
    (["sample", "--ckpt", "/no/such/run", "--out", ""], "'--out': is empty"),
    (["curves", "--run", "/no/such/run", "--out", ""], "'--out': is empty"),
    (["analyze", "--ckpt", "/no/such/run", "--out", ""], "'--out': is empty"),  # not RUN/analysis
    (["sample", "--ckpt", "/no/such/run", "--out", "grid.jpg"], "does not end in .png"),
    (["fid-stats", "--data", "digits", "--out", "/"], "is a directory"),  # before any features are computed
    (["train", "--storage", "", "--workers", "1"], "'--storage': is empty"),
    (["train", "--data", "folder:"], "needs a path"),
    (["fid", "--ckpt", "/no/such/run", "--n", "0"], "2<=x<=1000000"),
    (["fid", "--ckpt", "/no/such/run", "--reference-n", "-5"], "2<=x<="),
    (["fid-stats", "--data", "digits", "--image-size", "100000"], "1<=x<=1024"),
    (["analyze", "--ckpt", "/no/such/run", "--evaluations", "1000000"], "--evaluations and --chunk go up to 100000"),
    (["analyze", "--ckpt", "/no/such/run", "--grids", "5000"], "--grids and --per-bucket up to 1000"),
    (["dissect", "--ckpt", "/no/such/run", "--n", "10000000"], "--n, --units and --chunk go up to"),
    (["dissect", "--ckpt", "/no/such/run", "--units", "0", "--workers", "0"], "--units, --chunk and --per-strip >= 1"),
    (["directions", "--ckpt", "/no/such/run", "--directions", "100000"], "2<=x<=4096"),
])
def test_bad_input_is_one_line_and_exit_2(args, expected, rpgan, tmp_path):
    code, out, err = rpgan(*args, *(["--out", tmp_path / "r"] if args[0] == "train" else []))
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert expected in err
    assert not (tmp_path / "r").exists()  # nothing half-written


@pytest.mark.parametrize("path,expected", [("1,0", "needs 4 block indices"), ("1,0,5,0", "bucket 3 has blocks 0..1"),
                                           ("a,b", "--path takes")])
def test_bad_frozen_path(run_dir, path, expected, rpgan):
    code, _, err = rpgan("sample", "--ckpt", run_dir, "--path", path)
    assert code == 2 and expected in err and len(err.strip().splitlines()) == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_gpu(rpgan, tmp_path):
    code, _, err = rpgan("train", "--device", "cuda", "--out", tmp_path / "r")
    assert code == 2 and "no CUDA GPU" in err


def test_unwritable_out_or_storage_is_one_line(rpgan, tmp_path):
    """A path below a regular file fails with ENOTDIR, even for root (whom chmod does not stop)."""
    (tmp_path / "file").write_text("")
    for args in (["train", *TINY, "--out", tmp_path / "file" / "run"],
                 ["train", *TINY, "--storage", tmp_path / "file", "--name", "r", "--workers", "1"]):
        code, _, err = rpgan(*args)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        last = err.strip().splitlines()[-1]
        assert last.startswith("rpgan: ") and "Not a directory" in last and "--out or --storage" in last, err


def test_other_os_errors_keep_their_traceback(rpgan, monkeypatch):
    import errno

    from rpgan.cli import main

    def broken(*args, **kwargs):
        raise OSError(errno.EIO, "Input/output error", "/somewhere")

    monkeypatch.setattr(main.cli, "main", broken)
    with pytest.raises(OSError, match="Input/output"):
        rpgan("info")


def test_dry_run_prints_the_resolved_config_and_writes_nothing(rpgan, tmp_path, run_dir):
    from rpgan.config import RunConfig

    code, out, _ = rpgan("train", "--preset", "cifar10", "--blocks", "20", "--lr", "1e-4", "--no-linear",
                         "--out", tmp_path / "new", "--dry-run")
    config = RunConfig.from_json(out)
    assert code == 0 and not (tmp_path / "new").exists()
    assert config.model.blocks == (20,) * 5 and config.model.width == 256 and config.train.d_steps == 5  # preset
    assert config.train.lr == 1e-4 and config.data == "cifar10" and config.preset == "cifar10"
    code, out, _ = rpgan("train", *TINY[:-1], "9", "--out", run_dir, "--resume", "--dry-run")  # the resumed run's
    assert code == 0 and RunConfig.from_json(out).train.steps == 9
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["step_00000003"]


def test_every_setting_is_a_train_flag_a_search_key_and_a_results_column(rpgan):
    from analysis.results import CONTEXT
    from rpgan.overrides import SETTINGS
    from sweeps.results import SCHEMAS
    from sweeps.spec import BOOKKEEPING, PLANNED, SEARCH_KEYS

    code, out, _ = rpgan("train", "--help")
    columns = {name for name, _ in CONTEXT}
    assert {"lr", "routing", "d_width", "gp_weight", "linear"} <= set(SETTINGS)
    for s in SETTINGS.values():
        assert s.name == "seed" or s.flag in out, s.name
        assert s.name in PLANNED + BOOKKEEPING or s.name in SEARCH_KEYS, s.name
        assert s.name in columns and s.name in SCHEMAS["trials"].names, s.name
    assert "[hinge|wgan-gp]" in out and "[group|gather|loop]" in out  # choices from the Literal types
    assert "Examples:" in out


def test_the_root_command_lists_every_package_s_commands(rpgan):
    code, out, _ = rpgan("--help")
    for name in ("train", "sample", "info", "extend", "compress", "analyze", "fid", "fid-stats", "dissect",
                 "directions", "compare", "sweep", "sweeps", "results"):
        assert f"  {name} " in out, name


LIGHT_PROBE = """
import sys
sys.argv = ["rpgan", *sys.argv[1:]]
from rpgan.cli.main import main
try:
    main()
except SystemExit:
    pass
print(sorted(m for m in ("torch", "ray", "pandas", "pyarrow", "numpy") if m in sys.modules), file=sys.stderr)
"""


def test_a_training_process_imports_no_torchvision_until_it_measures_fid():
    """A Ray Train worker, a sweep trial and `rpgan train` load the training code; torchvision
    (1.5 s of imports on 2 cores, each such process) only comes with the Inception network,
    scikit-learn (1 s) with PRD, matplotlib (0.3 s) with a plot."""
    import subprocess
    import sys

    probe = ("import sys, rpgan, rpgan.distributed.ray_train, sweeps.trial; "
             "print([m for m in ('torchvision', 'pytorch_fid', 'sklearn', 'matplotlib') if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


@pytest.mark.parametrize("args", [["--help"], ["sweeps"], ["train", "--help"], ["analyze", "--help"],
                                  ["sweep", "--help"], ["train", "--no-such-flag"], ["fid", "--n", "many"]])
def test_help_listings_and_refused_flags_import_no_torch_ray_or_pandas(args):
    """`rpgan --help`, a command's --help, `rpgan sweeps` and a refused flag answer at once."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", LIGHT_PROBE, *args], capture_output=True, text=True, timeout=60)
    assert result.stderr.strip().splitlines()[-1] == "[]", result.stderr


def test_every_argument_is_checked_before_ray_starts(run_dir, tmp_path, rpgan, monkeypatch):
    """A bad --out, --bucket or --data of an analysis command is refused before Ray starts (12-18 s)
    or anything is computed."""
    from rpgan.distributed import ray_session

    monkeypatch.setattr(ray_session, "connect", lambda *a, **k: pytest.fail("Ray started before the checks"))
    (tmp_path / "file").write_text("")
    for args, expected in [
        (["analyze", "--ckpt", run_dir, "--out", tmp_path / "file" / "a"], "is a file, not a folder"),
        (["directions", "--ckpt", run_dir, "--bucket", 9], "--bucket must be 1..4"),
        (["fid-stats", "--data", "imagenet", "--image-size", 8], "unknown data set 'imagenet'"),
        (["fid", "--ckpt", run_dir, "--data", "npz:/no/such.npz"], "is not a file"),
        (["dissect", "--ckpt", tmp_path / "no-run"], "does not exist"),
    ]:
        code, _, err = rpgan(*args, "--workers", 1)
        assert code == 2 and expected in err and len(err.strip().splitlines()) == 1, (args, err)
