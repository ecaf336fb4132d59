"""Additive angular margin softmax with a margin warm-up (section 2, "Loss")."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

COS_CLAMP = 1.0 - 1e-7


def _check_margin_scale(margin: float, scale: float) -> None:
    if not 0.0 <= margin < math.pi / 2:
        raise ValueError(f"margin must be in [0, pi/2), got {margin}")
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")


class AAMSoftmax(nn.Module):
    """ArcFace-style loss on L2-normalised embeddings and class weights.

    Target logit ``s cos(theta + m)``, others ``s cos(theta)``; cos clamped to +-(1 - 1e-7),
    ``sin = sqrt(clamp(1 - cos^2, 0))``; where ``theta + m > pi`` the target logit is
    ``s (cos(theta) - m sin(m))`` so it keeps decreasing in theta. ``margin`` is an attribute
    the :class:`MarginScheduler` updates every step. Logits are computed in float32 under mixed
    precision (see :meth:`cosine`).
    """

    def __init__(self, emb_dim: int, n_classes: int, margin: float = 0.2, scale: float = 30.0) -> None:
        super().__init__()
        if emb_dim < 1 or n_classes < 2:
            raise ValueError(f"AAMSoftmax needs emb_dim >= 1 and n_classes >= 2, got {emb_dim}, {n_classes}")
        _check_margin_scale(margin, scale)
        self.weight = nn.Parameter(torch.empty(n_classes, emb_dim))
        nn.init.xavier_normal_(self.weight)
        self.margin, self.scale = float(margin), float(scale)

    def cosine(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Cosines in float32 whatever the autocast: in bfloat16/float16 the clamp 1 - 1e-7 rounds
        to 1, so ``sin = sqrt(1 - cos^2)`` reaches 0 and its gradient turns every weight NaN
        (``--precision bf16-mixed``/``16-mixed``)."""
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            cos = F.linear(F.normalize(embeddings.float(), dim=-1), F.normalize(self.weight.float(), dim=-1))
        return cos.clamp(-COS_CLAMP, COS_CLAMP)

    def logits(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        _check_margin_scale(self.margin, self.scale)
        cos = self.cosine(embeddings)
        sin = torch.sqrt((1.0 - cos * cos).clamp(min=0.0))
        m = self.margin
        cos_margin = cos * math.cos(m) - sin * math.sin(m)
        # theta + m > pi  <=>  cos(theta) < cos(pi - m) = -cos(m)
        cos_margin = torch.where(cos > -math.cos(m), cos_margin, cos - m * math.sin(m))
        target = F.one_hot(labels, cos.shape[-1]).bool()
        return self.scale * torch.where(target, cos_margin, cos)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.logits(embeddings, labels), labels)


class MarginScheduler:
    """Margin ramped linearly from ``start_margin`` to ``margin`` between steps ``start`` and ``end``
    (tiny: the first 40 % of steps; paper: epochs 20 to 40)."""

    def __init__(self, margin: float = 0.2, start: int = 0, end: int = 0, start_margin: float = 0.0) -> None:
        _check_margin_scale(margin, 1.0)
        _check_margin_scale(start_margin, 1.0)
        if start < 0 or end < start:
            raise ValueError(f"margin ramp needs 0 <= start <= end, got start={start}, end={end}")
        self.margin, self.start, self.end, self.start_margin = margin, start, end, start_margin

    @classmethod
    def over_fraction(cls, margin: float, total_steps: int, fraction: float = 0.4) -> MarginScheduler:
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"margin warm-up fraction must be in [0, 1], got {fraction}")
        return cls(margin, 0, int(round(fraction * total_steps)))

    def __call__(self, step: int) -> float:
        if step >= self.end:
            return self.margin
        if step <= self.start:
            return self.start_margin
        t = (step - self.start) / (self.end - self.start)
        return self.start_margin + t * (self.margin - self.start_margin)
