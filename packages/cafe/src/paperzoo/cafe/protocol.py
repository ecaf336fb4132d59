"""The vertical federated learning protocol CAFE attacks (paper Sec. 3.1, Algorithm 1 "VFL").

The server draws the batch indices ``s(t)`` and broadcasts them; each party runs its local model
on its own block of those samples; the server computes the **batch-mean** loss with its labels;
every party uploads its parameter gradients (optionally through a defence); the server updates
the model with ``fl_lr`` and broadcasts it. What the honest-but-curious server sees each round is
an :class:`ObservedRound`: the model, the indices and the aggregated gradients, never raw
features, party activations or per-sample gradients (Sec. 3.2).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from paperzoo.cafe.config import SCHEDULES
from paperzoo.cafe.data import check_channels_first
from paperzoo.core.data import VerticalPartition

GradDict = dict[str, torch.Tensor]
Defense = Callable[[GradDict], GradDict]


@dataclass(frozen=True)
class ObservedRound:
    """Everything the server (the attacker) receives in round ``t``.

    Attributes:
        t: round number.
        batch_idx: the sample IDs ``s(t)`` the server chose, ``(K,)``.
        party_grads: per party, the uploaded gradients of its local model (after any defence),
            keyed by the party module's parameter names.
        server_grads: gradients of the server head (the server computes these itself).
        model_state: the full model's parameters used in this round (before the update).
    """

    t: int
    batch_idx: torch.Tensor
    party_grads: tuple[GradDict, ...]
    server_grads: GradDict
    model_state: GradDict

    def tensors(self) -> Iterator[torch.Tensor]:
        """Every tensor the round carries (for audits such as the no-raw-data test)."""
        yield self.batch_idx
        for grads in self.party_grads:
            yield from grads.values()
        yield from self.server_grads.values()
        yield from self.model_state.values()


def image_partition(num_parties: int, image_shape: Sequence[int], scheme: str = "auto") -> VerticalPartition:
    """A partition of ``(C, H, W)`` images into equal blocks, one per party.

    ``scheme="auto"`` uses quadrants for 4 parties (the paper's setting) and vertical strips
    otherwise. Every party runs the same local architecture, so the blocks must tile the image
    exactly; anything else raises ``ValueError`` naming the sizes.
    """
    if len(image_shape) != 3:
        raise ValueError(f"image_shape must be (C, H, W), got {tuple(image_shape)}")
    check_channels_first(tuple(image_shape), "the images")
    _, height, width = (int(s) for s in image_shape)
    if num_parties < 1:
        raise ValueError(f"need at least one party, got {num_parties}")
    if scheme == "auto":
        scheme = "quadrants" if num_parties == 4 else "columns"
    if scheme == "quadrants":
        if num_parties != 4 or height % 2 or width % 2:
            raise ValueError(f"quadrants need 4 parties and an even-sided image; got {num_parties} "
                             f"parties on {height} x {width}")
    elif scheme == "columns":
        if width % num_parties:
            raise ValueError(f"{num_parties} parties do not tile an image of width {width} into "
                             "equal vertical strips; choose a party count that divides the width")
    elif scheme == "rows":
        if height % num_parties:
            raise ValueError(f"{num_parties} parties do not tile an image of height {height} into "
                             "equal horizontal strips; choose a party count that divides the height")
    else:
        raise ValueError(f"unknown image partition scheme {scheme!r}; choose auto, quadrants, columns or rows")
    return VerticalPartition(num_parties, scheme)


def sample_partition(num_parties: int, sample_shape: Sequence[int]) -> VerticalPartition:
    """The partition of one sample's features: :func:`image_partition` for ``(C, H, W)``
    images, near-equal contiguous column blocks for flat ``(D,)`` tabular features."""
    if len(sample_shape) == 3:
        return image_partition(num_parties, sample_shape)
    if len(sample_shape) != 1:
        raise ValueError(f"samples must be images (C, H, W) or flat features (D,), got shape {tuple(sample_shape)}")
    if not 1 <= num_parties <= int(sample_shape[0]):
        raise ValueError(f"{num_parties} parties cannot share {sample_shape[0]} feature columns")
    return VerticalPartition(num_parties, "contiguous")


def part_shapes(partition: VerticalPartition, image_shape: Sequence[int]) -> list[tuple[int, ...]]:
    """``(C, h, w)`` of every party's block."""
    probe = torch.zeros(1, *image_shape)
    return [tuple(part.shape[1:]) for part in partition.split(probe)]


class VerticalFL:
    """Run VFL training rounds over a dataset split among parties and record what the server sees.

    Args:
        model: the VFL model (parties + server head); updated in place when ``fl_lr > 0``.
        partition: how each sample is split among the parties.
        images: ``(N, C, H, W)`` images or ``(N, D)`` tabular training data (held by the
            parties, block by block).
        labels: ``(N,)`` class labels (held by the server).
        batch_size: ``K``, samples per round; must not exceed ``N``.
        fl_lr: SGD learning rate of the federated model; ``0`` freezes it.
        defense: applied to every party's gradient upload (fake gradients, noise, pruning...);
            training then uses the defended gradients.
        schedule: ``"shuffle"`` (a fresh permutation each epoch, cut into batches; every sample
            is drawn) or ``"random"`` (independent draws of ``K`` IDs each round, as the
            official driver).
        seed: seeds the batch schedule.
    """

    def __init__(
        self,
        model: nn.Module,
        partition: VerticalPartition,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        fl_lr: float = 0.0,
        defense: Defense | None = None,
        schedule: str = "shuffle",
        seed: int = 0,
    ) -> None:
        if images.dim() not in (2, 4):
            raise ValueError(f"data must be (N, C, H, W) images or (N, D) features, got shape {tuple(images.shape)}")
        if len(labels) != len(images):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        if not 1 <= batch_size <= len(images):
            raise ValueError(f"batch size {batch_size} must be between 1 and the number of "
                             f"samples N = {len(images)}")
        if fl_lr < 0:
            raise ValueError(f"fl_lr must be >= 0, got {fl_lr}")
        if schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {schedule!r}; choose from {', '.join(SCHEDULES)}")
        if partition.num_parties != model.num_parties:
            raise ValueError(f"partition has {partition.num_parties} parties, model {model.num_parties}")
        self.model = model
        self.partition = partition
        self.party_data = [part.contiguous() for part in partition.split(images)]
        for m, (part, party) in enumerate(zip(self.party_data, model.parties)):
            if tuple(part.shape[1:]) != party.part_shape:
                raise ValueError(f"party {m} holds blocks of shape {tuple(part.shape[1:])} but its "
                                 f"model expects {party.part_shape}")
        self.labels = labels.long()
        self.n_samples = len(images)
        self.batch_size = batch_size
        self.fl_lr = float(fl_lr)
        self.defense = defense
        self.schedule = schedule
        self.generator = torch.Generator().manual_seed(int(seed))
        self.t = 0
        self._queue: list[torch.Tensor] = []
        self._frozen_state: dict[str, torch.Tensor] | None = None

    def next_batch(self) -> torch.Tensor:
        """The sample IDs of the next round."""
        if self.schedule == "random":
            return torch.randperm(self.n_samples, generator=self.generator)[: self.batch_size]
        if not self._queue:
            order = torch.randperm(self.n_samples, generator=self.generator)
            # batches of exactly K: a tail shorter than K is dropped this epoch, so every
            # upload carries the same 1/K factor the closed form assumes
            keep = self.n_samples - self.n_samples % self.batch_size
            self._queue = list(order[:keep].split(self.batch_size))
        return self._queue.pop(0)

    def _state(self) -> dict[str, torch.Tensor]:
        if self.fl_lr == 0 and self._frozen_state is not None:
            return self._frozen_state  # frozen model: one immutable snapshot serves every round
        state = {k: v.detach().clone() for k, v in self.model.named_parameters()}
        if self.fl_lr == 0:
            self._frozen_state = state
        return state

    def round(self) -> ObservedRound:
        """One training round; returns what the server observes."""
        idx = self.next_batch()
        parts = [data[idx] for data in self.party_data]
        params = dict(self.model.named_parameters())
        state = self._state()
        logits = self.model(parts)
        loss = F.cross_entropy(logits, self.labels[idx])  # batch mean (paper eq. 1)
        grads = dict(zip(params, torch.autograd.grad(loss, list(params.values()))))
        party_grads = []
        for m in range(self.model.num_parties):
            upload = {name: grads[f"parties.{m}.{name}"] for name, _ in self.model.parties[m].named_parameters()}
            if self.defense is not None:
                upload = self.defense(upload)
            party_grads.append({k: v.detach() for k, v in upload.items()})
        server_grads = {name: grads[f"head.{name}"].detach() for name, _ in self.model.head.named_parameters()}
        if self.fl_lr > 0:
            with torch.no_grad():
                for m, upload in enumerate(party_grads):
                    for name, grad in upload.items():
                        params[f"parties.{m}.{name}"].sub_(self.fl_lr * grad)
                for name, grad in server_grads.items():
                    params[f"head.{name}"].sub_(self.fl_lr * grad)
        observed = ObservedRound(self.t, idx.clone(), tuple(party_grads), server_grads, state)
        self.t += 1
        return observed

    def rounds(self, n_rounds: int) -> Iterator[ObservedRound]:
        """``n_rounds`` successive rounds, generated lazily."""
        for _ in range(n_rounds):
            yield self.round()
