"""The analysis commands' choices and the upper bounds of their counts, in one light module (the
CLI options, the job configurations' `validate` and the sweeps all read them; `--help` imports
nothing heavier): a typo is refused in one line before anything runs, instead of allocating
gigabytes. Every documented use sits far inside the bounds."""

from __future__ import annotations

import typing

# analyze --embedding, what the semantic distance embeds: the paper's Inception pool3, or a
# classifier trained on the data set's own labels (gray images: it sees the class, not the color)
Embedding = typing.Literal["inception", "classifier"]
Fill = typing.Literal["mean", "zero"]  # dissect --fill: what an ablated unit takes

MAX_EVALUATIONS = 100_000  # analyze --evaluations, --chunk (the paper uses 100)
MAX_GRIDS = 1000  # analyze --grids, --per-bucket
MAX_SAMPLES = 100_000  # dissect --n, --units, --chunk
MAX_STRIPS = 1000  # dissect --strips
MAX_DIRECTIONS = 4096  # directions --directions
MAX_DIRECTION_STEPS = 10_000_000  # directions --steps
MAX_BATCH = 65_536  # directions --batch
MAX_FID_SAMPLES = 1_000_000  # generated images for FID and PRD (50,000 is the standard): [N, 2048] features
MAX_REFERENCE = 10_000_000  # real images (more than any data set here holds)
