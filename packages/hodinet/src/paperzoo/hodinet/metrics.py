"""Salient-object-detection metrics with PySODMetrics' definitions, in torch, torchmetrics-style.

Functional forms score a batch of same-sized maps per image; the ``Metric`` classes accumulate
over a data set (images of any size, one ``update`` per size group) and reduce like PySODMetrics:

- prediction maps are quantised to uint8 (as a saved PNG would be), divided by 255 and min-max
  normalised per image when not constant; ground truth is ``gt > 0.5`` (pitfall 6);
- S-measure (Fan et al., ICCV 2017), alpha = 0.5: object + region (four-quadrant SSIM) terms;
- F-measure with beta^2 = 0.3 over 256 thresholds ``pred >= t`` (t = 255 ... 0); the data set's
  *max F* is the maximum of the mean curve (not the mean of per-image maxima); adaptive F at
  ``min(2 mean(pred), 1)``;
- E-measure (Fan et al., IJCAI 2018) over the same 256 thresholds; max E of the mean curve and
  adaptive E;
- MAE on the normalised map.

Every computation is float64 so that scores equal PySODMetrics' on the same PNGs.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric, MetricCollection

EPS = torch.finfo(torch.float64).eps  # numpy's np.spacing(1), PySODMetrics' _EPS
BETA2 = 0.3
NUM_THRESHOLDS = 256

__all__ = ["prepare", "s_measure", "f_measure_curves", "e_measure_curves", "adaptive_f_measure",
           "adaptive_e_measure", "mae", "SMeasure", "MaxFMeasure", "MaxEMeasure", "SODMAE",
           "sod_metrics", "quantize"]


def quantize(pred: torch.Tensor) -> torch.Tensor:
    """A probability map in [0, 1] as the uint8 grey levels a PNG would store."""
    return (pred.detach().double().clamp(0, 1) * 255).round().to(torch.uint8)


def _as_batch(x: torch.Tensor, name: str) -> torch.Tensor:
    if x.dim() == 2:
        x = x[None]
    elif x.dim() == 4:
        if x.shape[1] != 1:
            raise ValueError(f"{name} must have one channel, got shape {tuple(x.shape)}")
        x = x[:, 0]
    if x.dim() != 3:
        raise ValueError(f"{name} must be (H, W), (B, H, W) or (B, 1, H, W), got {tuple(x.shape)}")
    return x


def prepare(pred: torch.Tensor, gt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(pred, gt)`` as PySODMetrics sees them: pred float64 in [0, 1], min-max normalised per
    image when not constant (uint8 input is used as is, float input is quantised first); gt bool.
    Shapes ``(B, H, W)``; prediction and ground truth must have the same size (score at the
    ground truth's resolution)."""
    pred, gt = _as_batch(pred, "pred"), _as_batch(gt, "gt")
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and ground truth {tuple(gt.shape)} differ in "
                         "shape; resize the prediction to the ground truth's size before scoring")
    levels = pred if pred.dtype == torch.uint8 else quantize(pred)
    p = levels.double() / 255.0
    low = p.amin(dim=(1, 2), keepdim=True)
    high = p.amax(dim=(1, 2), keepdim=True)
    spread = high - low
    p = torch.where(spread > 0, (p - low) / torch.where(spread > 0, spread, 1.0), p)
    gt_bool = gt > (128 if gt.dtype == torch.uint8 else 0.5)
    return p, gt_bool


