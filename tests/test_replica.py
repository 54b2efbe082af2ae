"""Data-parallel training on torch.distributed (gloo, 2 processes, no Ray): after each step all
replicas hold identical generator, discriminator and moving-average weights although they saw
different data."""

from __future__ import annotations

from pathlib import Path

from rpgan.io.data import ImageData, load_data
from rpgan.io.loader import Prefetched
from rpgan.training.checkpoint import new_training_state
from rpgan.training.loop import train_step, upcoming_draws
from rpgan.training.replica import Replica, fingerprint
from tests.conftest import tiny_run, write_images

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _replica_steps(rank: int, world: int, folder: str, arch: str, loss: str, images: str = "") -> None:
    """Three steps of one replica, on random images in memory or, with `images`, on that folder's
    images decoded ahead for this replica's share."""
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=world)
    torch.set_num_threads(1)
    config = tiny_run(arch, loss=loss, batch=9, ema_kimg=0.01)  # 9 = 5 + 4: unequal shares
    m = config.model
    replica = Replica(rank, world)
    if images:
        files = load_data(f"folder:{images}", m.image_size, m.channels)
        data = Prefetched(files, upcoming_draws(config.train, rank, replica.share(9), len(files), 0), workers=1)
    else:
        data = ImageData(torch.randint(0, 256, (64, m.channels, m.image_size, m.image_size), dtype=torch.uint8,
                                       generator=torch.Generator().manual_seed(0)))
    state = new_training_state(config, "cpu")
    prints, losses = [], []
    for _ in range(3):
        losses.append(train_step(state, data, config.train, "cpu", replica))
        prints.append(fingerprint(state.generator, state.discriminator, state.ema))
    late = data.late if images else 0
    torch.save({"fingerprints": prints, "losses": losses, "late": late}, Path(folder) / f"rank{rank}.pt")
    dist.destroy_process_group()


@pytest.mark.parametrize("arch,loss", [("resnet", "hinge"), ("dcgan", "wgan-gp"), ("fc", "hinge")])
def test_replicas_hold_identical_weights_after_every_step(tmp_path, arch, loss):
    mp.spawn(_replica_steps, args=(2, str(tmp_path), arch, loss), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    for step in range(3):
        assert torch.equal(ranks[0]["fingerprints"][step], ranks[1]["fingerprints"][step]), f"step {step + 1}"
        # they trained on different shares of the batch, so the equality comes from the sync
        assert ranks[0]["losses"][step]["d_loss"] != ranks[1]["losses"][step]["d_loss"]
    assert not torch.equal(ranks[0]["fingerprints"][0], ranks[0]["fingerprints"][2])  # and they did train


def test_each_replica_decodes_its_own_share_of_a_folder_ahead(tmp_path):
    write_images(tmp_path / "images")
    mp.spawn(_replica_steps, args=(2, str(tmp_path), "resnet", "hinge", str(tmp_path / "images")), nprocs=2)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert ranks[0]["late"] == ranks[1]["late"] == 0  # each rank's prediction was its own draws
    assert torch.equal(ranks[0]["fingerprints"][2], ranks[1]["fingerprints"][2])
    assert ranks[0]["losses"][0]["d_loss"] != ranks[1]["losses"][0]["d_loss"]


def test_shares_split_the_global_batch():
    for batch in (1, 8, 9, 64):
        for world in (1, 2, 3, 5):
            shares = [Replica(r, world).share(batch) for r in range(world)]
            assert sum(shares) == batch and max(shares) - min(shares) <= 1
