"""Localisation and detection metrics, exact and under their plain names (spec section 2).

- :func:`pixel_f1`: F1 at a fixed threshold (0.5) of each image with a tampered pixel, averaged
  over those images (torchmetrics' binary F1, ``multidim_average="samplewise"``). Images whose
  mask is empty are excluded, never averaged in; no "double" F1 with the inverted prediction.
- :func:`pixel_auc`: torchmetrics' binary AUROC per tampered image (images whose valid pixels are
  all tampered have no negatives and are skipped), averaged.
- :func:`image_auc` (scikit-learn) and :func:`image_f1` = 2TP / (2TP + FP + FN) (recall, not
  specificity).
- :func:`f1_best_per_image`: the oracle best-threshold F1, only under that name.

``valid`` (same shape as ``mask``) marks real pixels (padding excluded); default all pixels.
"""

from __future__ import annotations

import torch
from torchmetrics.functional.classification import binary_auroc, binary_f1_score


def _as_images(name: str, tensor: torch.Tensor) -> torch.Tensor:
    tensor = torch.as_tensor(tensor)
    if tensor.dim() == 4:
        if tensor.shape[1] != 1:
            raise ValueError(f"{name} must be (N, 1, H, W) or (N, H, W), got {tuple(tensor.shape)}")
        tensor = tensor[:, 0]
    if tensor.dim() == 2:
        tensor = tensor.unsqueeze(0)
    if tensor.dim() != 3:
        raise ValueError(
            f"{name} must be (N, 1, H, W), (N, H, W) or (H, W), got {tuple(tensor.shape)}"
        )
    return tensor


def check_binary_mask(mask: torch.Tensor) -> None:
    """Refuse a mask tensor holding other values than 0 and 1 (a 0/255 mask, a soft mask),
    naming a few of them. Mask *files* are read as 0/1 by ``data.read_forgery_mask`` (0/255, 0/1
    and grey encodings); tensors are taken as they are, never rescaled or thresholded."""
    mask = torch.as_tensor(mask).detach()
    if mask.dtype == torch.bool or bool(((mask == 0) | (mask == 1)).all()):
        return  # elementwise: no sort (``unique``) unless the mask is refused
    values = mask.unique()
    other = values[(values != 0) & (values != 1)].cpu().tolist()
    shown = ", ".join(f"{v:g}" for v in other[:4]) + (", ..." if len(other) > 4 else "")
    raise ValueError(
        f"mask must be binary (0/1), got the values {shown}; divide a 0/255 mask by 255 "
        "(read_forgery_mask reads mask files as 0/1)"
    )


def _prepare(prob, mask, valid):
    prob, mask = _as_images("prob", prob).float(), _as_images("mask", mask)
    if prob.shape != mask.shape:
        raise ValueError(f"prob {tuple(prob.shape)} and mask {tuple(mask.shape)} differ in shape")
    check_binary_mask(mask)
    if prob.isnan().any():
        raise ValueError(f"prob {tuple(prob.shape)} holds NaN: a NaN map has no score")
    if prob.numel() and (prob.min() < 0 or prob.max() > 1):
        raise ValueError("prob must hold probabilities in [0, 1] (apply a sigmoid to logits)")
    valid = (
        torch.ones_like(mask, dtype=torch.bool)
        if valid is None
        else _as_images("valid", valid).bool()
    )
    if valid.shape != mask.shape:
        raise ValueError(f"valid {tuple(valid.shape)} and mask {tuple(mask.shape)} differ in shape")
    mask = mask.long() * valid
    return prob, mask, valid


