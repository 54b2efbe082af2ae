"""`make setup` from nothing, timed, for an older Makefile and this one, alternating:

    python bench/setup_install.py [--old REV] [--rounds 2]

Each candidate runs its Makefile's setup recipe as a fresh clone does, into a new virtual
environment in a temporary folder (`make -f MAKEFILE setup VENV=...`, from this checkout, whose
pyproject.toml both install), with pip's and uv's download caches off: every wheel is read from
the registries as on a new machine. Candidates:
  old   the Makefile at git revision REV (default 54d8346: pip installs)
  new   this checkout's Makefile (uv installs)
Printed: each round's seconds per candidate, the medians and new / old, and whether both
environments hold the same packages (name and version; the same pins, resolved at the same time).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OLD = "54d8346"  # the last Makefile whose setup installed with pip


def setup(makefile: Path, venv: Path) -> float:
    """`make setup` of `makefile` into `venv`, without download caches: wall seconds."""
    env = os.environ | {"PIP_NO_CACHE_DIR": "1", "UV_NO_CACHE": "1"}
    t0 = time.perf_counter()
    done = subprocess.run(["make", "-f", str(makefile), "setup", f"VENV={venv}"], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{makefile}: make setup failed:\n{done.stderr[-3000:]}")
    return seconds


def packages(venv: Path) -> set[str]:
    """name==version of every distribution in the environment but the tools that install."""
    listed = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "list", "--format", "freeze"],
                            capture_output=True, text=True, check=True).stdout.split()
    return {p.lower() for p in listed if p.split("==")[0].lower() not in ("pip", "uv", "setuptools", "rpgan")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", default=OLD, help="git revision of the older Makefile")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rpgan-setup-") as tmp:
        old = Path(tmp) / "Makefile.old"
        old.write_text(subprocess.run(["git", "show", f"{args.old}:Makefile"], cwd=ROOT, capture_output=True,
                                      text=True, check=True).stdout)
        candidates = {"old": old, "new": ROOT / "Makefile"}
        times: dict[str, list[float]] = {name: [] for name in candidates}
        for r in range(args.rounds):
            order = list(candidates) if r % 2 == 0 else list(candidates)[::-1]
            for name in order:
                venv = Path(tmp) / f"venv-{name}"
                shutil.rmtree(venv, ignore_errors=True)
                times[name].append(setup(candidates[name], venv))
                print(f"round {r + 1}: {name} {times[name][-1]:.1f} s", flush=True)
        same = packages(Path(tmp) / "venv-old") == packages(Path(tmp) / "venv-new")
    medians = {name: statistics.median(t) for name, t in times.items()}
    print(f"median of {args.rounds}: old (Makefile at {args.old}) {medians['old']:.1f} s, new {medians['new']:.1f} s, "
          f"new / old {medians['new'] / medians['old']:.2f}")
    print(f"the same packages and versions: {same}")


if __name__ == "__main__":
    main()
