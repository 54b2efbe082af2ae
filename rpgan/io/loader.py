"""Decoding a step's images before the step runs: for data decoded from files (`folder:`),
worker processes read the images the next steps will draw, so the training thread only
takes what is ready and a GPU does not wait on PIL."""

from __future__ import annotations

from collections.abc import Iterable

from rpgan.errors import UserError
from rpgan.io.data import FolderData, ImageData

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

AHEAD = 2  # batches each worker keeps decoded ahead (DataLoader's prefetch_factor)


class Prefetched(ImageData):
    """`data` with the batches of `upcoming` (LongTensor indices [B], in the order they will be
    asked) decoded ahead by `workers` processes, into pinned memory for CUDA. `batch(indices)`
    returns the next decoded batch when its indices are those asked for, and otherwise decodes
    them now (counted in `late`): the prediction decides only the speed, never the images. An
    image a worker cannot decode is decoded again here, which raises its one-line UserError."""

    def __init__(self, data: FolderData, upcoming: Iterable[Tensor], workers: int, pin_memory: bool = False):
        self.data, self.labels, self.late = data, data.labels, 0
        loader = DataLoader(_Decoder(data), batch_sampler=upcoming, num_workers=workers, collate_fn=_as_is,
                            pin_memory=pin_memory, prefetch_factor=AHEAD)
        self._ready = iter(loader)

    def __len__(self) -> int:
        return len(self.data)

    def batch(self, indices: Tensor) -> Tensor:
        """uint8 [B, C, S, S] for indices [B]: the next decoded batch if it is the one asked for."""
        try:
            ready, images = next(self._ready, (None, None))
        except RuntimeError:  # a worker died (out of memory, /dev/shm full): decode here from now on
            self.close()
            ready, images = None, None
        if images is not None and torch.equal(ready, indices):
            return images
        self.late += 1
        return self.data.batch(indices)

    def close(self) -> None:
        """Stop the worker processes (explicitly: a traceback may still hold the iterator)."""
        shutdown = getattr(self._ready, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
        self._ready = iter(())


class _Decoder(Dataset):
    """What a worker process runs: one whole batch of files decoded, with its indices."""

    def __init__(self, data: FolderData):
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitems__(self, indices: Tensor) -> tuple[Tensor, Tensor | None]:
        """indices [B] and their images uint8 [B, C, S, S], or None if one cannot be decoded."""
        try:
            return indices, torch.stack([self.data.load(i) for i in indices.tolist()])
        except UserError:  # raised from a worker it would reach the run wrapped in a traceback
            return indices, None


def _as_is(batch: tuple[Tensor, Tensor | None]) -> tuple[Tensor, Tensor | None]:
    return batch