def tampered_images(mask: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Boolean ``(N,)``: images with at least one tampered (valid) pixel."""
    mask = _as_images("mask", mask)
    if valid is not None:
        mask = mask * _as_images("valid", valid)
    return mask.flatten(1).amax(dim=1) > 0


def pixel_f1_per_image(prob, mask, threshold: float = 0.5, valid=None) -> torch.Tensor:
    """F1 at ``threshold`` of every image with a tampered pixel, ``(M,)``."""
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    prob, mask, valid = _prepare(prob, mask, valid)
    keep = mask.flatten(1).amax(dim=1) > 0
    if not keep.any():
        return torch.empty(0)
    pred = (prob[keep] > threshold).long() * valid[keep]  # padding counts as a true negative
    return binary_f1_score(pred, mask[keep], threshold=0.5, multidim_average="samplewise")


def pixel_f1(prob, mask, threshold: float = 0.5, valid=None) -> float:
    """Mean per-image pixel F1 at ``threshold`` over images with a tampered pixel."""
    scores = pixel_f1_per_image(prob, mask, threshold, valid)
    if scores.numel() == 0:
        raise ValueError(
            "pixel F1 needs at least one image with a tampered pixel (empty masks are excluded)"
        )
    return float(scores.mean())


def pixel_auc_per_image(prob, mask, valid=None) -> torch.Tensor:
    """Pixel AUROC of every image with both tampered and authentic valid pixels, ``(M,)``."""
    prob, mask, valid = _prepare(prob, mask, valid)
    positives = (mask * valid).flatten(1).sum(dim=1)
    negatives = ((1 - mask) * valid).flatten(1).sum(dim=1)
    rows = torch.nonzero((positives > 0) & (negatives > 0)).flatten().tolist()
    return (
        torch.stack([binary_auroc(prob[i][valid[i]], mask[i][valid[i]]) for i in rows])
        if rows
        else torch.empty(0)
    )


def pixel_auc(prob, mask, valid=None) -> float:
    """Mean per-image pixel AUROC over images with a tampered pixel."""
    scores = pixel_auc_per_image(prob, mask, valid)
    if scores.numel() == 0:
        raise ValueError("pixel AUC needs at least one image with tampered and authentic pixels")
    return float(scores.mean())


def f1_best_per_image(prob, mask, valid=None, thresholds: int = 101) -> float:
    """The oracle: each tampered image's best F1 over ``thresholds`` evenly spaced thresholds,
    averaged. An upper bound, not comparable with :func:`pixel_f1`."""
    prob, mask, valid = _prepare(prob, mask, valid)
    keep = mask.flatten(1).amax(dim=1) > 0
    if not keep.any():
        raise ValueError("best-threshold F1 needs at least one image with a tampered pixel")
    p, m, v = prob[keep].flatten(1), mask[keep].flatten(1).float(), valid[keep].flatten(1).float()
    grid = torch.linspace(0, 1, thresholds).view(-1, 1, 1)
    pred = (p.unsqueeze(0) >= grid).float() * v
    tp = (pred * m).sum(-1)
    f1 = 2 * tp / (pred.sum(-1) + m.sum(-1))
    return float(f1.amax(dim=0).mean())


def _check_binary_decisions(name: str, values: torch.Tensor) -> None:
    """Refuse ``values`` other than 0 and 1 (probabilities, 0/255), naming a few of them."""
    if values.dtype == torch.bool or bool(((values == 0) | (values == 1)).all()):
        return
    other = values[(values != 0) & (values != 1)].unique().cpu().tolist()
    shown = ", ".join(f"{v:g}" for v in other[:4]) + (", ..." if len(other) > 4 else "")
    raise ValueError(f"{name} must be 0/1 (or bool), got the values {shown}")


def image_auc(scores, labels) -> float:
    """Image-level ROC AUC (scikit-learn) of detection ``scores`` against 0/1 ``labels``."""
    from sklearn.metrics import roc_auc_score

    scores, labels = torch.as_tensor(scores).flatten(), torch.as_tensor(labels).flatten()
    if scores.shape != labels.shape:
        raise ValueError(
            f"scores {tuple(scores.shape)} and labels {tuple(labels.shape)} differ in shape"
        )
    _check_binary_decisions("labels", labels)
    if scores.isnan().any():
        raise ValueError(f"scores hold NaN ({int(scores.isnan().sum())} of {scores.numel()})")
    if labels.unique().numel() != 2:
        raise ValueError("image AUC needs both authentic (0) and tampered (1) images")
    return float(roc_auc_score(labels.numpy(), scores.float().numpy()))


def image_f1(predicted, labels) -> float:
    """Image-level F1 = 2TP / (2TP + FP + FN) of 0/1 decisions (tampered is positive); other
    values (scores, 0/255) are refused, never cast to bool."""
    predicted, labels = torch.as_tensor(predicted).flatten(), torch.as_tensor(labels).flatten()
    _check_binary_decisions("predicted", predicted)
    _check_binary_decisions("labels", labels)
    predicted, labels = predicted.bool(), labels.bool()
    if predicted.shape != labels.shape:
        raise ValueError(
            f"predicted {tuple(predicted.shape)} and labels {tuple(labels.shape)} differ in shape"
        )
    tp = (predicted & labels).sum().item()
    fp = (predicted & ~labels).sum().item()
    fn = (~predicted & labels).sum().item()
    if 2 * tp + fp + fn == 0:
        raise ValueError("image F1 is undefined without a tampered image or a positive decision")
    return 2 * tp / (2 * tp + fp + fn)
