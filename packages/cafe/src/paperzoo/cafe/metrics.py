"""Reconstruction metrics (paper Sec. 6): PSNR per sample, share above a threshold, label
accuracy, SSIM, relative L2, and the optimal one-to-one matching used to score DLG.

Images ``(N, C, H, W)`` are scored on their value range (``[0, 1]`` by default) as the paper
does; tabular samples ``(N, D)`` are scored after min-max scaling every feature by the true
data's range (PSNR) and by the relative L2 error, which needs no range. PSNR and accuracy are
torchmetrics'. Real data enter here only, never the attack (pitfall 1 of the spec).
"""

from __future__ import annotations

import numpy as np
import torch

PSNR_CAP_DB = 100.0


def _to_unit(x: torch.Tensor, data_range: tuple[float, float], clip: bool = True) -> torch.Tensor:
    low, high = data_range
    x = (x.detach().float() - low) / (high - low)
    return x.clamp(0, 1) if clip else x


def psnr_per_image(pred: torch.Tensor, target: torch.Tensor, data_range: float | tuple[float, float] = 1.0,
                   cap_db: float = PSNR_CAP_DB, clip: bool = True) -> torch.Tensor:
    """PSNR of every sample ``(N,)`` (torchmetrics): both mapped from ``data_range`` (a width
    from 0, or ``(low, high)``) to ``[0, 1]`` and, with ``clip``, clipped there (images);
    exact matches give ``cap_db`` rather than infinity; a sample with a NaN value scores NaN."""
    from torchmetrics.functional.image import peak_signal_noise_ratio

    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    bounds = (0.0, float(data_range)) if isinstance(data_range, int | float) else tuple(map(float, data_range))
    pred, target = _to_unit(pred, bounds, clip), _to_unit(target, bounds, clip)
    dims = tuple(range(1, pred.dim()))
    psnr = peak_signal_noise_ratio(pred, target, data_range=1.0, reduction="none", dim=dims)
    return psnr.nan_to_num(nan=float("nan"), posinf=cap_db).clamp(max=cap_db)


def tabular_psnr(pred: torch.Tensor, target: torch.Tensor, cap_db: float = PSNR_CAP_DB) -> torch.Tensor:
    """PSNR of every row ``(N,)`` of ``(N, D)`` features after min-max scaling each feature by
    the true data's minimum and maximum (constant features are left unscaled). Not clipped:
    a value recovered outside the true range is an error too."""
    target = target.detach().float()
    low = target.min(0).values
    width = target.max(0).values - low
    width = torch.where(width > 0, width, torch.ones_like(width))
    return psnr_per_image((pred.detach().float() - low) / width, (target - low) / width, cap_db=cap_db,
                          clip=False)


def relative_l2(pred: torch.Tensor, target: torch.Tensor) -> float:
    """``||pred - target||_F / ||target||_F`` over the whole set (any shape, the same for both).

    An all-zero target has no scale: the error is 0 for an all-zero ``pred`` and ``inf``
    otherwise (a clamped denominator used to give numbers near 1e30)."""
    if tuple(pred.shape) != tuple(target.shape):
        raise ValueError(f"relative_l2: pred has shape {tuple(pred.shape)}, target {tuple(target.shape)}")
    target = target.detach().double()
    error, scale = (pred.detach().double() - target).norm(), target.norm()
    if scale == 0:
        return 0.0 if error == 0 else float("inf")
    return float(error / scale)


def mean_psnr(pred: torch.Tensor, target: torch.Tensor, **kwargs) -> float:
    """Mean of per-image PSNR values (not the PSNR of the mean error)."""
    return float(psnr_per_image(pred, target, **kwargs).mean())


def share_above(psnr: torch.Tensor, threshold_db: float = 20.0) -> float:
    """Fraction of samples whose PSNR exceeds ``threshold_db``."""
    return float((psnr > threshold_db).float().mean())


