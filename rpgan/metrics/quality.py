"""The quality metrics of generated images, one registered function each, as in
stylegan2-ada-pytorch's metrics/: training's evaluation, `rpgan fid` and the sweep trials call
`measure` unchanged, so all three measure the same thing the same way.

A metric is a plain function of generated features [N, D] and reference features [M, D] (and a
seed, for what it draws) returning its columns and, optionally, what a plot needs. To add one:
write the function here and add its `Metric` to METRICS. Its columns then appear in
metrics.parquet (during training), the `quality` table of `rpgan fid`, the sweeps' `trials`
table and Tune's reports; a sweep's `--metrics` accepts its name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

# The metrics' own imports (numpy, scikit-learn) are made when they run: `rpgan --help` and
# `rpgan sweeps` read METRICS and import neither.


@dataclass(frozen=True)
class Metric:
    columns: tuple[str, ...]  # float columns it fills (NaN in rows where it was not measured)
    compute: Callable[[np.ndarray, np.ndarray, int], tuple[dict[str, float], Any]]
    always: bool = True  # else measured only when asked (PRD: --eval-prd, a sweep's `prd` metric)


def fid(gen: np.ndarray, ref: np.ndarray, seed: int) -> tuple[dict[str, float], None]:
    """Fréchet Inception distance (Heusel et al. 2017) of the two sets' Gaussians."""
    from rpgan.metrics.frechet import frechet_distance_of

    return {"fid": frechet_distance_of(gen, ref)}, None


def prd(gen: np.ndarray, ref: np.ndarray, seed: int) -> tuple[dict[str, float], Any]:
    """PRD (Sajjadi et al. 2018) on min(N, M) points of each set: F_8 (recall), F_1/8
    (precision), and the curve (rpgan.metrics.prd.PRD) for its plot."""
    from rpgan.metrics.prd import compute_prd

    import numpy as np

    k = min(len(gen), len(ref))  # PRD compares equally many points (reference code: enforce_balance)
    pick = np.random.default_rng(seed)
    result = compute_prd(gen[pick.permutation(len(gen))[:k]], ref[pick.permutation(len(ref))[:k]], seed=seed)
    return {"prd_f8_recall": result.f_8, "prd_f1_8_precision": result.f_1_8}, result


METRICS = {
    "fid": Metric(("fid",), fid),
    "prd": Metric(("prd_f8_recall", "prd_f1_8_precision"), prd, always=False),
}
COLUMNS = tuple(column for metric in METRICS.values() for column in metric.columns)


def measure(gen: np.ndarray, ref: np.ndarray, seed: int, asked: frozenset[str] = frozenset()) -> tuple[dict, dict]:
    """Every metric that is always measured, and those `asked` for, of generated features gen
    [N, D] against reference features ref [M, D]: a row of all COLUMNS (NaN where not
    measured), and each measured metric's extra (its plot's data) by name."""
    row, extras = dict.fromkeys(COLUMNS, float("nan")), {}
    for name, metric in METRICS.items():
        if metric.always or name in asked:
            values, extras[name] = metric.compute(gen, ref, seed)
            row.update(values)
    return row, extras
