"""Upper bounds of the analysis commands' counts, in one light module (the CLI options, the job
configurations' `validate` and the sweeps all read them): a typo is refused in one line before
anything runs, instead of allocating gigabytes. Every documented use sits far inside them."""

from __future__ import annotations

MAX_EVALUATIONS = 100_000  # analyze --evaluations, --chunk (the paper uses 100)
MAX_GRIDS = 1000  # analyze --grids, --per-bucket
MAX_SAMPLES = 100_000  # dissect --n, --units, --chunk
MAX_STRIPS = 1000  # dissect --strips
MAX_DIRECTIONS = 4096  # directions --directions
MAX_STEPS = 10_000_000  # directions --steps
MAX_BATCH = 65_536  # directions --batch
MAX_FID_SAMPLES = 1_000_000  # generated images for FID and PRD (50,000 is the standard): [N, 2048] features
MAX_REFERENCE = 10_000_000  # real images (more than any data set here holds)
