"""A LightningDataModule over in-memory tensors with seeded, reproducible splits."""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
import torch
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    DistributedSampler,
    RandomSampler,
    SequentialSampler,
    TensorDataset,
)

from paperzoo.core.data.splits import split_indices


class RankShareOfBatches(DistributedSampler):
    """The batches of ``batches``; under DDP, rank ``r`` of ``w`` takes ``batch[r::w]`` of each.

    Every rank draws the same global batches (one seed), so ``w`` processes together step through
    exactly the batches one process would: ``batch_size`` stays the global batch, the step count
    does not shrink with the number of devices, and DDP's gradient average equals the one-process
    gradient whenever each batch splits evenly. The rank and world size are read when iteration
    starts (Lightning has set up the process group by then) unless given; with one process the
    batches pass unchanged. Being a ``DistributedSampler``, it is left alone by Lightning's sampler
    injection when it is a loader's ``sampler``; as a ``batch_sampler``, pass the trainer
    ``use_distributed_sampler=False``. A batch smaller than the world (only the last one can be)
    repeats its last sample on the ranks it does not reach, so every rank takes the same number
    of steps; in evaluation that sample counts more than once.
    """

    def __init__(self, batches: BatchSampler, num_replicas: int | None = None, rank: int | None = None) -> None:  # noqa: D107
        self.batches, self.num_replicas, self.rank, self.epoch = batches, num_replicas, rank, 0

    def _placement(self) -> tuple[int, int]:
        if self.num_replicas is not None and self.rank is not None:
            return self.rank, self.num_replicas
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1

    def __iter__(self):
        rank, world = self._placement()
        for batch in self.batches:
            share = batch[rank::world]
            yield share if share else batch[-1:]

    def __len__(self) -> int:
        return len(self.batches)


class TensorDataModule(L.LightningDataModule):
    """Train/val/test loaders over ``(x, y)`` tensors.

    The split is drawn once from ``seed`` (stratified by ``y`` when ``stratify``) and training
    batches are shuffled by a generator seeded with the same ``seed``, so two runs with one seed
    see identical batches in identical order. Loaders gather a whole batch with one tensor index
    instead of collating one sample at a time. Under DDP each rank takes its share of every
    global batch (see :class:`RankShareOfBatches`), so ``batch_size`` stays the global batch.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        fractions: Sequence[float] = (0.6, 0.2, 0.2),
        batch_size: int = 64,
        seed: int = 0,
        stratify: bool = True,
        num_workers: int = 0,
        eval_batch_size: int | None = None,
    ) -> None:
        super().__init__()
        if len(x) != len(y):
            raise ValueError(f"x and y differ in length: {len(x)} != {len(y)}")
        if len(fractions) != 3:
            raise ValueError(f"fractions must be (train, val, test), got {tuple(fractions)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.x, self.y = x, y
        self.fractions = tuple(float(f) for f in fractions)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or max(batch_size, 256)
        self.seed = seed
        self.num_workers = num_workers
        labels = y.numpy() if stratify else None
        self.train_idx, self.val_idx, self.test_idx = (
            torch.from_numpy(part) for part in split_indices(len(x), self.fractions, seed, labels)
        )

    def _subset(self, idx: torch.Tensor) -> TensorDataset:
        return TensorDataset(self.x[idx], self.y[idx])

    @property
    def train_set(self) -> TensorDataset:
        return self._subset(self.train_idx)

    @property
    def val_set(self) -> TensorDataset:
        return self._subset(self.val_idx)

    @property
    def test_set(self) -> TensorDataset:
        return self._subset(self.test_idx)

    def _loader(self, dataset: TensorDataset, batch_size: int, shuffle: bool) -> DataLoader:
        if shuffle:
            sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(self.seed))
        else:
            sampler = SequentialSampler(dataset)
        batches = RankShareOfBatches(BatchSampler(sampler, batch_size=batch_size, drop_last=False))
        return DataLoader(dataset, batch_size=None, sampler=batches, num_workers=self.num_workers)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, self.eval_batch_size, shuffle=False)
