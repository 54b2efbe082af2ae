"""Training curves: FID during training and the losses against step, one line per run.

`rpgan curves --run DIR` draws one run; `rpgan results` draws every trial of a sweep, each line
coloured by the trial's swept value. Losses are smoothed (a centred rolling mean over a
twentieth of the rows) with the raw rows faint behind them: a GAN's losses are noisy step to step.
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

PANELS = (("fid", "FID during training"), ("d_loss", "discriminator loss"), ("g_loss", "generator loss (adversarial)"))


def _colours(values: list) -> dict:
    """A colour per value: a sequential map for numbers (in order), distinct colours otherwise."""
    numeric = all(isinstance(v, int | float) for v in values)
    cmap = plt.get_cmap("viridis" if numeric else "tab10")
    if numeric:
        return {v: cmap(i / max(len(values) - 1, 1) * 0.9) for i, v in enumerate(values)}
    return {v: cmap(i % 10) for i, v in enumerate(values)}


def plot_curves(rows: pd.DataFrame, title: str, by: str | None = None, order: list | None = None,
                run: str = "trial") -> bytes:
    """PNG of the metrics rows (metrics.parquet columns; `run` names each line's run): FID
    against step where measured, and the D and G losses. With `by` (a column), lines are
    coloured by its value, in `order` (default: as found), with one legend entry per value."""
    rows = rows.sort_values([run, "step"])
    panels = [(c, label) for c, label in PANELS if c in rows and rows[c].notna().any()]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.2), squeeze=False)
    values = order or (list(dict.fromkeys(rows[by])) if by else [None])
    colours = _colours(values) if by else {None: "tab:blue"}
    for ax, (column, label) in zip(axes[0], panels):
        shown = set()
        for _, one in rows.groupby(run, sort=False):
            value = one[by].iloc[0] if by else None
            measured = one[one[column].notna()]
            colour = colours.get(value, "gray")
            name = f"{by} {value}" if by and value not in shown else None
            shown.add(value)
            if column == "fid":
                ax.plot(measured["step"], measured[column], marker="o", ms=3, color=colour, label=name)
                continue
            window = max(1, len(measured) // 20)
            ax.plot(measured["step"], measured[column], color=colour, alpha=0.15, lw=0.8)
            ax.plot(measured["step"], measured[column].rolling(window, center=True, min_periods=1).mean(),
                    color=colour, lw=1.5, label=name)
        ax.set_xlabel("step")
        ax.set_title(label)
        ax.grid(alpha=0.3)
        if column == "fid":
            ax.set_ylabel("FID (lower is better)")
        if by:
            ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()
