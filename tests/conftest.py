"""Shared helpers: tiny configurations that run in milliseconds on a CPU."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from rpgan.cli.main import main  # rpgan before torch and ray (pyproject.toml, isort)
from rpgan.config import ModelConfig, RunConfig, TrainConfig

import numpy as np
import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

TINY_MODELS = {
    "resnet": ModelConfig(arch="resnet", image_size=8, blocks=(3, 4, 2), width=8, z_dim=16, d_width=8),
    "dcgan": ModelConfig(arch="dcgan", image_size=16, blocks=(3, 2, 4), width=4, z_dim=16, d_arch="dcgan",
                         d_width=8),
    "fc": ModelConfig(arch="fc", image_size=8, channels=1, blocks=(3, 2, 4), fc_widths=(16, 32), z_dim=8,
                      d_width=8),
}
# Not in TINY_MODELS, whose tests are about buckets of blocks: 2 up-layers and 1 at 16x16.
TINY_EIGENGAN = ModelConfig(arch="eigengan", image_size=16, blocks=(1, 1, 1), width=4, z_dim=8, input="gaussian",
                            eigen_dims=3, d_width=8)


def tiny_run(arch: str = "resnet", **train) -> RunConfig:
    t = dataclasses.replace(TrainConfig(steps=4, batch=8, d_steps=2, sample_every=0, checkpoint_every=2), **train)
    model = TINY_EIGENGAN if arch == "eigengan" else TINY_MODELS[arch]
    return RunConfig(model=model, train=t, data="digits", dataset_size=1797, preset="test")



@contextlib.contextmanager
def compute_threads(n: int):
    """n threads for torch and numpy's BLAS inside the block, as Ray gives an n-CPU worker or trial
    (OMP_NUM_THREADS=n): a thread count changes float sums. The counts before, after."""
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(n):
            yield
    finally:
        torch.set_num_threads(before)


def write_images(folder: Path, n: int = 24, side: int = 12) -> None:
    """n random RGB PNGs of side x (side + 3) pixels (not square: loading crops them) in folder."""
    from PIL import Image

    rng = np.random.default_rng(0)
    folder.mkdir(exist_ok=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (side, side + 3, 3), dtype=np.uint8)).save(folder / f"{i:03d}.png")

@pytest.fixture(scope="session", autouse=True)
def _cache(tmp_path_factory):
    """The tests' own rpgan cache (fetched checkpoints, FID statistics), shared by the session."""
    mp = pytest.MonkeyPatch()
    mp.setenv("RPGAN_CACHE", str(tmp_path_factory.mktemp("rpgan-cache")))
    yield
    mp.undo()


