"""Incremental learning, measured (paper section 4.3): train a 4-bucket RPGAN (blocks
20, 20, 20, 8) on MNIST digits 0-6, add 5 blocks to buckets 1 and 2, train only those on
all digits, and count with a real-MNIST digit classifier which digits each model draws.

    python bench/incremental.py [--mnist ../shared/data/mnist_t10k.npz] [--out runs/incremental]

CPU-sized: 16x16 MNIST, the `digits` preset's network (64 channels, batch 32), 3,000 steps on
0-6 and 1,500 on 0-9, diversity weight 0.01: at the preset's 0.1 the 20-block buckets'
diversity term (about -17,700) outweighs the adversarial loss and most paths draw black.
About 20 minutes on 2 cores; a finished run's checkpoints are reused.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
from analysis.classifier import classify, train_classifier  # noqa: E402
from rpgan.config import RunConfig  # noqa: E402
from rpgan.io.data import ImageData, load_data, select_labels, to_float  # noqa: E402
from rpgan.io.images import render, save_grid  # noqa: E402
from rpgan.presets import get_preset  # noqa: E402
from rpgan.training.checkpoint import load_generator  # noqa: E402
from rpgan.training.train import start_extension, train  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

HERE = Path(__file__).resolve().parent


def share_new(labels: torch.Tensor) -> float:
    return (labels >= 7).float().mean().item()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mnist", default=str(HERE.parents[1] / "shared" / "data" / "mnist_t10k.npz"))
    ap.add_argument("--out", type=Path, default=Path("runs/incremental"))
    ap.add_argument("--steps", type=int, default=3000, help="training steps on digits 0-6")
    ap.add_argument("--extend-steps", type=int, default=1500, help="steps training only the new blocks")
    ap.add_argument("--diversity-weight", type=float, default=0.01)
    ap.add_argument("--samples", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    mnist = load_data(f"npz:{args.mnist}", 16, 1)
    held_out = ImageData(mnist.images[8000:], mnist.labels[8000:])
    clf = train_classifier(ImageData(mnist.images[:8000], mnist.labels[:8000]), seed=args.seed)
    accuracy = (classify(clf, to_float(held_out.images)) == held_out.labels).float().mean().item()
    print(f"classifier accuracy on 2,000 held-out MNIST digits: {accuracy:.4f}")

    preset = get_preset("digits")
    model = dataclasses.replace(preset.model, channels=1, blocks=(20, 20, 20, 8))
    base_cfg = RunConfig(model=model, train=dataclasses.replace(preset.train, steps=args.steps, seed=args.seed,
                                                                     diversity_weight=args.diversity_weight),
                         data=f"npz:{args.mnist}", labels="0-6", preset="digits")
    subset = select_labels(mnist, "0-6")
    base_ckpt = train(dataclasses.replace(base_cfg, dataset_size=len(subset)), subset, args.out / "digits0-6",
                      resume=True)
    base, _, _ = load_generator(base_ckpt)

    ext_cfg, start = start_extension(base_ckpt, [5, 5, 0, 0], args.extend_steps, args.seed)
    ext_ckpt = train(dataclasses.replace(ext_cfg, dataset_size=len(mnist)), mnist, args.out / "extended",
                     resume=True, start=start)
    extended, _, _ = load_generator(ext_ckpt)

    g = torch.Generator().manual_seed(args.seed + 1)
    before = classify(clf, render(base, base.sample_latent(args.samples, g)[0]))
    paths = extended.sample_latent(args.samples, g)[0]
    after = classify(clf, render(extended, paths))
    uses_new = (paths[:, 0] >= 20) | (paths[:, 1] >= 20)
    real_share = share_new(mnist.labels)
    rows = {
        "real MNIST (t10k)": real_share,
        "before extension": share_new(before),
        "after extension, all paths": share_new(after),
        "after, paths using a new block": share_new(after[uses_new]),
        "after, paths using old blocks only": share_new(after[~uses_new]),
    }
    for name, value in rows.items():
        print(f"share of digits 7-9, {name:36s} {value:.3f}")
    print(f"paths using a new block: {uses_new.float().mean().item():.3f} (expected 1 - (20/25)^2 = 0.36)")

    fig, ax = plt.subplots(figsize=(8, 3.4))
    ax.barh(list(rows)[::-1], list(rows.values())[::-1], color=["#888", "#4a4", "#48c", "#c84", "#bbb"][::-1])
    ax.set_xlabel("share of samples the classifier labels 7, 8 or 9")
    ax.set_title(f"RPGAN incremental learning, MNIST 0-6 -> 0-9 (digit classifier accuracy {accuracy:.3f})",
                 fontsize=10)
    for i, v in enumerate(list(rows.values())[::-1]):
        ax.text(v + 0.005, i, f"{v:.2f}", va="center")
    ax.set_xlim(0, max(rows.values()) * 1.2)
    fig.tight_layout()
    fig.savefig(args.out / "shares.png", dpi=120)
    new_paths = paths[uses_new][:64]
    save_grid(render(extended, new_paths), args.out / "extended_new_blocks.png")
    save_grid(render(base, base.sample_latent(64, torch.Generator().manual_seed(0))[0]), args.out / "base.png")
    print(f"figures: {args.out / 'shares.png'}, {args.out / 'base.png'}, {args.out / 'extended_new_blocks.png'}")


if __name__ == "__main__":
    main()
