"""Reconstruction metrics (paper Sec. 6): PSNR per image on [0, 1], share above a threshold,
label accuracy, SSIM (torchmetrics), and the optimal one-to-one matching used to score DLG.

Real data enter here only, never the attack (pitfall 1 of the spec).
"""

from __future__ import annotations

import numpy as np
import torch

PSNR_CAP_DB = 100.0


def psnr_per_image(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0,
                   cap_db: float = PSNR_CAP_DB) -> torch.Tensor:
    """PSNR of every image ``(N,)``: both clipped to ``[0, data_range]``; exact matches give
    ``cap_db`` rather than infinity."""
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    pred = pred.detach().float().clamp(0, data_range)
    target = target.detach().float().clamp(0, data_range)
    mse = ((pred - target) ** 2).flatten(1).mean(dim=1)
    psnr = 10 * torch.log10(data_range**2 / mse.clamp_min(1e-30))
    return psnr.clamp(max=cap_db)


def mean_psnr(pred: torch.Tensor, target: torch.Tensor, **kwargs) -> float:
    """Mean of per-image PSNR values (not the PSNR of the mean error)."""
    return float(psnr_per_image(pred, target, **kwargs).mean())


def share_above(psnr: torch.Tensor, threshold_db: float = 20.0) -> float:
    """Fraction of images whose PSNR exceeds ``threshold_db``."""
    return float((psnr > threshold_db).float().mean())


def label_accuracy(predicted: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of right labels; ``predicted`` is ``(N,)`` labels or ``(N, classes)`` logits."""
    if predicted.dim() == 2:
        predicted = predicted.argmax(dim=1)
    return float((predicted.cpu() == labels.cpu()).float().mean())


def ssim(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Mean SSIM (torchmetrics) on ``(N, C, H, W)`` images in [0, 1]; the Gaussian window shrinks
    to fit small images (7 for 8 x 8 digits, 11 from 11 pixels up)."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    side = min(pred.shape[-2:])
    kernel = min(11, side if side % 2 else side - 1)
    kernel = max(kernel, 3)
    value = structural_similarity_index_measure(
        pred.detach().float().clamp(0, 1), target.detach().float().clamp(0, 1), data_range=1.0,
        kernel_size=kernel, sigma=1.5 * kernel / 11)
    return float(value)


def hungarian_match(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The permutation ``perm`` minimising the total MSE between ``pred[perm[i]]`` and
    ``target[i]`` (optimal one-to-one matching, scipy's ``linear_sum_assignment``)."""
    from scipy.optimize import linear_sum_assignment

    if len(pred) != len(target):
        raise ValueError(f"cannot match {len(pred)} reconstructions to {len(target)} targets")
    a = pred.detach().float().clamp(0, 1).flatten(1)
    b = target.detach().float().clamp(0, 1).flatten(1)
    cost = torch.cdist(b, a) ** 2  # (target, pred)
    rows, cols = linear_sum_assignment(cost.cpu().numpy())
    perm = np.empty(len(target), dtype=np.int64)
    perm[rows] = cols
    return torch.from_numpy(perm)


def reconstruction_metrics(x_hat: torch.Tensor, x_true: torch.Tensor, y_hat: torch.Tensor | None = None,
                           y_true: torch.Tensor | None = None, x_hat_parts: list[torch.Tensor] | None = None,
                           x_true_parts: list[torch.Tensor] | None = None,
                           threshold_db: float = 20.0) -> dict[str, float]:
    """Metrics of a reconstruction aligned with the truth: assembled-image PSNR (mean of per-image
    values, the headline), share above ``threshold_db``, SSIM, the per-party block PSNR, and label
    accuracy when labels are given."""
    psnr = psnr_per_image(x_hat, x_true)
    out = {
        "psnr_db": float(psnr.mean()),
        "psnr_median_db": float(psnr.median()),
        "share_above_20db": share_above(psnr, threshold_db),
        "ssim": ssim(x_hat, x_true),
    }
    if x_hat_parts is not None and x_true_parts is not None:
        blocks = torch.cat([psnr_per_image(a, b) for a, b in zip(x_hat_parts, x_true_parts)])
        out["block_psnr_db"] = float(blocks.mean())
    if y_hat is not None and y_true is not None:
        out["label_acc"] = label_accuracy(y_hat, y_true)
    return out
