"""The deep-supervision loss of HODINet (spec section 1, reconstructed): every side output is
upsampled to the target size *before* the loss (pitfall 9), and each gets BCE-with-logits plus
``1 - soft IoU`` computed on sigmoid probabilities per image, weighted fine to coarse."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

SIDE_WEIGHTS = (1.0, 0.8, 0.6, 0.4)


def soft_iou_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``mean_b (1 - sum(p t) / sum(p + t - p t))`` with ``p = sigmoid(logits)``, per image."""
    prob = torch.sigmoid(logits)
    inter = (prob * target).sum(dim=(1, 2, 3))
    union = (prob + target - prob * target).sum(dim=(1, 2, 3))
    return (1.0 - inter / union.clamp_min(1e-6)).mean()


def hybrid_loss(side: Sequence[torch.Tensor], target: torch.Tensor,
                weights: Sequence[float] = SIDE_WEIGHTS) -> torch.Tensor:
    """``sum_i w_i [BCE(Up(s_i), t) + 1 - IoU(Up(s_i), t)]`` over the side logits ``side``.

    Computed in float32 whatever the logits' dtype (mixed precision: the IoU's sums over every
    pixel keep about three digits in bfloat16)."""
    if len(weights) < len(side):
        raise ValueError(f"{len(side)} side outputs but only {len(weights)} weights")
    if target.dim() != 4 or target.shape[1] != 1:
        raise ValueError(f"target must be (B, 1, H, W), got {tuple(target.shape)}")
    target = target.float()
    total = target.new_zeros(())
    for weight, logits in zip(weights, side):
        logits = logits.float()
        if logits.shape[-2:] != target.shape[-2:]:
            logits = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
        total = total + weight * (F.binary_cross_entropy_with_logits(logits, target)
                                  + soft_iou_loss(logits, target))
    return total
