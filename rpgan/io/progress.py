"""A progress line for long work: step, metrics, rate and ETA, on stderr."""

from __future__ import annotations

import sys
import time


def clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """Redraws one line on a terminal; otherwise (logs) prints a line at the first step, so that a
    slow run shows its speed and ETA at once, then every `every` steps and at least every
    `seconds`."""

    def __init__(self, total: int, start: int = 0, label: str = "step", every: int = 50, seconds: float = 30.0):
        self.total, self.start, self.label, self.every, self.seconds = total, start, label, every, seconds
        self.t0 = self.printed = time.monotonic()
        self.tty = sys.stderr.isatty()

    def say(self, text: str) -> None:
        """A line of its own between the progress lines."""
        sys.stderr.write(("\r\x1b[K" if self.tty else "") + text + "\n")
        sys.stderr.flush()

    def update(self, step: int, metrics: dict[str, float] | None = None) -> None:
        now = time.monotonic()
        if not self.tty and step % self.every and step not in (self.total, self.start + 1) \
                and now - self.printed < self.seconds:
            return
        self.printed = now
        elapsed = now - self.t0
        done = step - self.start
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - step) / rate if rate > 0 else 0.0
        shown = " ".join(f"{k} {v:.3f}" for k, v in (metrics or {}).items())
        # slow work (an Inception chunk on CPU) reads better as seconds per item
        speed = f"{rate:.1f} {self.label}/s" if rate >= 1 or not done else f"{1 / rate:.1f} s/{self.label}"
        line = f"{self.label} {step}/{self.total} {shown} | {speed} | ETA {clock(eta)}"
        sys.stderr.write(("\r" + line + "\x1b[K") if self.tty else line + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.tty:
            sys.stderr.write("\n")
