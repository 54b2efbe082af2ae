"""PNG grids of generated images, enlarged so that small images are readable."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rpgan.io.atomic import atomic_write
from rpgan.io.data import to_uint8

import torch
from PIL import Image, ImageDraw
from torch import Tensor

MIN_CELL = 64  # pixels: 16x16 digits are drawn 4x, nearest-neighbour, to stay crisp
PAD = 2


def _canvas_cells(images: Tensor) -> tuple[list[Image.Image], int]:
    """float [N, C, S, S] in [-1, 1] -> PIL images enlarged to at least MIN_CELL, and the cell size."""
    arr = to_uint8(images)
    if arr.shape[1] == 1:
        arr = arr.expand(-1, 3, -1, -1)
    scale = max(1, -(-MIN_CELL // arr.shape[-1]))
    cell = arr.shape[-1] * scale
    pics = [Image.fromarray(a.permute(1, 2, 0).numpy()).resize((cell, cell), Image.NEAREST) for a in arr]
    return pics, cell


def save_grid(images: Tensor, path: Path, nrow: int = 8) -> Path:
    """Save images [N, C, S, S] in [-1, 1] as a PNG grid with `nrow` images per row."""
    pics, cell = _canvas_cells(images)
    rows = -(-len(pics) // nrow)
    canvas = Image.new("RGB", (nrow * (cell + PAD) + PAD, rows * (cell + PAD) + PAD), "white")
    for k, pic in enumerate(pics):
        canvas.paste(pic, (PAD + (k % nrow) * (cell + PAD), PAD + (k // nrow) * (cell + PAD)))
    return atomic_write(Path(path), lambda tmp: canvas.save(tmp, format="PNG"))


def save_labeled_rows(rows: Sequence[tuple[str, Tensor]], path: Path) -> Path:
    """Save one labelled row per (label, images [K, C, S, S]) pair as a PNG: the paper's
    Figure 3 layout when the rows are 'base' and one row per unfrozen bucket."""
    rendered = [(label, *_canvas_cells(imgs)) for label, imgs in rows]
    cell = rendered[0][2]
    label_w = 70
    ncol = max(len(p) for _, p, _ in rendered)
    canvas = Image.new("RGB", (label_w + ncol * (cell + PAD) + PAD, len(rows) * (cell + PAD) + PAD), "white")
    draw = ImageDraw.Draw(canvas)
    for r, (label, pics, _) in enumerate(rendered):
        y = PAD + r * (cell + PAD)
        draw.text((6, y + cell // 2 - 6), label, fill="black")
        for c, pic in enumerate(pics):
            canvas.paste(pic, (label_w + PAD + c * (cell + PAD), y))
    return atomic_write(Path(path), lambda tmp: canvas.save(tmp, format="PNG"))


@torch.no_grad()
def render(generator: torch.nn.Module, paths: Tensor, z: Tensor | None = None, batch: int = 256) -> Tensor:
    """Images [N, C, S, S] (CPU, float in [-1, 1]) for paths [N, n_buckets], in eval mode,
    in batches: a path renders the same image whatever its batch-mates."""
    was_training = generator.training
    generator.eval()
    try:
        outs = [generator(paths[i : i + batch], None if z is None else z[i : i + batch]).cpu()
                for i in range(0, len(paths), batch)]
    finally:
        generator.train(was_training)
    return torch.cat(outs)


def save_frozen_path_grid(generator: torch.nn.Module, path: Tensor, out: Path, per_bucket: int = 10,
                          seed: int = 0, z: Tensor | None = None) -> Path:
    """The paper's Figure 3 for one frozen path [n_buckets]: the base image, then one row per
    bucket with that bucket unfrozen (all its blocks, or `per_bucket` of them chosen by seed).
    For a Gaussian-input generator pass its z [z_dim]."""
    from rpgan.model.paths import frozen_path_variations

    pick = torch.Generator().manual_seed(seed)
    zs = None if z is None else z.expand(per_bucket, -1)
    rows = [("base", render(generator, path.unsqueeze(0), None if z is None else z.unsqueeze(0)))]
    for i, m in enumerate(generator.blocks):
        ids = torch.arange(m) if m <= per_bucket else torch.randperm(m, generator=pick)[:per_bucket].sort().values
        paths = frozen_path_variations(path, i, ids)
        rows.append((f"bucket {i + 1}", render(generator, paths, None if zs is None else zs[: len(ids)])))
    return save_labeled_rows(rows, out)


def save_traversal_grid(generator: torch.nn.Module, z: Tensor, out: Path, steps: int = 10,
                        extent: float = 3.0) -> Path:
    """EigenGAN's traversals for one sample z [latent_dim]: the base image, then one row per
    layer l and dimension j with z_lj set to `steps` values evenly spaced in [-extent, extent]."""
    paths = torch.zeros(steps, generator.cfg.n_buckets, dtype=torch.long)
    rows = [("base", render(generator, paths[:1], z.unsqueeze(0)))]
    values = torch.linspace(-extent, extent, steps)
    for layer in range(1, generator.cfg.n_buckets + 1):
        cols = generator.coefficients(layer)
        for j in range(cols.stop - cols.start):
            zs = z.expand(steps, -1).clone()
            zs[:, cols.start + j] = values
            rows.append((f"layer {layer} d{j + 1}", render(generator, paths, zs)))
    return save_labeled_rows(rows, out)


def save_layer_grid(generator: torch.nn.Module, path: Tensor, z: Tensor | None, out: Path, per_row: int = 10,
                    seed: int = 0) -> Path:
    """What each layer does for one sample (path [n_buckets], z [latent_dim] or None): an
    EigenGAN's traversals, or an RPGAN's frozen-path grid (Figure 3), `per_row` images a row."""
    if generator.cfg.arch == "eigengan":
        return save_traversal_grid(generator, z, out, per_row)
    return save_frozen_path_grid(generator, path, out, per_row, seed, z)
