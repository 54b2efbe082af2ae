"""How much a busy background process at the lowest priority slows the work beside it:

    python bench/background_priority.py [--rounds 3]

The work: two processes of fixed work (a Python loop each), one per core of a 2-core machine,
timed from start to end. Candidates, alternating each round:
  alone        nothing else runs
  nice         beside a busy `nice -n 19` process in a session of its own (start_new_session)
  nice+group   the same, with that session's scheduling group at nice 19 too (/proc/PID/autogroup)
Linux with autogroup (/proc/sys/kernel/sched_autogroup_enabled) weighs each session's group as
an equal whatever its processes' nice; tests/conftest.py's AHEAD runs use the third candidate.
Printed: each round's seconds, the medians, and each / alone.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

WORK = "s = 0\nfor i in range(25_000_000):\n    s += i"


def work() -> float:
    """Seconds for two processes of fixed work, started together."""
    t0 = time.perf_counter()
    for p in [subprocess.Popen([sys.executable, "-c", WORK]) for _ in range(2)]:
        p.wait()
    return time.perf_counter() - t0


def beside(group_nice: bool) -> float:
    """work() beside a busy niced process in its own session (its group niced too, or not)."""
    busy = subprocess.Popen(["nice", "-n", "19", sys.executable, "-c", "while True: pass"], start_new_session=True)
    try:
        if group_nice:
            Path(f"/proc/{busy.pid}/autogroup").write_text("19")
        time.sleep(0.5)  # running before the work starts
        return work()
    finally:
        busy.kill()
        busy.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    autogroup = Path("/proc/sys/kernel/sched_autogroup_enabled")
    print(f"autogroup: {autogroup.read_text().strip() if autogroup.exists() else 'absent'}")
    candidates = {"alone": work, "nice": lambda: beside(False), "nice+group": lambda: beside(True)}
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for r in range(args.rounds):
        for name in list(candidates)[r % 3:] + list(candidates)[:r % 3]:
            times[name].append(candidates[name]())
        print(f"round {r + 1}: " + ", ".join(f"{name} {t[-1]:.2f} s" for name, t in times.items()), flush=True)
    alone = statistics.median(times["alone"])
    for name, t in times.items():
        print(f"{name:<11} median {statistics.median(t):.2f} s  / alone {statistics.median(t) / alone:.2f}")


if __name__ == "__main__":
    main()
