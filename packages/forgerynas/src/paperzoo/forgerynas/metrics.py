"""Detection scores pooled over a split (pitfall 2): AUC, AP, accuracy, EER (torchmetrics) and
video AUC from the per-video mean probability. Fake = positive (label 1)."""

from __future__ import annotations

import torch
from torchmetrics.functional.classification import (
    binary_accuracy,
    binary_auroc,
    binary_average_precision,
    binary_roc,
)

__all__ = ["forgery_scores", "equal_error_rate", "video_auc", "video_labels", "video_scores"]


def _check(probs: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    probs, labels = (
        torch.as_tensor(probs).flatten().double(),
        torch.as_tensor(labels).flatten().long(),
    )
    if probs.numel() != labels.numel():
        raise ValueError(f"{probs.numel()} scores for {labels.numel()} labels")
    outside = ~((probs >= 0) & (probs <= 1))  # NaN included
    if outside.any():
        raise ValueError(
            f"fake probabilities must be finite and in [0, 1]; {int(outside.sum())} of "
            f"{probs.numel()} are not (e.g. {float(probs[outside][0])}): pass softmax "
            "probabilities, not logits, and no NaN"
        )
    if labels.numel() == 0 or torch.unique(labels).numel() < 2:
        raise ValueError(
            "the evaluation set holds one class only; AUC, AP and EER need reals and fakes"
        )
    if ((labels != 0) & (labels != 1)).any():
        raise ValueError("labels must be 0 (real) or 1 (fake)")
    return probs, labels


def equal_error_rate(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """The rate where the false-positive and false-negative rates meet: the crossing of the ROC
    polyline (straight segments between its points) with FNR = FPR."""
    probs, labels = _check(probs, labels)
    fpr, tpr, _ = binary_roc(probs, labels)
    fpr, fnr = fpr.double(), 1.0 - tpr.double()
    diff = fnr - fpr  # non-increasing from 1 at (0, 0) to -1 at (1, 1)
    i = int(torch.nonzero(diff <= 0)[0])
    if diff[i] == 0:
        return float(fpr[i])
    t = diff[i - 1] / (diff[i - 1] - diff[i])
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def video_labels(labels: torch.Tensor, video_ids: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``(videos, index, label per video)``; a video whose frames carry both labels is refused
    (its label, and with it the video AUC, would be undefined), naming the first such id."""
    labels = torch.as_tensor(labels).flatten().long()
    video_ids = torch.as_tensor(video_ids).flatten()
    if video_ids.numel() != labels.numel():
        raise ValueError(f"{video_ids.numel()} video ids for {labels.numel()} labels")
    videos, index = torch.unique(video_ids, return_inverse=True)
    high = torch.zeros(len(videos), dtype=torch.long).scatter_reduce_(
        0, index, labels, "amax", include_self=False
    )
    low = torch.zeros(len(videos), dtype=torch.long).scatter_reduce_(
        0, index, labels, "amin", include_self=False
    )
    mixed = torch.nonzero(high != low).flatten()
    if mixed.numel():
        raise ValueError(
            f"video id {int(videos[mixed[0]])} holds real and fake frames ({mixed.numel()} of "
            f"{len(videos)} videos do): video-level scores need one label per video; score "
            "frames (level frame) or give each video one label"
        )
    return videos, index, high


def video_scores(probs: torch.Tensor, labels: torch.Tensor, video_ids: torch.Tensor):
    """Mean probability and label per video id (every frame of a video must share its label)."""
    probs, labels = _check(probs, labels)
    videos, index, label = video_labels(labels, video_ids)
    count = torch.zeros(len(videos), dtype=probs.dtype).index_add_(0, index, torch.ones_like(probs))
    mean = torch.zeros(len(videos), dtype=probs.dtype).index_add_(0, index, probs) / count
    return mean, label


def video_auc(probs: torch.Tensor, labels: torch.Tensor, video_ids: torch.Tensor) -> float:
    mean, label = video_scores(probs, labels, video_ids)
    return float(binary_auroc(mean, label))


def forgery_scores(
    probs: torch.Tensor,
    labels: torch.Tensor,
    video_ids: torch.Tensor | None = None,
    level: str = "frame",
) -> dict[str, float]:
    """``auc``, ``ap``, ``acc`` (threshold 0.5), ``eer`` at frame level; ``level="video"`` scores
    the per-video mean probabilities instead."""
    if level not in ("frame", "video"):
        raise ValueError(f"level must be frame or video, got {level!r}")
    probs, labels = _check(probs, labels)
    if level == "video":
        if video_ids is None:
            raise ValueError("video-level scores need the video id of every frame")
        probs, labels = video_scores(probs, labels, video_ids)
        _check(probs, labels)
    return {
        "auc": float(binary_auroc(probs, labels)),
        "ap": float(binary_average_precision(probs, labels)),
        "acc": float(binary_accuracy(probs, labels)),
        "eer": equal_error_rate(probs, labels),
    }
