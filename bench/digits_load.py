"""The embedded digits in a fresh process, as every Ray Train worker, sweep trial and `rpgan`
command that trains or measures on the default data set loads them: through scikit-learn's
`load_digits` (which imports scikit-learn) vs `rpgan.io.data.embedded_digits` (the same file,
read without it). Each candidate runs in its own new Python process, after torch is imported
(as in rpgan's processes), alternating, so both pay the same start-up; prints the median
seconds of each and their ratio, and checks that both give the same arrays.

    python bench/digits_load.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

CANDIDATES = {
    "load_digits": "from sklearn.datasets import load_digits; d = load_digits(); x, y = d.images, d.target",
    "embedded_digits": "from rpgan.io.data import embedded_digits; x, y = embedded_digits()",
}
# rpgan (and so torch) first, as in every rpgan process; the time is the candidate's alone.
TEMPLATE = ("import time, hashlib, rpgan, torch; t = time.perf_counter(); {code}; "
            "print(time.perf_counter() - t, hashlib.sha1(x.tobytes() + y.astype('int64').tobytes()).hexdigest())")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5, help="fresh processes per candidate")
    args = ap.parse_args()
    seconds: dict[str, list[float]] = {name: [] for name in CANDIDATES}
    digests = set()
    for _ in range(args.rounds):
        for name, code in CANDIDATES.items():
            done = subprocess.run([sys.executable, "-c", TEMPLATE.format(code=code)], capture_output=True, text=True,
                                  check=True)
            took, digest = done.stdout.split()
            seconds[name].append(float(took))
            digests.add(digest)
    for name, times in seconds.items():
        print(f"{name:16s} median {statistics.median(times):.3f} s  ({', '.join(f'{t:.2f}' for t in times)})")
    old, new = (statistics.median(seconds[name]) for name in CANDIDATES)
    print(f"embedded_digits / load_digits: {new / old:.3f}; the same arrays: {len(digests) == 1}")


if __name__ == "__main__":
    main()
