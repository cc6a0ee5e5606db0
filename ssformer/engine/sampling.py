"""Deterministic, resumable sample order for iteration-based training.

The global sample stream is an endless sequence of epochs, each a seeded permutation of the
dataset; sample ``n`` of the stream carries its own augmentation seed. Position ``n`` is a plain
integer, so a resumed run continues with exactly the samples (and augmentations) the interrupted run
would have used, whatever the number of data-loading workers. In distributed training every
global batch of ``batch_size * world_size`` consecutive samples is split into contiguous per-rank
slices, so the global batch is the same as a single process with the whole batch.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Dataset

from ssformer.errors import UserError


def epoch_order(num_samples: int, seed: int, epoch: int) -> list[int]:
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(num_samples, generator=g).tolist()


def sample_seed(seed: int, position: int) -> int:
    """An augmentation seed for stream position ``position`` (independent of workers and ranks)."""
    return (seed * 0x9E3779B1 + position * 0x85EBCA77 + 1) % (2 ** 63)


class StreamBatchSampler:
    """Yields lists of ``(dataset index, augmentation seed)`` for this rank, forever."""

    def __init__(self, num_samples: int, batch_size: int, seed: int = 0, start: int = 0,
                 rank: int = 0, world_size: int = 1):
        if num_samples < 1:
            raise UserError("the training dataset is empty")
        self.num_samples, self.batch_size, self.seed = num_samples, batch_size, seed
        self.position = start  # global stream position of the next global batch
        self.rank, self.world_size = rank, world_size

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch, order = -1, []
        while True:
            global_batch = []
            for k in range(self.batch_size * self.world_size):
                n = self.position + k
                e, i = divmod(n, self.num_samples)
                if e != epoch:
                    epoch, order = e, epoch_order(self.num_samples, self.seed, e)
                global_batch.append((order[i], sample_seed(self.seed, n)))
            self.position += self.batch_size * self.world_size
            lo = self.rank * self.batch_size
            yield global_batch[lo:lo + self.batch_size]


class ConcatSeeded(Dataset):
    """Concatenation of datasets that accept ``dataset[(index, seed)]`` (plain ints also work)."""

    def __init__(self, datasets: list):
        self.datasets = list(datasets)
        self.offsets = []
        total = 0
        for d in self.datasets:
            self.offsets.append(total)
            total += len(d)
        self.total = total

    def __len__(self) -> int:
        return self.total

    def __getitem__(self, item):
        index, seed = item if isinstance(item, (tuple, list)) else (item, None)
        for d, offset in zip(reversed(self.datasets), reversed(self.offsets)):
            if index >= offset:
                local = index - offset
                return d[(local, seed)] if seed is not None else d[local]
        raise IndexError(index)
