"""A sweep's summary plot: quality against the swept value (error bars over seeds), and which
buckets the variation comes from at each value."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def plot_summary(trials: pd.DataFrame, responsibility: pd.DataFrame | None, x: str, order: list,
                 title: str) -> bytes:
    """PNG: FID vs x, PRD F_8 / F_1/8 vs x (mean and std over seeds of the finished trials), and,
    unless `responsibility` is None (a sweep that does not measure it), mean semantic D_{l->1}
    per bucket for each x value. `order`: the x values in sweep order."""
    ok = trials[trials["status"] == "ok"]
    values = [v for v in order if (ok[x] == v).any()]
    numeric = all(isinstance(v, int | float) for v in values)
    log = numeric and len(values) > 1 and min(values) > 0 and max(values) / min(values) >= 10
    pos = np.array(values, dtype=float) if numeric else np.arange(len(values), dtype=float)

    def by_value(column: str) -> tuple[np.ndarray, np.ndarray]:
        g = [ok.loc[ok[x] == v, column] for v in values]
        return np.array([s.mean() for s in g]), np.array([s.std() if len(s) > 1 else 0.0 for s in g])

    panels = 2 if responsibility is None else 3
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4.2))
    for ax, columns in ((axes[0], [("fid", "FID", "tab:blue")]),
                        (axes[1], [("prd_f8_recall", "F_8 (recall)", "tab:green"),
                                   ("prd_f1_8_precision", "F_1/8 (precision)", "tab:orange")])):
        for column, label, color in columns:
            mean, std = by_value(column)
            ax.errorbar(pos, mean, yerr=std, marker="o", capsize=4, color=color, label=label)
        ax.set_xlabel(x)
        if log:
            ax.set_xscale("log")
        ax.set_xticks(pos, [str(v) for v in values], rotation=30 if not numeric else 0)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("FID (lower is better)")
    axes[1].set_ylabel("PRD")
    axes[1].set_ylim(0, 1.02)
    axes[1].legend(fontsize=8)

    if responsibility is not None:
        _plot_responsibility(axes[2], responsibility, x, values)
    fig.suptitle(title, fontsize=11)
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    finally:
        plt.close(fig)
    return buffer.getvalue()


def _plot_responsibility(ax: plt.Axes, responsibility: pd.DataFrame, x: str, values: list) -> None:
    """Mean semantic D_{l->1} per bucket, one line per x value."""
    rows = responsibility[(responsibility["method"] == "buckets") & (responsibility["distance"] == "semantic")]
    cmap = plt.get_cmap("viridis")
    shown = [v for v in values if (rows[x] == v).any()]
    for i, v in enumerate(shown):
        mean = rows[rows[x] == v].groupby("layer")["ratio_mean"].mean()
        ax.plot(mean.index, mean.to_numpy(), marker="o", color=cmap(i / max(1, len(shown) - 1)), label=f"{x}={v}")
    ax.axhline(1.0, color="gray", lw=0.8, ls="--")
    ax.set_xlabel("bucket l")
    ax.set_ylabel(r"semantic $D_{l\rightarrow 1}$ (mean over seeds)")
    ax.set_title("which buckets vary the images", fontsize=10)
    if shown:
        ax.legend(fontsize=7)
        ax.xaxis.get_major_locator().set_params(integer=True)
    else:
        ax.text(0.5, 0.5, "no trial with a bucket to vary", ha="center", va="center", transform=ax.transAxes)
