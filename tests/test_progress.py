"""The progress line: rate per second for fast work, seconds per item for slow work, and an ETA."""

from __future__ import annotations

import pytest

from rpgan.io import progress


@pytest.mark.parametrize("elapsed,expected", [(0.5, "4.0 chunk/s | ETA 0:01"), (80.0, "40.0 s/chunk | ETA 2:40")])
def test_progress_line(monkeypatch, capsys, elapsed, expected):
    clock = iter([100.0, 100.0 + elapsed])  # a fake clock: the line's arithmetic, not real time
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    p = progress.Progress(total=6, label="chunk", every=1)
    p.update(2)
    assert capsys.readouterr().err.strip().endswith(expected)
