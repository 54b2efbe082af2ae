"""folder: data decoded ahead by worker processes: the same images, hence the same run, as
decoding in the step or holding the images in memory; every batch ready before its step."""

from __future__ import annotations

import multiprocessing

from rpgan.errors import UserError
from rpgan.io.data import FolderData, ImageData, load_data
from rpgan.io.loader import Prefetched
from rpgan.training.checkpoint import load_generator, new_training_state
from rpgan.training.loop import train_step, upcoming_draws
from rpgan.training.train import train
from tests.conftest import tiny_run, write_images

import numpy as np
import pytest
import torch
from PIL import Image


def in_memory(data: FolderData) -> ImageData:
    return ImageData(torch.stack([data.load(i) for i in range(len(data))]))


def test_prefetched_batches_are_the_drawn_images_and_all_ready_in_time(tmp_path):
    write_images(tmp_path / "images")
    cfg = tiny_run(steps=5)
    folder = load_data(f"folder:{tmp_path / 'images'}", cfg.model.image_size, cfg.model.channels)
    ahead = Prefetched(folder, upcoming_draws(cfg.train, 0, cfg.train.batch, len(folder), 0), workers=2)
    states = {"ahead": new_training_state(cfg, "cpu"), "memory": new_training_state(cfg, "cpu")}
    for _ in range(cfg.train.steps):
        train_step(states["ahead"], ahead, cfg.train, "cpu")
        train_step(states["memory"], in_memory(folder), cfg.train, "cpu")
    ahead.close()
    assert ahead.late == 0 and not multiprocessing.active_children()  # the workers are gone
    a, b = (s.generator.state_dict() for s in states.values())
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_batch_other_than_the_predicted_one_is_decoded_now(tmp_path):
    write_images(tmp_path)
    folder = load_data(f"folder:{tmp_path}", 8, 3)
    ahead = Prefetched(folder, iter([torch.tensor([0, 1]), torch.tensor([2, 3])]), workers=1)
    assert torch.equal(ahead.batch(torch.tensor([5, 6])), folder.batch(torch.tensor([5, 6])))
    assert torch.equal(ahead.batch(torch.tensor([2, 3])), folder.batch(torch.tensor([2, 3])))
    assert torch.equal(ahead.batch(torch.tensor([7])), folder.batch(torch.tensor([7])))  # past the prediction
    assert ahead.late == 2
    ahead.close()


@pytest.mark.parametrize("workers", [0, 2])
def test_a_folder_run_equals_the_same_images_held_in_memory(tmp_path, workers):
    write_images(tmp_path / "images")
    cfg = tiny_run(steps=3, checkpoint_every=0, data_workers=workers)
    folder = load_data(f"folder:{tmp_path / 'images'}", cfg.model.image_size, cfg.model.channels)
    train(cfg, folder, tmp_path / "folder", quiet=True)
    train(cfg, in_memory(folder), tmp_path / "memory", quiet=True)
    a, b = (load_generator(tmp_path / run)[0].state_dict() for run in ("folder", "memory"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_an_image_a_worker_cannot_decode_ends_the_run_with_one_line(tmp_path):
    write_images(tmp_path / "images", n=3)
    noise = np.random.default_rng(1).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "images" / "cut.jpg", quality=95)
    raw = (tmp_path / "images" / "cut.jpg").read_bytes()
    (tmp_path / "images" / "cut.jpg").write_bytes(raw[: len(raw) * 3 // 4])  # header whole, pixels cut
    cfg = tiny_run(steps=3, batch=16, data_workers=2)
    folder = load_data(f"folder:{tmp_path / 'images'}", cfg.model.image_size, cfg.model.channels)
    with pytest.raises(UserError, match=r"cut\.jpg cannot be decoded .*resume") as e:
        train(cfg, folder, tmp_path / "run", quiet=True)
    assert "\n" not in str(e.value)
    assert not multiprocessing.active_children()  # the failed run stopped its workers
