"""Cluster work as a Ray Job (docs/distributed.md, "Ray Jobs"). An rpgan command submitted with
`ray job submit` to a head started the way cluster/gpu.yaml starts one (`ray start --head`, job
server on loopback) finishes after its submitting client is killed; `rpgan` and `ray job` on the
head find the cluster through the $RAY_ADDRESS that the head's shells export, with no flag. The
job is the cheapest command that joins the cluster and outlives its client: reference features of
real images on a Ray worker (a sweep does the same as a job, with minutes more of Tune)."""

from __future__ import annotations

import importlib.util
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from rpgan.model.eigengan import EigenGenerator
from rpgan.training.checkpoint import load_generator
from rpgan.training.run_log import SCHEMA
from tests.processes import kill_marked, wait_for_output
from tests.sockets import listening_sockets

import numpy as np
import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.slow  # a local Ray or real training: `make test` only

BIN = Path(sys.executable).parent
JOB = "stats-1"
# Seconds of work on one Ray worker, after the job's driver has connected: Inception features of
# 60 real images.
COMMAND = ["rpgan", "fid-stats", "--data", "digits", "--image-size", "8", "--n", "60", "--workers", "1"]
# The head's logical CPUs: neither this machine's count nor one more, the sizes of rpgan's private Rays.
CPUS = (os.cpu_count() or 1) + 3
JOINED = f"Ray: 1 node(s), {CPUS} CPUs, 0 GPUs"


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _listening_ips(port: int) -> set[str]:
    """The addresses this machine listens on at a TCP port."""
    ips = listening_sockets()  # inode -> IP
    rows = [line.split() for table in ("tcp", "tcp6") for line in
            Path(f"/proc/net/{table}").read_text().splitlines()[1:]]
    return {ips[int(r[9])] for r in rows if r[3] == "0A" and int(r[1].rsplit(":", 1)[1], 16) == port
            and int(r[9]) in ips}


@pytest.fixture(scope="module")
def head():
    """One one-node cluster for the module, started like cluster/gpu.yaml's head, every server on
    loopback and token authentication on, the token in a file of its own (as file_mounts bring
    ~/.ray/auth_token):
    (the head's shell environment, its GCS address, its job server's URL, its temp dir, its Ray
    client server's address)."""
    if importlib.util.find_spec("aiohttp") is None:
        pytest.skip("Ray's job server and `ray job` need ray[default] (aiohttp, ...), not installed here")
    tmp = Path(tempfile.mkdtemp(prefix="rj", dir="/tmp"))  # Ray's unix socket paths must stay short
    gcs, dashboard, client, agent = _free_ports(4)
    token = tmp / "auth_token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")} | {
        "RAY_TMPDIR": str(tmp),  # nothing in /tmp/ray; also marks every process the head starts
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # keep Ray's node address 127.0.0.1
        # What head_setup_commands export in the head's ~/.bashrc, which Ray's own `ray start` sources.
        "RAY_ADDRESS": f"127.0.0.1:{gcs}",
        # What the configs set where Ray starts and the head's shells export, with the token's file.
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(token),
        "RAY_USAGE_STATS_ENABLED": "0",
        "RPGAN_CACHE": str(tmp / "cache"),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # `rpgan` on the PATH, as on the cluster
    }
    marker = f"RAY_TMPDIR={tmp}".encode()
    try:
        started = subprocess.run(
            [str(BIN / "ray"), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={gcs}",
             "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}", f"--ray-client-server-port={client}",
             f"--dashboard-agent-listen-port={agent}", f"--num-cpus={CPUS}", "--disable-usage-stats",
             "--include-dashboard=true"],
            env=env, capture_output=True, text=True, timeout=120, cwd=tmp)
        if started.returncode != 0:
            pytest.skip(f"`ray start --head` cannot start here: {started.stderr.strip()[-500:]}")
        yield env, f"127.0.0.1:{gcs}", f"http://127.0.0.1:{dashboard}", tmp, f"ray://127.0.0.1:{client}"
    finally:
        kill_marked(marker)
        shutil.rmtree(tmp, ignore_errors=True)


