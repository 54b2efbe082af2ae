"""Every benchmark still starts: its imports resolve and its options parse (`--help`), so a
renamed module or flag cannot leave bench/ broken until someone runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"
# One interpreter for all of them: torch and Ray are imported once.
RUN_ALL = """
import runpy, sys
for script in sys.argv[1:]:
    sys.argv = [script, "--help"]
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as e:
        assert e.code in (0, None), (script, e.code)
    print("ok", script, flush=True)
"""


def test_every_benchmark_imports_and_parses_its_options():
    scripts = sorted(str(p) for p in BENCH.glob("*.py"))
    result = subprocess.run([sys.executable, "-c", RUN_ALL, *scripts], capture_output=True, text=True, timeout=300,
                            cwd=BENCH.parent)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("ok ") == len(scripts) >= 10