@pytest.fixture(scope="session", autouse=True)
def _ray_train_for_test_nodes():
    """Ray Train's controller looks at its workers every 2 s: a test's run that has ended, or
    whose worker died, waits for that look. Every 0.2 s, in this process and every one it
    starts (the shared cluster's nodes, the `rpgan` commands' private Rays). And no preemption
    watcher (an actor process per run that asks every 5 s whether a cloud is draining a node):
    nothing drains these nodes."""
    mp = pytest.MonkeyPatch()
    mp.setenv("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
    mp.setenv("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
    yield
    mp.undo()


@pytest.fixture(scope="session")
def s3():
    """A real S3 endpoint on 127.0.0.1 (tests/s3_server.py) and its bucket's URI; this process's
    environment reaches it for the session, and so does the shared Ray cluster's, started after."""
    from tests import s3_server

    server, env = s3_server.start()
    mp = pytest.MonkeyPatch()
    for name, value in env.items():
        mp.setenv(name, value)
    try:
        yield f"s3://{s3_server.BUCKET}"
    finally:
        mp.undo()
        server.kill()


@dataclasses.dataclass(frozen=True)
class SharedCluster:
    address: str  # the head's GCS
    private: Path | None  # a folder of this machine's disk that the second node does not see (None: no root)
    logs: Path  # Ray's session logs of both nodes


@pytest.fixture(scope="session")
def ray_cluster(s3):
    """One Ray cluster for every test that needs one, started as a cluster's nodes are (`ray
    start`): two nodes of one CPU each at their own addresses, 127.0.0.1 (the head) and
    127.0.0.2 (token authentication is tested on a head of its own, tests/test_ray_jobs.py: Ray
    reads its authentication mode once per process, when it loads, so this process cannot turn
    it on for a cluster started later). The second node runs in a mount namespace of its own,
    where `private` is an empty disk of its own: a path there is this machine's only, as a path on
    another machine's disk would be (without root the nodes share every file, and the tests of
    separate disks skip). This process is connected to it and $RAY_ADDRESS names it, so commands
    run in-process and `rpgan` subprocesses join it instead of starting a Ray of their own; the
    nodes reach the session's S3 endpoint. A test of rpgan's private local Ray runs it in a
    process of its own (this one stays connected: Ray does not rejoin a cluster cleanly after
    ray.shutdown in the same process)."""
    from tests.processes import kill_marked

    import ray

    base = Path(tempfile.mkdtemp(prefix="rc", dir="/tmp"))  # Ray's unix socket paths must stay short
    private = base / "private"
    private.mkdir()
    port = _free_port()
    mp = pytest.MonkeyPatch()
    for name, value in {"RAY_ADDRESS": f"127.0.0.1:{port}", "RAY_USAGE_STATS_ENABLED": "0"}.items():
        mp.setenv(name, value)
    # rpgan's loopback switch (rpgan/__init__) would refuse a second node: these are a cluster's nodes
    unset = ("RAY_ADDRESS", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")
    env = {k: v for k, v in os.environ.items() if k not in unset} | {"RAY_TMPDIR": str(base),
                                                                     "RAY_AUTH_MODE": "disabled"}
    ray_bin = str(Path(sys.executable).with_name("ray"))
    head = [ray_bin, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=1",
            "--include-dashboard=false", "--disable-usage-stats"]
    node = [ray_bin, "start", f"--address=127.0.0.1:{port}", "--node-ip-address=127.0.0.2", "--num-cpus=1",
            "--disable-usage-stats"]
    own_disk = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                f'mount -t tmpfs -o size=64m tmpfs "{private}" && exec "$@"', "sh"]
    def start(command: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, cwd=base)

    def check(done: subprocess.CompletedProcess) -> None:
        if done.returncode:
            raise RuntimeError(f"{' '.join(done.args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")

    try:
        check(start(head))
        if start(own_disk + node).returncode:
            private = None  # no mount namespace here: the second node shares the disk
            check(start(node))
        ray.init(address=f"127.0.0.1:{port}", log_to_driver=False)
        yield SharedCluster(f"127.0.0.1:{port}", private, base / "ray" / "session_latest" / "logs")
    finally:
        ray.shutdown()
        mp.undo()
        kill_marked(f"RAY_TMPDIR={base}".encode())
        shutil.rmtree(base, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory) -> Path:
    """A tiny trained RPGAN (3 buckets of 3, 4 and 2 blocks, 8x8, 2 steps): the checkpoint every
    analysis test reads. Read-only: a test that writes into a run copies it, and every job
    given it writes to its own --out."""
    from rpgan.io.data import load_data
    from rpgan.training.train import train

    return train(tiny_run(steps=2), load_data("digits", 8, 3), tmp_path_factory.mktemp("tiny") / "run", quiet=True)


# Runs that take tens of seconds of one core and depend on nothing else start as soon as their
# tests are selected, each in a process of its own at the lowest priority: the suite leaves about
# a third of the machine's cores idle (Ray's processes starting, tests waiting on them), which
# they use; their tests wait for them (`run_ahead`). {test module: `rpgan` arguments, without --out}.
AHEAD = {
    "test_train_e2e.py": ["train", "--preset", "digits", "--steps", "300", "--seed", "0"],
    # tests.conftest.TINY_MODELS["resnet"] and tiny_run(), compiled
    "test_losses.py": ["train", "--preset", "digits", "--image-size", "8", "--blocks", "3,4,2", "--width", "8",
                       "--z-dim", "16", "--d-width", "8", "--steps", "4", "--batch", "8", "--d-steps", "2",
                       "--sample-every", "0", "--checkpoint-every", "2", "--compile"],
}
_AHEAD_KEY = pytest.StashKey[dict[str, tuple[subprocess.Popen, Path]]]()


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the AHEAD run of each module whose tests that will run (after -m, -k, --lf) use
    `run_ahead`: one thread, as a one-CPU trial."""
    started = {}
    selected = [] if session.config.option.collectonly or session.testsfailed else session.items
    for module in sorted({item.path.name for item in selected if "run_ahead" in item.fixturenames}):
        out = Path(tempfile.mkdtemp(prefix="rpgan-ahead-"))
        with open(out / "log.txt", "w") as log:
            command = ["nice", "-n", "19", str(Path(sys.executable).with_name("rpgan")), *AHEAD[module],
                       "--out", str(out / "run")]
            process = subprocess.Popen(command, env=os.environ | {"OMP_NUM_THREADS": "1"}, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        _autogroup_nice(process, 19)
        started[module] = process, out
    session.config.stash[_AHEAD_KEY] = started


def _autogroup_nice(process: subprocess.Popen, nice: int) -> None:
    """A session of its own (start_new_session) is a scheduling group of its own, which Linux
    weighs against the suite's as an equal whatever its processes' nice: set the group's."""
    with contextlib.suppress(OSError):
        Path(f"/proc/{process.pid}/autogroup").write_text(str(nice))


def pytest_unconfigure(config: pytest.Config) -> None:
    for process, out in config.stash.get(_AHEAD_KEY, {}).values():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # with its children (torch.compile's workers)
        process.wait()
        shutil.rmtree(out, ignore_errors=True)


@pytest.fixture(scope="module")
def run_ahead(request: pytest.FixtureRequest) -> Path:
    """The finished AHEAD run of the requesting module: its run folder. Waited for at the
    suite's priority: nothing but it may be left to run."""
    process, out = request.config.stash[_AHEAD_KEY][request.path.name]
    _autogroup_nice(process, 0)
    try:
        code = process.wait(timeout=1200)
    except subprocess.TimeoutExpired:
        code = "still running after 1200 s"
    assert code == 0, f"{AHEAD[request.path.name]}: {code}\n" + (out / "log.txt").read_text()[-3000:]
    return out / "run"


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)


def shared_data(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_file():
        pytest.skip(f"{path} is absent (real data for tests lives in ../shared/data)")
    return path


@pytest.fixture
def rpgan(capsys, monkeypatch):
    """Run the `rpgan` command line in-process: rpgan(*args) -> (exit code, stdout, stderr)."""
    def run(*args) -> tuple[int, str, str]:
        capsys.readouterr()
        monkeypatch.setattr(sys, "argv", ["rpgan", *map(str, args)])
        try:
            main()
            code = 0
        except SystemExit as e:
            code = e.code or 0
        out = capsys.readouterr()
        return code, out.out, out.err

    return run
