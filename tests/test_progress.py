"""The progress line: rate per second for fast work, seconds per item for slow work, and an ETA."""

from __future__ import annotations

from rpgan.io import progress

import pytest


@pytest.mark.parametrize("elapsed,expected", [(0.5, "4.0 chunk/s | ETA 0:01"), (80.0, "40.0 s/chunk | ETA 2:40")])
def test_progress_line(monkeypatch, capsys, elapsed, expected):
    clock = iter([100.0, 100.0 + elapsed])  # a fake clock: the line's arithmetic, not real time
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    p = progress.Progress(total=6, label="chunk", every=1)
    p.update(2)
    assert capsys.readouterr().err.strip().endswith(expected)


def test_a_log_shows_the_first_step_then_every_n_steps_or_half_minute(monkeypatch, capsys):
    """Without a terminal (a log, a Ray job): the first step's line at once (speed and ETA), then
    every `every` steps, or after `seconds` without a line."""
    now = [0.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    p = progress.Progress(total=1000, start=100, label="step", every=50, seconds=30)
    shown = []
    for step, t in [(101, 5), (102, 6), (120, 20), (137, 36.5), (140, 40), (150, 44), (160, 50)]:
        now[0] = t
        p.update(step)
        if capsys.readouterr().err:
            shown.append(step)
    assert shown == [101, 137, 150]