def test_a_job_outlives_its_client_and_the_head_finds_the_cluster_without_flags(head, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)  # the client below reads it before its argument

    shell, gcs, url, tmp, _ = head
    assert _listening_ips(int(url.rsplit(":", 1)[1])) == {"127.0.0.1"}  # the job server: loopback only

    # From the laptop, through `ray dashboard`'s tunnel: `ray job` reads RAY_API_SERVER_ADDRESS.
    stats = tmp / "stats.npz"
    laptop = {k: v for k, v in shell.items() if k != "RAY_ADDRESS"} | {"RAY_API_SERVER_ADDRESS": url}
    submit = subprocess.Popen([str(BIN / "ray"), "job", "submit", "--submission-id", JOB, "--", *COMMAND,
                               "--out", str(stats)],
                              env=laptop, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_output(submit, "Ray: 1 node(s)", 120)  # the job's driver runs and has connected to Ray
    finally:
        os.killpg(submit.pid, signal.SIGKILL)  # the laptop closes
        submit.wait()
    assert _job_status(laptop) == "RUNNING"

    # `ray job logs --follow` returns when the job has ended
    subprocess.run([str(BIN / "ray"), "job", "logs", "--follow", JOB], env=laptop, capture_output=True, timeout=300)
    assert _job_status(laptop) == "SUCCEEDED", _run(["ray", "job", "logs", JOB], laptop).stdout
    with np.load(stats) as saved:
        assert saved["features"].shape == (60, 2048)

    # Ray set the driver's RAY_ADDRESS to the head's GCS address, so rpgan joined the head rather
    # than start a private Ray. On the head, `ray job logs` finds the job server from $RAY_ADDRESS.
    logged = "".join(p.read_text(errors="replace") for p in (tmp / "ray" / "session_latest" / "logs").rglob("*.log"))
    assert f"Submitting job with RAY_ADDRESS = {gcs}" in logged
    logs = subprocess.run([str(BIN / "ray"), "job", "logs", JOB], env=shell, capture_output=True, text=True,
                          timeout=60)
    assert logs.returncode == 0 and JOINED in logs.stdout, logs.stdout + logs.stderr

    # `rpgan train --workers 2` from a shell of the head: Ray Train's workers on the cluster. An
    # EigenGAN, whose training on Ray Train no other test runs: its generator, traversals and
    # orthogonality loss come back.
    run = tmp / "runs" / "t"
    trained = subprocess.run(["rpgan", "train", "--preset", "eigengan-digits", "--width", "8", "--batch", "4",
                              "--steps", "4", "--checkpoint-every", "2", "--sample-every", "0", "--workers", "2",
                              "--storage", str(tmp / "runs"), "--name", "t"], env=shell, capture_output=True, text=True,
                             timeout=300)
    assert trained.returncode == 0 and JOINED in trained.stderr, trained.stderr[-3000:]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_00000002", "step_00000004"]
    assert isinstance(load_generator(run)[0], EigenGenerator) and (run / "traversals.png").is_file()
    metrics = pq.read_table(run / "metrics.parquet")
    assert metrics.schema.equals(SCHEMA, check_metadata=False)
    assert metrics.to_pandas().orthogonality.notna().all()

    # An `rpgan` command in a shell on the head (`ray attach`, `ray exec`) joins the cluster too
    # (here it reads the job's features, which it finds written: no Inception to load).
    again = subprocess.run([*COMMAND, "--out", str(stats)], env=shell, capture_output=True, text=True, timeout=180)
    assert again.returncode == 0 and JOINED in again.stderr and str(stats) in again.stdout, again.stderr


def _run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / command[0]), *command[1:]], env=env, capture_output=True, text=True, timeout=60)


def _job_status(env: dict[str, str]) -> str:
    """The job's status as `ray job status` prints it. (Not Ray's Python client: this test
    process loaded Ray with authentication off, and Ray reads that once per process.)"""
    done = _run(["ray", "job", "status", JOB], env)
    assert done.returncode == 0, done.stderr
    text = done.stdout + done.stderr  # "Status for job 'ID': RUNNING", or "Job 'ID' succeeded" once ended
    found = re.search(r"Status for job '[^']+': (\w+)|Job '[^']+' (succeeded|failed)", text)
    assert found, text
    return (found.group(1) or found.group(2)).upper()


def test_without_the_token_the_job_api_the_gcs_and_the_client_server_refuse(head):
    """A caller that does not present the cluster's token: `ray job submit` through the dashboard's
    port, a driver connecting to the GCS (`ray.init`, what rpgan does with --address) and one
    through the Ray client server (ray://) are refused, and nothing ran; so is a wrong token."""
    shell, gcs, url, tmp, client = head
    stranger = {k: v for k, v in shell.items() if k not in ("RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS")} | {
        "RAY_AUTH_MODE": "disabled", "RAY_API_SERVER_ADDRESS": url, "HOME": str(tmp / "stranger")}
    submitted = subprocess.run([str(BIN / "ray"), "job", "submit", "--", "touch", str(tmp / "ran")], env=stranger,
                               capture_output=True, text=True, timeout=120)
    assert submitted.returncode != 0 and not (tmp / "ran").exists(), submitted.stdout + submitted.stderr
    # A driver asks the GCS 20 times, a second apart, whatever the answer; once here (the same refusal)
    driver = subprocess.run([sys.executable, "-c", f"import rpgan, ray; ray.init(address='{gcs}'); "
                             f"ray.get(ray.remote(lambda: open('{tmp / 'ran'}', 'w')).remote())"],
                            env=stranger | {"RAY_gcs_server_port_wait_time_s": "1"}, capture_output=True, text=True,
                            timeout=120)
    assert driver.returncode != 0 and "InvalidAuthToken" in driver.stderr and not (tmp / "ran").exists(), \
        driver.stdout + driver.stderr
    # Ray's client tries 3 times, sleeping 5, 10 and 15 s after each refusal; 1 s here (same refusals)
    quick = {"RAY_CLIENT_INITIAL_CONNECTION_TIMEOUT_S": "1", "RAY_CLIENT_MAX_CONNECTION_TIMEOUT_S": "1"}
    through_client = subprocess.run([sys.executable, "-c", f"import rpgan, ray; ray.init('{client}'); "
                                     f"ray.get(ray.remote(lambda: open('{tmp / 'ran'}', 'w')).remote())"],
                                    env=stranger | quick, capture_output=True, text=True, timeout=120)
    assert through_client.returncode != 0 and not (tmp / "ran").exists(), through_client.stderr[-2000:]
    wrong = stranger | {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "0" * 64}
    guessed = subprocess.run([str(BIN / "ray"), "job", "submit", "--", "touch", str(tmp / "ran")], env=wrong,
                             capture_output=True, text=True, timeout=120)
    assert guessed.returncode != 0 and not (tmp / "ran").exists(), guessed.stdout + guessed.stderr
