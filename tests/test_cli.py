"""The command line: real runs, and one-line errors with exit code 2 for bad input."""

from __future__ import annotations

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


@pytest.mark.parametrize("args,expected", [
    (["train", "--bogus"], "No such option"),
    (["train", "--preset", "nope"], "nope"),
    (["train", "--data", "imagenet"], "unknown data set"),
    (["train", "--blocks", "0"], "at least 1 block"),
    (["train", "--blocks", "3,3"], "at least 4 buckets"),
    (["train", "--blocks", "x"], "--blocks takes"),
    (["train", "--steps", "0"], "--steps must be at least 1"),
    (["train", "--image-size", "12"], "power-of-two"),
    (["train", "--preset", "anime"], "--data folder:PATH"),
    (["train", "--data", "npz:/no/such.npz"], "cannot read"),
    (["sample", "--ckpt", "/no/such/run"], "does not exist"),
    (["info"], "Missing option"),
])
def test_bad_input_is_one_line_and_exit_2(args, expected, rpgan, tmp_path):
    code, out, err = rpgan(*args, *(["--out", tmp_path / "r"] if args[0] == "train" else []))
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert expected in err
    assert not (tmp_path / "r").exists()  # nothing half-written


@pytest.mark.parametrize("path,expected", [("1,0", "needs 4 block indices"), ("1,0,5,0", "bucket 2 has blocks 0..1"),
                                           ("a,b", "--path takes")])
def test_bad_frozen_path(run_dir, path, expected, rpgan):
    code, _, err = rpgan("sample", "--ckpt", run_dir, "--path", path)
    assert code == 2 and expected in err and len(err.strip().splitlines()) == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_gpu(rpgan, tmp_path):
    code, _, err = rpgan("train", "--device", "cuda", "--out", tmp_path / "r")
    assert code == 2 and "no CUDA GPU" in err
