"""The paper's plots as PNG: Figure 4 (layer responsibility), Figure 11 (PRD curves), and the
comparison of layer responsibility across methods."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
from rpgan.io.atomic import atomic_write  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

# The features of the semantic distance (`rpgan analyze --embedding`), as panel titles say them.
SEMANTIC_LABELS = {"inception": "semantic (Inception pool3)", "classifier": "semantic (classifier features)"}
PANELS = (("semantic", SEMANTIC_LABELS["inception"], "tab:blue"), ("color", "color (Hellinger, mean RGB)", "tab:red"))


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
        embeddings = set(summary.get("embedding", ["inception"]))
        ax.set_title(SEMANTIC_LABELS[embeddings.pop()] if distance == "semantic" and len(embeddings) == 1 else label)
        if len(methods) > 1:
            ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


FAMILY_COLORS = {"RPGAN buckets": "tab:blue", "EigenGAN dimensions": "tab:green", "noise injection": "tab:orange",
                 "unit ablation": "tab:purple"}


def plot_comparison(rows: pd.DataFrame, path: Path) -> Path:
    """Layer responsibility by method: the ratio to layer 1 per layer with its std as a band,
    one line per model x method (colour: method family, line style: model), one panel per
    distance (rows as analysis.compare.collect)."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4))
    groups = list(rows.groupby(["model", "family", "method"], sort=False))
    models = list(dict.fromkeys(rows["model"]))
    styles = [("-", "o"), ("--", "s"), (":", "D"), ("-.", "^")]
    for ax, (distance, label, _) in zip(axes, PANELS):
        for (model, fam, method), g in groups:
            g = g[g["distance"] == distance].sort_values("layer")
            x, y, s = g["layer"].to_numpy(), g["ratio_mean"].to_numpy(), g["ratio_std"].fillna(0).to_numpy()
            name = fam if method in ("buckets", "eigen") else f"{fam} ({method})"
            ls, marker = styles[models.index(model) % len(styles)]
            color = FAMILY_COLORS.get(fam)
            line, = ax.plot(x, y, ls=ls, marker=marker, color=color, label=f"{name}: {model}")
            ax.fill_between(x, y - s, y + s, color=line.get_color(), alpha=0.1)
        ax.axhline(1.0, color="gray", lw=0.8, ls="--")
        ax.set_xticks(sorted(rows["layer"].unique()))
        ax.set_xlabel("layer l (1 = nearest the input)")
        ax.set_ylabel("effect of layer l / effect of layer 1")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.suptitle("Layer responsibility by method (mean and std over samples)", fontsize=10)
    fig.tight_layout(rect=(0, 0.06 + 0.035 * ((len(groups) + 1) // 2), 1, 1))
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
