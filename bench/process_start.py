"""What a fresh process pays, after torch, for two things rpgan's processes load, each the way
rpgan did before and does now:

- the embedded digits (every Ray Train worker, sweep trial and command that trains or measures
  on the default data set): scikit-learn's `load_digits`, which imports scikit-learn, vs
  `rpgan.io.data.embedded_digits`, the same file read without it;
- the FID Inception network built and run on two images (every analysis worker, trial
  evaluation and `rpgan fid`): pytorch-fid's blocks on torchvision's Inception3, which imports
  torchvision, vs `rpgan.metrics.fid_inception.FIDInception`.

Each candidate runs in its own new Python process, alternating, so both pay the same start-up;
prints the median seconds of each pair and their ratio, and checks that a pair gives the same
numbers (the digits' arrays; the features of the same weights and images).

    python bench/process_start.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the tests' reference network is imported from there

# `net`, built by a candidate, with rpgan's FID weights: pool3 features of two fixed images
_FEATURES = """
from rpgan.metrics.inception import resolve_weights
net.load_state_dict(resolve_weights()[0], strict=False)
with torch.no_grad():
    result = [pool3(net)(torch.linspace(-1, 1, 2 * 3 * 299 * 299).reshape(2, 3, 299, 299)).numpy()]
"""
# pairs of (what rpgan did, what it does); each leaves `result`, the arrays to compare
PAIRS = {
    "digits": {
        "load_digits": "from sklearn.datasets import load_digits; d = load_digits(); result = [d.images, d.target]",
        "embedded_digits": "from rpgan.io.data import embedded_digits; result = embedded_digits()",
    },
    "Inception": {
        "torchvision": "from tests.pytorch_fid_network import pool3, pytorch_fid_network\n"
                       "net = pytorch_fid_network()" + _FEATURES,
        "FIDInception": "from rpgan.metrics.fid_inception import FIDInception\nnet = FIDInception().eval()\n"
                        "pool3 = FIDInception.pool3" + _FEATURES,
    },
}
# rpgan (and so torch) first, as in every rpgan process; the time is the candidate's alone.
PROBE = ("import time, hashlib, rpgan, torch\nt = time.perf_counter()\n{code}\n"
         "print(time.perf_counter() - t, hashlib.sha1(b''.join(a.tobytes() for a in result)).hexdigest())")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5, help="fresh processes per candidate")
    args = ap.parse_args()
    for pair, candidates in PAIRS.items():
        seconds: dict[str, list[float]] = {name: [] for name in candidates}
        digests = set()
        for _ in range(args.rounds):
            for name, code in candidates.items():
                done = subprocess.run([sys.executable, "-c", PROBE.format(code=code)], capture_output=True,
                                      text=True, check=True, cwd=ROOT)
                took, digest = done.stdout.split()
                seconds[name].append(float(took))
                digests.add(digest)
        for name, times in seconds.items():
            print(f"{pair:9s} {name:16s} median {statistics.median(times):.3f} s  "
                  f"({', '.join(f'{t:.2f}' for t in times)})")
        old, new = (statistics.median(seconds[name]) for name in candidates)
        print(f"{pair:9s} new / old: {new / old:.3f}; the same numbers: {len(digests) == 1}")


if __name__ == "__main__":
    main()
