"""First-order bilevel search (spec "Bilevel optimisation", "Performance estimation metric").

Each iteration: one architecture step (Adam on alpha and beta, on an architecture batch) then one
weight step (SGD on the supernet weights, on a weight batch). Each step computes gradients for its
own parameters only (``backward(inputs=...)``); no architecture step during warm-up; no
second-order unrolling. The performance P of the architecture is measured on the last
``perf_window`` class-balanced architecture batches.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchmetrics.functional.classification import binary_accuracy, binary_auroc

from paperzoo.core.registry import fill_preset
from paperzoo.forgerynas.ops import check_space
from paperzoo.forgerynas.supernet import CELL_TYPES, Supernet, check_partial_channels

__all__ = [
    "SearchConfig",
    "SEARCH_PRESETS",
    "PERF_METRICS",
    "scaled_schedule",
    "PerformanceWindow",
    "architecture_step",
    "weight_step",
    "arch_trace_record",
]

PERF_METRICS = ("auc", "acc", "neg_loss", "acc+auc")

SEARCH_PRESETS = {
    "tiny": dict(
        C=8, layers=5, steps=3, K=2, batch_size=32, epochs=4, warmup=1, prune_at=(2, 3), size=32
    ),
    # paper search lengths and prune schedule: lineage defaults (reconstructed, README)
    "paper": dict(
        C=16,
        layers=8,
        steps=4,
        K=4,
        batch_size=64,
        epochs=60,
        warmup=15,
        prune_at=(20, 25, 30, 35, 40, 45, 50),
        size=64,
    ),
}


@dataclass
class SearchConfig:
    """Search settings; ``None`` fields come from ``preset`` (explicit values win)."""

    preset: str = "tiny"
    space: str = "forgery"
    C: int | None = None
    layers: int | None = None
    steps: int | None = None
    K: int | None = None
    batch_size: int | None = None
    epochs: int | None = None
    warmup: int | None = None
    prune_at: tuple[int, ...] | None = None
    size: int | None = None
    batches_per_epoch: int = 0
    lambda_perf: float = 0.5
    perf_metric: str = "auc"
    perf_window: int = 4
    arch_lr: float = 6e-4
    arch_weight_decay: float = 1e-3
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 3e-4
    clip: float = 5.0
    paper_bug_compat: bool = False

    def __post_init__(self) -> None:
        fill_preset(self, SEARCH_PRESETS)
        self.prune_at = tuple(int(e) for e in self.prune_at)
        check_space(self.space)
        for name in ("C", "layers", "steps", "K", "batch_size", "epochs", "size", "perf_window"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"search option {name} must be a positive integer, got {value!r}")
        check_partial_channels(self.C, self.K)
        if self.batch_size % 2:
            raise ValueError(
                f"search option batch_size must be even (class-balanced batches), got {self.batch_size}"
            )
        if not 0 <= self.warmup < self.epochs:
            raise ValueError(
                f"search option warmup must lie in [0, epochs={self.epochs}), got {self.warmup}"
            )
        if any(not 1 <= e <= self.epochs for e in self.prune_at):
            raise ValueError(
                f"search option prune_at {list(self.prune_at)} must name epochs 1..{self.epochs}"
            )
        early = [e for e in self.prune_at if e <= self.warmup]
        if early:
            # architecture steps start after the warm-up (SearchModule.training_step): a prune
            # at or before epoch ``warmup`` would rank untrained architecture weights (random)
            raise ValueError(
                f"search option prune_at {list(self.prune_at)} names epoch(s) {early} within the "
                f"warm-up (warmup={self.warmup}: no architecture step before epoch "
                f"{self.warmup + 1}); prune only at epochs {self.warmup + 1}..{self.epochs}"
            )
        if self.batches_per_epoch < 0:
            raise ValueError(
                f"search option batches_per_epoch must be >= 0 (0: one pass), got {self.batches_per_epoch}"
            )
        if self.perf_metric not in PERF_METRICS:
            raise ValueError(
                f"unknown perf_metric {self.perf_metric!r}; choose from {', '.join(PERF_METRICS)}"
            )
        if self.size % 4 or self.size < 8:
            raise ValueError(
                f"search option size must be a multiple of 4 and >= 8, got {self.size}"
            )
        for name in ("lambda_perf", "arch_weight_decay", "weight_decay", "clip"):
            if getattr(self, name) < 0:
                raise ValueError(f"search option {name} must be >= 0, got {getattr(self, name)}")
        for name in ("arch_lr", "lr"):
            if getattr(self, name) <= 0:
                raise ValueError(
                    f"search option {name} must be positive, got {getattr(self, name)}"
                )

    def build_supernet(self, seed: int = 0) -> Supernet:
        return Supernet(
            self.C,
            self.layers,
            self.steps,
            self.K,
            self.space,
            paper_bug_compat=self.paper_bug_compat,
            seed=seed,
        )


def _round_half_up(numerator: int, denominator: int) -> int:
    return (2 * numerator + denominator) // (2 * denominator)


def scaled_schedule(preset: str, epochs: int) -> tuple[int, tuple[int, ...]]:
    """``(warmup, prune_at)`` of ``preset``'s search schedule scaled to ``epochs`` epochs (the
    CLI's ``--epochs``): every epoch ``e`` of the preset becomes ``round(e * epochs / E)``
    (``E`` the preset's epochs; half up), the warm-up kept >= 1 when the preset has one and
    below ``epochs``, every prune kept after the warm-up (merged where two coincide). At the
    preset's own length it is the preset's schedule."""
    if preset not in SEARCH_PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {', '.join(SEARCH_PRESETS)}")
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"search epochs must be a positive integer, got {epochs!r}")
    base = SEARCH_PRESETS[preset]
    total, warm = base["epochs"], base["warmup"]
    warmup = _round_half_up(warm * epochs, total)
    if warm > 0:
        warmup = max(warmup, 1)
    warmup = min(warmup, epochs - 1)
    prune_at = sorted(
        {min(max(_round_half_up(e * epochs, total), warmup + 1), epochs) for e in base["prune_at"]}
    )
    return warmup, tuple(prune_at)


class PerformanceWindow:
    """P over the last ``window`` architecture batches: ``auc`` (default), ``acc``, ``neg_loss``
    or ``acc+auc`` (their mean)."""

    def __init__(self, metric: str = "auc", window: int = 4) -> None:
        if metric not in PERF_METRICS:
            raise ValueError(
                f"unknown perf_metric {metric!r}; choose from {', '.join(PERF_METRICS)}"
            )
        self.metric = metric
        self.batches: deque = deque(maxlen=window)

    def add(self, probs: torch.Tensor, labels: torch.Tensor, loss: float) -> None:
        self.batches.append((probs.detach().float().cpu(), labels.detach().cpu(), float(loss)))

    def value(self) -> float:
        probs = torch.cat([b[0] for b in self.batches])
        labels = torch.cat([b[1] for b in self.batches])
        two = torch.unique(labels).numel() == 2
        auc = float(binary_auroc(probs, labels)) if two else 0.5
        acc = float(binary_accuracy(probs, labels))
        if self.metric == "auc":
            return auc
        if self.metric == "acc":
            return acc
        if self.metric == "neg_loss":
            return -sum(b[2] for b in self.batches) / len(self.batches)
        return (acc + auc) / 2


def _backward(loss: torch.Tensor, inputs) -> None:
    loss.backward(inputs=inputs)


def _zero(parameters) -> None:
    for p in parameters:
        p.grad = None


def architecture_step(
    supernet: Supernet,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    labels: torch.Tensor,
    backward=None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One Adam step on alpha and beta; the weights get no gradient. Returns (loss, fake prob)."""
    params = supernet.arch_parameters()
    _zero(supernet.parameters())
    logits = supernet(images)
    loss = F.cross_entropy(logits, labels)
    (backward or _backward)(loss, inputs=params)
    optimizer.step()
    _zero(params)
    # float32 probabilities for P: in bfloat16 (mixed precision) they keep three digits
    return loss.detach(), logits.detach().float().softmax(-1)[:, 1]


def weight_step(
    supernet: Supernet,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    labels: torch.Tensor,
    clip: float = 5.0,
    backward=None,
) -> torch.Tensor:
    """One SGD step on the supernet weights (gradient-norm clip); alpha and beta get no gradient."""
    params = supernet.weight_parameters()
    _zero(supernet.parameters())
    loss = F.cross_entropy(supernet(images), labels)
    (backward or _backward)(loss, inputs=params)
    if clip > 0:
        torch.nn.utils.clip_grad_norm_(params, clip)
    optimizer.step()
    _zero(params)
    return loss.detach()


def arch_trace_record(
    supernet: Supernet, importance, epoch: int, perf: float | None, pruned: list | None = None
) -> dict:
    """One epoch of the architecture trace (JSON-ready): softmax(alpha), edge weights,
    importance, masks, P and the ops pruned at this epoch."""
    with torch.no_grad():
        record = {"epoch": epoch, "perf": perf, "pruned": [list(p) for p in (pruned or [])]}
        for kind in CELL_TYPES:
            weights = supernet.arch_weights(kind)
            record[f"alpha_{kind}"] = weights.cpu().tolist()
            record[f"edges_{kind}"] = supernet.edge_weights(kind).cpu().tolist()
            record[f"mask_{kind}"] = supernet.mask(kind).cpu().int().tolist()
            record[f"importance_{kind}"] = importance.scores(kind, weights).tolist()
    return record
