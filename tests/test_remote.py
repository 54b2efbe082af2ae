"""Checkpoints behind a URI: resolved like local ones, fetched once into the cache, and a
download cut short never taken for a checkpoint (file:// takes the code path of s3://)."""

from __future__ import annotations

from rpgan.errors import UserError
from rpgan.io import remote
from rpgan.io.data import load_data
from rpgan.io.run import checkpoint_location
from rpgan.training.checkpoint import load_generator, read_step
from rpgan.training.train import train
from tests.conftest import tiny_run

import pyarrow.fs as pafs
import pytest
import torch


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    train(tiny_run(steps=4, checkpoint_every=2), load_data("digits", 8, 3), out, quiet=True)
    return out


def test_a_run_uri_resolves_to_its_newest_checkpoint_and_loads_like_a_path(run):
    uri = f"file://{run}"
    assert checkpoint_location(uri) == f"{uri}/checkpoints/step_00000004"
    assert read_step(f"{uri}/checkpoints/step_00000002") == 2
    local, remote_loaded = load_generator(run)[0], load_generator(uri)[0]
    assert all(torch.equal(v, remote_loaded.state_dict()[k]) for k, v in local.state_dict().items())


def test_a_checkpoint_is_fetched_once_and_again_when_it_changes(run, monkeypatch):
    uri = f"file://{run}/checkpoints/step_00000004"
    (run / "checkpoints" / "step_00000004" / "generator.pt").touch()  # not fetched before
    calls = []
    real = pafs.copy_files
    monkeypatch.setattr(remote.pafs, "copy_files", lambda *a, **k: (calls.append(a), real(*a, **k)))
    first = remote.local_checkpoint(uri)
    assert remote.local_checkpoint(uri) == first and len(calls) == 1
    (run / "checkpoints" / "step_00000004" / "config.json").touch()  # rewritten under its name
    assert remote.local_checkpoint(uri) != first and len(calls) == 2


def test_a_download_cut_short_leaves_no_checkpoint_in_the_cache(run, monkeypatch):
    uri = f"file://{run}/checkpoints/step_00000002"

    def half(source, target, **_):
        (remote.Path(target) / "config.json").write_text("{")
        raise OSError("connection reset")

    monkeypatch.setattr(remote.pafs, "copy_files", half)
    with pytest.raises(remote.RemoteError, match="connection reset"):
        remote.local_checkpoint(uri)
    assert not list((remote.cache_root() / "checkpoints").glob("step_00000002-*"))
    monkeypatch.undo()
    assert (remote.local_checkpoint(uri) / "generator.pt").is_file()


def test_a_uri_that_is_no_checkpoint_is_one_line(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        checkpoint_location(f"file://{tmp_path}/nothing")
    with pytest.raises(UserError, match="holds no rpgan checkpoint"):
        checkpoint_location(f"file://{tmp_path}")
    with pytest.raises(UserError, match="pass a local path or a URI"):
        checkpoint_location("nosuchscheme://x/y")


@pytest.mark.slow  # waits out every scheme's bounded retries: `make test` only
def test_an_unreachable_store_is_one_line_within_seconds_for_every_scheme(rpgan, monkeypatch):
    """gs:// without credentials retried for two minutes before (GCS's client retries 15); now it,
    and an S3 endpoint that refuses connections, fail in one line (exit 1), no traceback."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # the discard port: nothing listens
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "none")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "none")
    for uri, hint in (("gs://rpgan-no-such-bucket/run", "Google's application default credentials"),
                      ("s3://rpgan-no-such-bucket/run", "AWS_ENDPOINT_URL")):
        code, _, err = rpgan("info", "--ckpt", uri)
        assert code == 1 and hint in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
