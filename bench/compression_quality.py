"""What bucket compression (paper section 4.4) costs in sample quality: train the purely linear
fully-connected generator (`mnist-fc`, Table 3) on MNIST, merge buckets 3-5 into K product
blocks with `rpgan compress`, and score both generators on the same measures side by side:
FID and PRD against real MNIST (`rpgan fid`'s code, in-process), and a real-MNIST digit
classifier's view of their samples (digit Inception score, share of each digit, confidence).

    python bench/compression_quality.py [--steps 1500] [--widths 64,128,256,512] [--blocks 128] [--n 1000]

Table 3's widths are 128,256,512,1024: a 38M-parameter generator. On 2 CPU cores most of a
step is the SN-ResNet discriminator's convolutions; the defaults halve the generator's widths
(the same buckets and blocks) and the discriminator's (64 -> 32) to fit a CPU session:
2.9 steps/s, 1,500 steps in about 9 minutes.

A merged block reproduces its source path exactly (tests/test_compress.py), so what can change
is the distribution: the compressed generator draws its buckets-3-5 combinations from K
products instead of all 32 x 16 x 16 = 8192.
"""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
from pathlib import Path

from analysis.classifier import classify, train_classifier
from analysis.fanout import Fanout
from analysis.fid import fid
from rpgan.config import RunConfig
from rpgan.io.data import ImageData, load_data
from rpgan.io.images import render, save_grid
from rpgan.io.run import Run
from rpgan.presets import get_preset
from rpgan.training.checkpoint import load_generator
from rpgan.training.train import train

import torch

HERE = Path(__file__).resolve().parent


def digit_scores(probs: torch.Tensor) -> dict[str, float]:
    """Classifier softmax [N, 10] -> digit Inception score exp(E KL(p(y|x) || p(y))), the
    entropy of the label histogram (log 10 = 2.303 when balanced) and the mean confidence."""
    p = probs.clamp_min(1e-12)
    marginal = p.mean(0)
    kl = (p * (p.log() - marginal.log())).sum(1).mean()
    return {"digit_is": float(kl.exp()), "label_entropy": float(-(marginal * marginal.log()).sum()),
            "confidence": float(p.max(1).values.mean())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mnist", default=str(HERE.parents[1] / "shared" / "data" / "mnist_t10k.npz"))
    ap.add_argument("--out", type=Path, default=Path("runs/compression_quality"))
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--widths", default="64,128,256,512", help="hidden widths (Table 3: 128,256,512,1024)")
    ap.add_argument("--d-width", type=int, default=32, help="discriminator width (the preset: 64)")
    ap.add_argument("--blocks", type=int, default=128, help="K, blocks of the merged bucket")
    ap.add_argument("--n", type=int, default=1000, help="generated and real images per score")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    data = f"npz:{args.mnist}"
    mnist = load_data(data, 28, 1)
    preset = get_preset("mnist-fc")
    model = dataclasses.replace(preset.model, fc_widths=tuple(int(w) for w in args.widths.split(",")),
                                d_width=args.d_width)
    schedule = dataclasses.replace(preset.train, steps=args.steps, seed=args.seed, sample_every=0, checkpoint_every=0)
    config = RunConfig(model=model, train=schedule,
                       data=data, dataset_size=len(mnist), preset="mnist-fc")
    full_ckpt = train(config, mnist, args.out / "fc", resume=True)
    small_dir = args.out / f"fc-merged-3-5-k{args.blocks}"
    if not Run.at(small_dir).checkpoint_steps():
        subprocess.run([sys.executable, "-m", "rpgan.cli", "compress", "--ckpt", str(full_ckpt), "--merge", "3-5",
                        "--merged-blocks", str(args.blocks), "--seed", str(args.seed), "--out", str(small_dir)],
                       check=True)

    clf = train_classifier(ImageData(mnist.images[:8000], mnist.labels[:8000]), seed=args.seed)
    fan = Fanout(workers=0)
    results = {}
    for name, ckpt in (("original", args.out / "fc"), ("compressed", small_dir)):
        generator, cfg, _ = load_generator(ckpt)
        quality = fid(ckpt, args.n, args.seed, fan, data=data, reference_n=args.n)
        paths, _ = generator.sample_latent(args.n, torch.Generator().manual_seed(args.seed))
        images = render(generator, paths)
        save_grid(images[:64], args.out / f"{name}.png")
        with torch.no_grad():
            probs = torch.cat([clf(images[i : i + 1024]).softmax(1) for i in range(0, len(images), 1024)])
        shares = torch.bincount(classify(clf, images), minlength=10).float() / len(images)
        params = sum(p.numel() for p in generator.parameters())
        results[name] = {"fid": quality["fid"], "prd_f8_recall": quality["prd_f8_recall"],
                         "prd_f1_8_precision": quality["prd_f1_8_precision"], **digit_scores(probs),
                         "parameters": params, "buckets": len(cfg.model.blocks),
                         "shares": " ".join(f"{s:.2f}" for s in shares.tolist())}
    print(f"mnist-fc (linear, widths {args.widths}), {args.steps} steps; compressed: buckets 3-5 merged into "
          f"{args.blocks} blocks; {args.n} generated vs {args.n} real images, seed {args.seed}")
    print(f"{'':20s} {'original':>12s} {'compressed':>12s}")
    for key in ("fid", "prd_f8_recall", "prd_f1_8_precision", "digit_is", "label_entropy", "confidence",
                "parameters", "buckets"):
        a, b = results["original"][key], results["compressed"][key]
        print(f"{key:20s} {a:>12.4f} {b:>12.4f}" if isinstance(a, float) else f"{key:20s} {a:>12,} {b:>12,}")
    for name, row in results.items():
        print(f"share of digits 0-9 ({name}): {row['shares']}")
    print(f"grids: {args.out / 'original.png'}, {args.out / 'compressed.png'}")


if __name__ == "__main__":
    main()
