"""The paper's plots as PNG: Figure 4 (layer responsibility) and Figure 11 (PRD curves)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from rpgan.atomic import atomic_write  # noqa: E402

PANELS = (("semantic", "semantic (Inception pool3)", "tab:blue"), ("color", "color (Hellinger, mean RGB)", "tab:red"))


def _save(fig: plt.Figure, path: Path) -> Path:
    try:
        return atomic_write(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=130, bbox_inches="tight"))
    finally:
        plt.close(fig)


def plot_responsibility(summary: pd.DataFrame, path: Path, title: str) -> Path:
    """Figure 4: mean D_{l->1} with std per layer, one panel per distance; one bar colour per
    method when the summary holds several (RPGAN buckets vs noise injection)."""
    methods = list(dict.fromkeys(summary["method"]))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    width = 0.8 / len(methods)
    for ax, (distance, label, color) in zip(axes, PANELS):
        for k, method in enumerate(methods):
            rows = summary[(summary["distance"] == distance) & (summary["method"] == method)].sort_values("layer")
            x = rows["layer"].to_numpy() + (k - (len(methods) - 1) / 2) * width
            ax.bar(x, rows["ratio_mean"], width, yerr=rows["ratio_std"], capsize=3, label=method,
                   color=color if len(methods) == 1 else None, alpha=0.85)
        ax.axhline(1.0, color="gray", lw=0.8, ls="--")
        ax.set_xticks(sorted(summary["layer"].unique()))
        ax.set_xlabel("bucket / layer l")
        ax.set_ylabel(r"$D_{l\rightarrow 1}$")
        ax.set_title(label)
        if len(methods) > 1:
            ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def plot_prd(curves: dict[str, tuple], path: Path, title: str) -> Path:
    """Figure 11: recall (x) against precision (y) for each named (precision, recall) curve."""
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    for name, (precision, recall) in curves.items():
        ax.plot(recall, precision, label=name)
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)