def mae(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Mean absolute error per image, ``(B,)``."""
    p, g = prepare(pred, gt)
    return (p - g.double()).abs().mean(dim=(1, 2))


def _s_object(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``2 mean / (mean^2 + 1 + std + eps)`` over the masked pixels (std with ddof = 1)."""
    count = mask.sum(dim=(1, 2)).double()
    mean = (values * mask).sum(dim=(1, 2)) / count
    var = (((values - mean[:, None, None]) ** 2) * mask).sum(dim=(1, 2)) / (count - 1)
    return 2 * mean / (mean**2 + 1 + var.sqrt() + EPS)


def _ssim_regions(p: torch.Tensor, g: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """The region SSIM of S-measure for each of the ``(B, 4, H, W)`` quadrant masks, ``(B, 4)``."""
    p, g = p[:, None], g[:, None]
    n = masks.sum(dim=(2, 3)).double()
    safe_n = n.clamp_min(1)
    x = (p * masks).sum(dim=(2, 3)) / safe_n
    y = (g * masks).sum(dim=(2, 3)) / safe_n
    dp, dg = (p - x[..., None, None]) * masks, (g - y[..., None, None]) * masks
    denom = (n - 1).clamp_min(1)
    sigma_x = (dp**2).sum(dim=(2, 3)) / denom
    sigma_y = (dg**2).sum(dim=(2, 3)) / denom
    sigma_xy = (dp * dg).sum(dim=(2, 3)) / denom
    alpha = 4 * x * y * sigma_xy
    beta = (x**2 + y**2) * (sigma_x + sigma_y)
    score = torch.where(alpha != 0, alpha / (beta + EPS), torch.where(beta == 0, 1.0, 0.0))
    return torch.where(n > 0, score, 0.0)


def s_measure(pred: torch.Tensor, gt: torch.Tensor, alpha: float = 0.5) -> torch.Tensor:
    """Structure measure per image, ``(B,)`` (Fan et al. 2017; PySODMetrics' ``Smeasure``)."""
    p, g = prepare(pred, gt)
    b, h, w = p.shape
    gf = g.double()
    y_mean = gf.mean(dim=(1, 2))
    # object term
    fg = _s_object(p, gf)
    bg = _s_object(1 - p, 1 - gf)
    object_score = y_mean * fg + (1 - y_mean) * bg
    # region term: split at the (1-based, rounded) centroid of the ground truth
    rows = torch.arange(h, dtype=torch.float64)
    cols = torch.arange(w, dtype=torch.float64)
    count = gf.sum(dim=(1, 2)).clamp_min(1)
    cy = torch.round((gf.sum(dim=2) * rows).sum(dim=1) / count)
    cx = torch.round((gf.sum(dim=1) * cols).sum(dim=1) / count)
    cy = torch.where(y_mean > 0, cy, torch.round(torch.tensor(h / 2, dtype=torch.float64)))
    cx = torch.where(y_mean > 0, cx, torch.round(torch.tensor(w / 2, dtype=torch.float64)))
    x_split, y_split = cx + 1, cy + 1
    top = rows[None, :, None] < y_split[:, None, None]
    left = cols[None, None, :] < x_split[:, None, None]
    masks = torch.stack([top & left, top & ~left, ~top & left, ~top & ~left], 1).double()
    weights = masks.sum(dim=(2, 3)) / (h * w)
    region_score = (weights * _ssim_regions(p, gf, masks)).sum(dim=1)
    combined = (alpha * object_score + (1 - alpha) * region_score).clamp_min(0)
    return torch.where(y_mean == 0, 1 - p.mean(dim=(1, 2)),
                       torch.where(y_mean == 1, p.mean(dim=(1, 2)), combined))


def _threshold_counts(p: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image and threshold t = 255..0: pixels with ``pred >= t`` in the object and outside it,
    each ``(B, 256)`` (PySODMetrics' flipped cumulative histograms)."""
    levels = (p * 255).to(torch.uint8).long()  # truncation, as numpy's astype(np.uint8)
    b = levels.shape[0]
    offsets = torch.arange(b)[:, None] * NUM_THRESHOLDS
    flat = (levels.reshape(b, -1) + offsets)
    gflat = g.reshape(b, -1)
    fg_hist = torch.bincount(flat[gflat], minlength=b * NUM_THRESHOLDS).view(b, NUM_THRESHOLDS)
    bg_hist = torch.bincount(flat[~gflat], minlength=b * NUM_THRESHOLDS).view(b, NUM_THRESHOLDS)
    return fg_hist.flip(1).cumsum(1).double(), bg_hist.flip(1).cumsum(1).double()


def f_measure_curves(pred: torch.Tensor, gt: torch.Tensor, beta2: float = BETA2
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Precision, recall and F-measure at the 256 thresholds (t = 255 first), each ``(B, 256)``."""
    p, g = prepare(pred, gt)
    tp, fp = _threshold_counts(p, g)
    predicted = tp + fp
    predicted = torch.where(predicted == 0, 1.0, predicted)
    positives = g.sum(dim=(1, 2)).double().clamp_min(1)[:, None]
    precision, recall = tp / predicted, tp / positives
    numerator = (1 + beta2) * precision * recall
    denominator = torch.where(numerator == 0, 1.0, beta2 * precision + recall)
    return precision, recall, numerator / denominator


def adaptive_f_measure(pred: torch.Tensor, gt: torch.Tensor, beta2: float = BETA2) -> torch.Tensor:
    """F-measure at the adaptive threshold ``min(2 mean(pred), 1)`` per image, ``(B,)``."""
    p, g = prepare(pred, gt)
    threshold = (2 * p.mean(dim=(1, 2))).clamp_max(1)[:, None, None]
    binary = p >= threshold
    inter = (binary & g).sum(dim=(1, 2)).double()
    precision = inter / binary.sum(dim=(1, 2)).double().clamp_min(1)
    recall = inter / g.sum(dim=(1, 2)).double().clamp_min(1)
    score = (1 + beta2) * precision * recall / (beta2 * precision + recall).clamp_min(EPS)
    return torch.where(inter == 0, 0.0, score)


def _enhanced_alignment(fg_fg: torch.Tensor, fg_bg: torch.Tensor, gt_fg: torch.Tensor,
                        size: float) -> torch.Tensor:
    """E-measure from the counts of one binarisation (PySODMetrics' ``cal_em_with_*``)."""
    pred_fg = fg_fg + fg_bg
    pred_bg = size - pred_fg
    bg_fg = gt_fg - fg_fg
    bg_bg = pred_bg - bg_fg
    mean_pred, mean_gt = pred_fg / size, gt_fg / size
    parts = ((fg_fg, 1 - mean_pred, 1 - mean_gt), (fg_bg, 1 - mean_pred, -mean_gt),
             (bg_fg, -mean_pred, 1 - mean_gt), (bg_bg, -mean_pred, -mean_gt))
    total = torch.zeros_like(pred_fg)
    for numel, a, b in parts:
        align = 2 * (a * b) / (a**2 + b**2 + EPS)
        total = total + (align + 1) ** 2 / 4 * numel
    total = torch.where(gt_fg == 0, pred_bg, torch.where(gt_fg == size, pred_fg, total))
    return total / (size - 1 + EPS)


def e_measure_curves(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """E-measure at the 256 thresholds (t = 255 first), ``(B, 256)``."""
    p, g = prepare(pred, gt)
    fg_fg, fg_bg = _threshold_counts(p, g)
    gt_fg = g.sum(dim=(1, 2)).double()[:, None].expand_as(fg_fg)
    return _enhanced_alignment(fg_fg, fg_bg, gt_fg, float(g[0].numel()))


def adaptive_e_measure(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """E-measure at the adaptive threshold ``min(2 mean(pred), 1)`` per image, ``(B,)``."""
    p, g = prepare(pred, gt)
    binary = p >= (2 * p.mean(dim=(1, 2))).clamp_max(1)[:, None, None]
    fg_fg = (binary & g).sum(dim=(1, 2)).double()
    fg_bg = (binary & ~g).sum(dim=(1, 2)).double()
    return _enhanced_alignment(fg_fg, fg_bg, g.sum(dim=(1, 2)).double(), float(g[0].numel()))


class _SODMetric(Metric):
    """Accumulates per-image scores (or curves) as a sum and a count over ``update(pred, gt)``."""

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def _add(self, name: str, values: torch.Tensor) -> None:
        setattr(self, name, getattr(self, name) + values.sum(dim=0).to(getattr(self, name)))


class SMeasure(_SODMetric):
    """Mean S-measure (alpha 0.5) over the images seen."""

    def __init__(self, alpha: float = 0.5, **kwargs) -> None:
        super().__init__(**kwargs)
        self.alpha = alpha
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred: torch.Tensor, gt: torch.Tensor) -> None:
        scores = s_measure(pred.cpu(), gt.cpu(), self.alpha)
        self._add("total", scores)
        self.count += scores.numel()

    def compute(self) -> torch.Tensor:
        return self.total / self.count.clamp_min(1)


class SODMAE(_SODMetric):
    """Mean absolute error of the normalised maps over the images seen."""

    higher_is_better = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred: torch.Tensor, gt: torch.Tensor) -> None:
        scores = mae(pred.cpu(), gt.cpu())
        self._add("total", scores)
        self.count += scores.numel()

    def compute(self) -> torch.Tensor:
        return self.total / self.count.clamp_min(1)


class MaxFMeasure(_SODMetric):
    """Max of the data set's mean F-measure curve (beta^2 = 0.3); the mean precision, recall and
    F curves (``curves()``) and the mean adaptive F (``compute_all()``) are kept for plots."""

    def __init__(self, beta2: float = BETA2, **kwargs) -> None:
        super().__init__(**kwargs)
        self.beta2 = beta2
        for name in ("precision", "recall", "fmeasure"):
            self.add_state(name, default=torch.zeros(NUM_THRESHOLDS, dtype=torch.float64),
                           dist_reduce_fx="sum")
        self.add_state("adaptive", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred: torch.Tensor, gt: torch.Tensor) -> None:
        precision, recall, fm = f_measure_curves(pred.cpu(), gt.cpu(), self.beta2)
        self._add("precision", precision)
        self._add("recall", recall)
        self._add("fmeasure", fm)
        self._add("adaptive", adaptive_f_measure(pred.cpu(), gt.cpu(), self.beta2))
        self.count += fm.shape[0]

    def curves(self) -> dict[str, torch.Tensor]:
        n = self.count.clamp_min(1)
        return {"precision": self.precision / n, "recall": self.recall / n, "fmeasure": self.fmeasure / n}

    def compute_all(self) -> dict[str, torch.Tensor]:
        curve = self.fmeasure / self.count.clamp_min(1)
        return {"maxf": curve.max(), "meanf": curve.mean(), "adpf": self.adaptive / self.count.clamp_min(1)}

    def compute(self) -> torch.Tensor:
        return (self.fmeasure / self.count.clamp_min(1)).max()


class MaxEMeasure(_SODMetric):
    """Max of the data set's mean E-measure curve; the curve and the adaptive E are kept."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("emeasure", default=torch.zeros(NUM_THRESHOLDS, dtype=torch.float64),
                       dist_reduce_fx="sum")
        self.add_state("adaptive", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred: torch.Tensor, gt: torch.Tensor) -> None:
        curve = e_measure_curves(pred.cpu(), gt.cpu())
        self._add("emeasure", curve)
        self._add("adaptive", adaptive_e_measure(pred.cpu(), gt.cpu()))
        self.count += curve.shape[0]

    def curves(self) -> dict[str, torch.Tensor]:
        return {"emeasure": self.emeasure / self.count.clamp_min(1)}

    def compute_all(self) -> dict[str, torch.Tensor]:
        curve = self.emeasure / self.count.clamp_min(1)
        return {"maxe": curve.max(), "meane": curve.mean(), "adpe": self.adaptive / self.count.clamp_min(1)}

    def compute(self) -> torch.Tensor:
        return (self.emeasure / self.count.clamp_min(1)).max()


def sod_metrics(prefix: str | None = None) -> MetricCollection:
    """The four SOD metrics in one ``MetricCollection``: ``s``, ``maxf``, ``maxe``, ``mae``."""
    return MetricCollection({"s": SMeasure(), "maxf": MaxFMeasure(), "maxe": MaxEMeasure(),
                             "mae": SODMAE()}, prefix=prefix)
