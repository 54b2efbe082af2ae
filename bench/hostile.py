"""Hostile input, counted by outcome: the classes of the hostile review (empty strings, other URI
schemes, concurrent writers of one folder, full disks, wrong extensions, bad numbers and labels,
corrupt checkpoints, a killed command, the explorer's HTTP API), each case run as a user runs it:

    python bench/hostile.py [--only SUBSTRING] [--timeout 180]

Every case is classified: `error` (exit 1 or 2, one line on stderr, no traceback), `ok` (exit 0
and its check holds), and the failures: `traceback`, `hang` (past --timeout), `wrong` (exit 0
but the check fails: a silent wrong result), `lost` (data that existed before is gone or
changed), `noisy` (a refusal of more than one line, beside the progress of the work done before
it). Prints one line per case and the counts.
Needs root for the full-disk cases (a small tmpfs); they are skipped otherwise.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rpgan.distributed.reaper import descendants

RPGAN = str(Path(sys.executable).with_name("rpgan"))
PROGRESS = re.compile(r"^(training |resuming |.*\| ETA \d)")  # a run's first line, and progress lines
TINY = ["--blocks", "2", "--width", "8", "--batch", "4", "--sample-every", "0"]


@dataclass
class Case:
    name: str
    args: list[str]
    expect: str  # "error" or "ok"
    check: Callable[[subprocess.CompletedProcess], bool] | None = None  # for "ok": the result is right
    keep: list[Path] = field(default_factory=list)  # files that must be unchanged afterwards
    env: dict[str, str] = field(default_factory=dict)


def run(args: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess | None:
    full = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | env
    try:
        return subprocess.run([RPGAN, *map(str, args)], env=full, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


def classify(case: Case, done: subprocess.CompletedProcess | None, before: dict[Path, bytes | None]) -> str:
    if done is None:
        return "hang"
    if "Traceback" in done.stderr:
        return "traceback"
    if any((p.read_bytes() if p.exists() else None) != data for p, data in before.items()):
        return "lost"
    if done.returncode in (1, 2):
        lines = [line for line in done.stderr.strip().splitlines() if not line.startswith("rpgan explore: warning")
                 and not PROGRESS.match(line)]  # the work done before a refusal that only work can find
        if case.expect == "ok":
            return "wrong"
        return "error" if len(lines) == 1 else "noisy"
    if done.returncode != 0:
        return "traceback"
    if case.expect == "error":
        return "wrong"
    return "ok" if case.check is None or case.check(done) else "wrong"


def cases(tmp: Path, run_dir: Path) -> list[Case]:
    precious = tmp / "precious.png"
    precious.write_text("my notes")
    ckpt = next(iter(sorted((run_dir / "checkpoints").iterdir())))
    broken = tmp / "broken-run"
    shutil.copytree(run_dir, broken)
    newest = sorted((broken / "checkpoints").iterdir())[-1]
    (newest / "generator.pt").write_bytes((newest / "generator.pt").read_bytes()[:200])
    versioned = tmp / "versioned"
    shutil.copytree(ckpt, versioned)
    config = json.loads((versioned / "config.json").read_text())
    (versioned / "config.json").write_text(json.dumps({**config, "version": "1"}))
    closed = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}", "AWS_ACCESS_KEY_ID": "x",
              "AWS_SECRET_ACCESS_KEY": "x"}
    out = tmp / "out"
    return [
        # empty strings
        *(Case(f"empty {flag} ({cmd[0]})", [*cmd, flag, ""], "error") for cmd, flag in [
            (["sample", "--ckpt", run_dir], "--out"), (["curves", "--run", run_dir], "--out"),
            (["analyze", "--ckpt", run_dir, "--workers", "0"], "--out"), (["train", *TINY], "--out"),
            (["train", *TINY, "--workers", "1"], "--storage"), (["train", *TINY, "--workers", "1"], "--name"),
            (["info"], "--ckpt"), (["train", *TINY, "--out", out / "e"], "--data"), (["curves"], "--run"),
            (["sweep", "ablation_blocks", "--quick"], "--storage"), (["explore", "--ckpt", run_dir], "--analysis")]),
        # other URI schemes
        *(Case(f"unreachable {uri.split(':')[0]}://", ["info", "--ckpt", uri], "error", env=closed) for uri in (
            "gs://rpgan-none/run", "s3://rpgan-none/run", "hdfs://127.0.0.1:9/run", "ftp://host/run",
            f"file://{tmp}/none", "nosuch://x/y")),
        Case("analyze --out to an unknown scheme", ["analyze", "--ckpt", run_dir, "--out", "nosuch://x/y",
                                                     "--workers", "0"], "error"),
        # wrong extensions and files that are not ours
        Case("sample --out grid.jpg", ["sample", "--ckpt", run_dir, "--out", tmp / "grid.jpg"], "error"),
        Case("sample over a non-image file", ["sample", "--ckpt", run_dir, "--out", precious], "error",
             keep=[precious]),
        Case("sample --out a directory", ["sample", "--ckpt", run_dir, "--out", tmp], "error"),
        Case("curves --out notes.txt", ["curves", "--run", run_dir, "--out", tmp / "notes.txt"], "error"),
        Case("sample writes a PNG", ["sample", "--ckpt", run_dir, "--n", "4", "--out", tmp / "g.png"], "ok",
             check=lambda d: (tmp / "g.png").read_bytes()[:4] == b"\x89PNG"),
        Case("fid-stats --out a directory", ["fid-stats", "--data", "digits", "--image-size", "8", "--n", "10",
                                              "--workers", "0", "--out", tmp], "error"),
        # bad labels and numbers
        *(Case(f"--labels {text}", ["train", *TINY, "--labels", text, "--dry-run"], "error")
          for text in ("11-20", "5-2", "foo", "-1", "0-", ",", "3,,4")),
        *(Case(f"train {flag} {value}", ["train", *TINY, flag, value, "--dry-run"], "error") for flag, value in [
            ("--steps", "-1"), ("--steps", "0"), ("--batch", "0"), ("--lr", "nan"), ("--lr", "-1"),
            ("--seed", "-1"), ("--workers", "-1"), ("--width", "0"), ("--blocks", "0,0,0,0")]),
        Case("dissect --units 0", ["dissect", "--ckpt", run_dir, "--units", "0", "--workers", "0", "--out",
                                   out / "d"], "error"),
        Case("directions --bucket 9", ["directions", "--ckpt", run_dir, "--bucket", "9", "--workers", "1"], "error"),
        Case("fid-stats --data imagenet", ["fid-stats", "--data", "imagenet", "--image-size", "8", "--workers", "1"],
             "error"),
        Case("analyze --out through a file", ["analyze", "--ckpt", run_dir, "--workers", "1", "--out",
                                              precious / "a"], "error", keep=[precious]),
        Case("sample --path 3,0,7,10", ["sample", "--ckpt", run_dir, "--path", "1,0,1,10"], "error"),
        # checkpoints
        Case("a truncated newest checkpoint is skipped", ["train", *TINY, "--out", broken, "--resume", "--steps",
                                                          "6"], "ok"),
        Case("config version '1'", ["info", "--ckpt", versioned], "error"),
        Case("resume past its steps", ["train", "--out", run_dir, "--resume", "--steps", "1"], "ok",
             check=lambda d: "already at step" in d.stderr),
        Case("resume with another --preset", ["train", "--out", run_dir, "--resume", "--preset", "mnist-fc"],
             "error"),
        Case("resume without the run's --seed", ["train", "--out", tmp / "seeded", "--resume", "--steps", "3"],
             "ok", check=lambda d: "from step 2" in d.stderr),
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def concurrent_writers(tmp: Path, timeout: float) -> list[tuple[str, str]]:
    """Two trainings of one new --out at once (seeds 7 and 8), and two --resume of one run at
    once: one runs, the other is refused in one line, and the run holds one seed's checkpoints."""
    results = []
    for name, resume in (("two new runs of one --out", False), ("two --resume of one run", True)):
        out = tmp / name.replace(" ", "-")
        if resume:
            run(["train", *TINY, "--steps", "2", "--out", out], {}, timeout)
        commands = [["train", *TINY, "--steps", "40", "--checkpoint-every", "10", "--out", str(out),
                     *(["--resume"] if resume else ["--seed", str(seed)])] for seed in (7, 8)]
        procs = [subprocess.Popen([RPGAN, *c], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for c in commands]
        errors = [p.communicate(timeout=timeout)[1] for p in procs]
        codes = sorted(p.returncode for p in procs)
        seeds = {json.loads((c / "config.json").read_text())["train"]["seed"]
                 for c in (out / "checkpoints").iterdir()}
        refused = [e for e, p in zip(errors, procs) if p.returncode == 2]
        fine = codes == [0, 2] and len(seeds) == 1 and "being written by" in refused[0] and \
            len(refused[0].strip().splitlines()) == 1
        results.append((name, "error" if fine else "wrong"))
    return results


def full_disks(tmp: Path, run_dir: Path, timeout: float) -> list[tuple[str, str]]:
    """Writes to a 3 MB disk: a run's second checkpoint, an analysis, a sample grid, a sweep."""
    disk = tmp / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(disk)], capture_output=True).returncode:
        return [("full disk (skipped: cannot mount a tmpfs)", "skipped")]
    try:
        results = []
        for name, args in [
            ("full disk: training", ["train", "--blocks", "2", "--width", "16", "--batch", "4", "--sample-every", "0",
                                     "--steps", "6", "--checkpoint-every", "2", "--out", disk / "run"]),
            ("full disk: a big grid", ["sample", "--ckpt", run_dir, "--n", "4096", "--out", disk / "big.png"]),
        ]:
            done = run(args, {}, timeout)
            kept = list((disk / "run" / "checkpoints").glob("step_*")) if "training" in name else [None]
            case = Case(name, args, "error")
            outcome = classify(case, done, {})
            if outcome == "error" and (".tmp-" in done.stderr or not kept):
                outcome = "lost"
            results.append((name, outcome))
            for p in disk.iterdir():
                shutil.rmtree(p) if p.is_dir() else p.unlink()
        return results
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def explorer(run_dir: Path) -> list[tuple[str, str]]:
    """The explorer's API under hostile requests: each a one-line JSON 4xx."""
    port = free_port()
    proc = subprocess.Popen([RPGAN, "explore", "--ckpt", str(run_dir), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/model", timeout=5)
                break
            except OSError:
                time.sleep(0.5)
        results = []
        for name, path, headers, method in [
            ("explore: index=²", "/api/random?index=%C2%B2", {}, "GET"),
            ("explore: noise on a path model", "/api/view?path=0,0,0,0&noise=1.9", {}, "GET"),
            ("explore: unknown parameter", "/api/view?path=0,0,0,0&x=1", {}, "GET"),
            ("explore: Host evil.example", "/api/model", {"Host": "evil.example"}, "GET"),
            ("explore: cross-origin reload", "/api/reload", {"Origin": "http://evil.example"}, "POST"),
            ("explore: 100 KB query", "/api/view?path=" + "0," * 50_000, {}, "GET"),
            ("explore: bucket 5 of 4", "/api/view?path=0,0,0,0,0", {}, "GET"),
        ]:
            request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers, method=method)
            try:
                urllib.request.urlopen(request, timeout=30)
                results.append((name, "wrong"))
            except urllib.error.HTTPError as e:
                body = e.read()
                try:
                    message = json.loads(body)["error"]
                    results.append((name, "error" if 400 <= e.code < 500 and "\n" not in message else "noisy"))
                except (ValueError, KeyError):
                    results.append((name, "noisy"))
        return results
    finally:
        proc.kill()
        proc.wait()


def killed_analysis(run_dir: Path, tmp: Path) -> list[tuple[str, str]]:
    """kill -9 of `rpgan analyze` with its private Ray: nothing of that Ray left 30 s later, no
    partial result."""
    proc = subprocess.Popen([RPGAN, "analyze", "--ckpt", str(run_dir), "--evaluations", "400", "--workers", "1",
                             "--out", str(tmp / "killed")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"})
    seen, tree = "", set()
    stop = threading.Event()

    def note() -> None:
        while not stop.is_set():
            tree.update(descendants(proc.pid))
            time.sleep(0.2)

    watcher = threading.Thread(target=note, daemon=True)
    watcher.start()
    while "task 1/" not in seen and proc.poll() is None:
        seen += proc.stdout.readline()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stop.set()
    watcher.join()
    time.sleep(30)
    left = [pid for pid in tree - {proc.pid} if Path(f"/proc/{pid}").exists()]
    partial = list((tmp / "killed").rglob("*.parquet"))
    return [("kill -9 analyze: Ray left behind", "wrong" if left else "ok"),
            ("kill -9 analyze: partial tables", "lost" if partial else "ok")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", help="run the cases whose name holds this text")
    ap.add_argument("--timeout", type=float, default=180)
    args = ap.parse_args()
    counts: collections.Counter = collections.Counter()
    with tempfile.TemporaryDirectory(prefix="rpgan-hostile-") as tmp:
        tmp = Path(tmp)
        os.environ["RPGAN_CACHE"] = str(tmp / "cache")
        run_dir = tmp / "run"
        for made in (["--steps", "4", "--checkpoint-every", "2", "--out", run_dir],
                     ["--steps", "2", "--seed", "7", "--out", tmp / "seeded"]):
            assert run(["train", *TINY, *made], {}, 600).returncode == 0
        results = []
        for case in cases(tmp, run_dir):
            if args.only and args.only not in case.name:
                continue
            before = {p: p.read_bytes() for p in case.keep}
            results.append((case.name, classify(case, run(case.args, case.env, args.timeout), before)))
            print(f"{results[-1][1]:10s} {case.name}", flush=True)
        for group in (lambda: concurrent_writers(tmp, args.timeout), lambda: full_disks(tmp, run_dir, args.timeout),
                      lambda: explorer(run_dir), lambda: killed_analysis(run_dir, tmp)):
            for name, outcome in group():
                if args.only and args.only not in name:
                    continue
                results.append((name, outcome))
                print(f"{outcome:10s} {name}", flush=True)
        counts.update(outcome for _, outcome in results)
    print(f"{len(results)} cases: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))


if __name__ == "__main__":
    main()