def label_accuracy(predicted: torch.Tensor, labels: torch.Tensor, num_classes: int | None = None) -> float:
    """Share of right labels (torchmetrics' micro accuracy); ``predicted`` is ``(N,)`` labels or
    ``(N, classes)`` logits."""
    from torchmetrics.functional.classification import multiclass_accuracy

    predicted, labels = predicted.detach().cpu(), labels.detach().cpu().long()
    if predicted.dim() == 2:
        num_classes = num_classes or predicted.shape[1]
        predicted = predicted.argmax(dim=1)
    num_classes = num_classes or int(max(predicted.max(), labels.max())) + 1
    return float(multiclass_accuracy(predicted, labels, num_classes=num_classes, average="micro"))


def ssim(pred: torch.Tensor, target: torch.Tensor, data_range: tuple[float, float] = (0.0, 1.0)) -> float:
    """Mean SSIM (torchmetrics) on ``(N, C, H, W)`` images mapped to [0, 1]; the Gaussian window
    shrinks to fit small images (7 for 8 x 8 digits, 11 from 11 pixels up)."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    side = min(pred.shape[-2:])
    kernel = min(11, side if side % 2 else side - 1)
    kernel = max(kernel, 3)
    value = structural_similarity_index_measure(
        _to_unit(pred, data_range), _to_unit(target, data_range), data_range=1.0,
        kernel_size=kernel, sigma=1.5 * kernel / 11)
    return float(value)


def hungarian_match(pred: torch.Tensor, target: torch.Tensor,
                    data_range: tuple[float, float] = (0.0, 1.0)) -> torch.Tensor:
    """The permutation ``perm`` minimising the total MSE between ``pred[perm[i]]`` and
    ``target[i]`` (optimal one-to-one matching, scipy's ``linear_sum_assignment``). Images are
    mapped from ``data_range`` to [0, 1] and clipped there (as they are scored); other samples
    are compared as they are."""
    from scipy.optimize import linear_sum_assignment

    if len(pred) != len(target):
        raise ValueError(f"cannot match {len(pred)} reconstructions to {len(target)} targets")
    a, b = pred.detach().float().flatten(1), target.detach().float().flatten(1)
    if pred.dim() == 4:
        bounds = (float(data_range[0]), float(data_range[1]))
        a, b = _to_unit(a, bounds), _to_unit(b, bounds)
    cost = torch.cdist(b, a) ** 2  # (target, pred)
    rows, cols = linear_sum_assignment(cost.cpu().numpy())
    perm = np.empty(len(target), dtype=np.int64)
    perm[rows] = cols
    return torch.from_numpy(perm)


def reconstruction_metrics(x_hat: torch.Tensor, x_true: torch.Tensor, y_hat: torch.Tensor | None = None,
                           y_true: torch.Tensor | None = None, x_hat_parts: list[torch.Tensor] | None = None,
                           x_true_parts: list[torch.Tensor] | None = None,
                           threshold_db: float = 20.0,
                           data_range: tuple[float, float] = (0.0, 1.0)) -> dict[str, float]:
    """Metrics of a reconstruction aligned with the truth.

    Images: assembled-image PSNR on ``data_range`` (mean of per-image values, the headline),
    its median, the share above ``threshold_db``, SSIM and the per-party block PSNR. Tabular
    ``(N, D)``: the same PSNR figures on min-max-scaled features (no SSIM, no blocks). Both:
    relative L2 error, and label accuracy when labels are given."""
    image = x_true.dim() == 4
    psnr = psnr_per_image(x_hat, x_true, data_range) if image else tabular_psnr(x_hat, x_true)
    out = {
        "psnr_db": float(psnr.mean()),
        "psnr_median_db": float(psnr.median()),
        "share_above_20db": share_above(psnr, threshold_db),
        "rel_l2": relative_l2(x_hat, x_true),
    }
    if image:
        out["ssim"] = ssim(x_hat, x_true, data_range)
        if x_hat_parts is not None and x_true_parts is not None:
            blocks = torch.cat([psnr_per_image(a, b, data_range) for a, b in zip(x_hat_parts, x_true_parts)])
            out["block_psnr_db"] = float(blocks.mean())
    if y_hat is not None and y_true is not None:
        out["label_acc"] = label_accuracy(y_hat, y_true)
    return out
