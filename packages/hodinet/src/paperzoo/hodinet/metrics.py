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
- MAE on the normalised map;
- degenerate cases: a one-pixel object (or background) has std 0, as in PySODMetrics 1.6.2; an
  empty quadrant of the region term (object centroid in the last row or column) weighs 0 where
  PySODMetrics gives NaN; a NaN map is refused; a data set of no image scores NaN.

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
           "sod_metrics", "SODMetrics", "SODBatch", "quantize"]


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
    ground truth's resolution). NaN in either map is refused."""
    pred, gt = _as_batch(pred, "pred"), _as_batch(gt, "gt")
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and ground truth {tuple(gt.shape)} differ in "
                         "shape; resize the prediction to the ground truth's size before scoring")
    for name, x in (("prediction", pred), ("ground truth", gt)):
        if x.is_floating_point() and bool(x.isnan().any()):
            images = x.isnan().flatten(1).any(dim=1).nonzero().flatten().tolist()
            raise ValueError(f"{name} {tuple(x.shape)} holds NaN (image(s) {images[:5]} of the batch); "
                             "a NaN map has no score")
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
    return _mae(*prepare(pred, gt))


def _mae(p: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    return (p - g.double()).abs().mean(dim=(1, 2))


def _s_object(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``2 mean / (mean^2 + 1 + std + eps)`` over the masked pixels (std with ddof = 1; 0 for a
    one-pixel region, as PySODMetrics 1.6.2)."""
    count = mask.sum(dim=(1, 2)).double()
    mean = (values * mask).sum(dim=(1, 2)) / count
    var = (((values - mean[:, None, None]) ** 2) * mask).sum(dim=(1, 2)) / (count - 1).clamp_min(1)
    return 2 * mean / (mean**2 + 1 + var.sqrt() + EPS)


def _region_score(p: torch.Tensor, g: torch.Tensor, x_split: torch.Tensor,
                  y_split: torch.Tensor) -> torch.Tensor:
    """The region term of S-measure, ``(B,)``: the SSIM of each of the four quadrants (image ``i``
    split before row ``y_split[i]`` and column ``x_split[i]``, PySODMetrics' ``divide_with_xy``),
    weighted by its share of the pixels. The quadrants are slices, so each pixel is visited once."""
    b, h, w = p.shape
    if b == 0:
        return p.new_zeros(0)
    pg = torch.stack([p, g], dim=1)  # (B, 2, H, W): one slice per quadrant serves both maps
    zeros = torch.zeros(2, dtype=torch.float64, device=p.device)
    counts, means, squares, cross = [], [], [], []
    for i, (xs, ys) in enumerate(zip(x_split.long().tolist(), y_split.long().tolist())):
        for rows in (slice(0, ys), slice(ys, h)):
            for cols in (slice(0, xs), slice(xs, w)):
                q = pg[i, :, rows, cols]
                n = q.shape[1] * q.shape[2]
                counts.append(n)
                if n == 0:  # an empty quadrant: weight 0, score 0
                    means.append(zeros)
                    squares.append(zeros)
                    cross.append(zeros[0])
                    continue
                mean = q.sum(dim=(1, 2)) / n
                d = q - mean[:, None, None]
                means.append(mean)
                squares.append((d * d).sum(dim=(1, 2)))
                cross.append((d[0] * d[1]).sum())
    n = torch.tensor(counts, dtype=torch.float64, device=p.device).view(b, 4)
    x, y = torch.stack(means).view(b, 4, 2).unbind(-1)
    sigma_x, sigma_y = torch.stack(squares).view(b, 4, 2).unbind(-1)
    denom = (n - 1).clamp_min(1)
    sigma_x, sigma_y = sigma_x / denom, sigma_y / denom
    sigma_xy = torch.stack(cross).view(b, 4) / denom
    alpha = 4 * x * y * sigma_xy
    beta = (x**2 + y**2) * (sigma_x + sigma_y)
    score = torch.where(alpha != 0, alpha / (beta + EPS), torch.where(beta == 0, 1.0, 0.0))
    score = torch.where(n > 0, score, 0.0)
    return (n / (h * w) * score).sum(dim=1)


def s_measure(pred: torch.Tensor, gt: torch.Tensor, alpha: float = 0.5) -> torch.Tensor:
    """Structure measure per image, ``(B,)`` (Fan et al. 2017; PySODMetrics' ``Smeasure``)."""
    return _s_measure(*prepare(pred, gt), alpha)


def _s_measure(p: torch.Tensor, g: torch.Tensor, alpha: float) -> torch.Tensor:
    """:func:`s_measure` of prepared maps."""
    b, h, w = p.shape
    gf = g.double()
    y_mean = gf.mean(dim=(1, 2))
    # object term
    fg = _s_object(p, gf)
    bg = _s_object(1 - p, 1 - gf)
    object_score = y_mean * fg + (1 - y_mean) * bg
    # region term: split at the (1-based, rounded) centroid of the ground truth
    rows = torch.arange(h, dtype=torch.float64, device=p.device)
    cols = torch.arange(w, dtype=torch.float64, device=p.device)
    count = gf.sum(dim=(1, 2)).clamp_min(1)
    cy = torch.round((gf.sum(dim=2) * rows).sum(dim=1) / count)
    cx = torch.round((gf.sum(dim=1) * cols).sum(dim=1) / count)
    centre = torch.round(torch.tensor((h / 2, w / 2), dtype=torch.float64, device=p.device))
    cy = torch.where(y_mean > 0, cy, centre[0])
    cx = torch.where(y_mean > 0, cx, centre[1])
    region_score = _region_score(p, gf, cx + 1, cy + 1)
    combined = (alpha * object_score + (1 - alpha) * region_score).clamp_min(0)
    return torch.where(y_mean == 0, 1 - p.mean(dim=(1, 2)),
                       torch.where(y_mean == 1, p.mean(dim=(1, 2)), combined))


def _threshold_counts(p: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image and threshold t = 255..0: pixels with ``pred >= t`` in the object and outside it,
    each ``(B, 256)`` (PySODMetrics' flipped cumulative histograms)."""
    levels = (p * 255).to(torch.uint8).long()  # truncation, as numpy's astype(np.uint8)
    b = levels.shape[0]
    # one histogram of (image, in object, level): bins b * 512 + object * 256 + level
    offsets = torch.arange(b, device=p.device)[:, None] * (2 * NUM_THRESHOLDS)
    flat = levels.flatten(1) + g.flatten(1) * NUM_THRESHOLDS + offsets
    hist = torch.bincount(flat.reshape(-1), minlength=b * 2 * NUM_THRESHOLDS).view(b, 2, NUM_THRESHOLDS)
    counts = hist.flip(2).cumsum(2).double()
    return counts[:, 1], counts[:, 0]


def _f_curves(tp: torch.Tensor, fp: torch.Tensor, positives: torch.Tensor, beta2: float
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`f_measure_curves` from the threshold counts and the object sizes ``(B,)``."""
    predicted = tp + fp
    predicted = torch.where(predicted == 0, 1.0, predicted)
    precision, recall = tp / predicted, tp / positives.clamp_min(1)[:, None]
    numerator = (1 + beta2) * precision * recall
    denominator = torch.where(numerator == 0, 1.0, beta2 * precision + recall)
    return precision, recall, numerator / denominator


def f_measure_curves(pred: torch.Tensor, gt: torch.Tensor, beta2: float = BETA2
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Precision, recall and F-measure at the 256 thresholds (t = 255 first), each ``(B, 256)``."""
    p, g = prepare(pred, gt)
    return _f_curves(*_threshold_counts(p, g), g.sum(dim=(1, 2)).double(), beta2)


def _adaptive_counts(p: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixels at or above the adaptive threshold ``min(2 mean(pred), 1)`` inside the object and
    in all, each ``(B,)``."""
    binary = p >= (2 * p.mean(dim=(1, 2))).clamp_max(1)[:, None, None]
    return (binary & g).sum(dim=(1, 2)).double(), binary.sum(dim=(1, 2)).double()


def _adaptive_f(inter: torch.Tensor, selected: torch.Tensor, positives: torch.Tensor,
                beta2: float) -> torch.Tensor:
    precision = inter / selected.clamp_min(1)
    recall = inter / positives.clamp_min(1)
    score = (1 + beta2) * precision * recall / (beta2 * precision + recall).clamp_min(EPS)
    return torch.where(inter == 0, 0.0, score)


def adaptive_f_measure(pred: torch.Tensor, gt: torch.Tensor, beta2: float = BETA2) -> torch.Tensor:
    """F-measure at the adaptive threshold ``min(2 mean(pred), 1)`` per image, ``(B,)``."""
    p, g = prepare(pred, gt)
    return _adaptive_f(*_adaptive_counts(p, g), g.sum(dim=(1, 2)).double(), beta2)


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
    inter, selected = _adaptive_counts(p, g)
    return _enhanced_alignment(inter, selected - inter, g.sum(dim=(1, 2)).double(), float(g[0].numel()))


class SODBatch:
    """A batch of maps prepared once for any number of SOD metrics.

    ``p`` and ``g`` are :func:`prepare`'s output (on the CPU). The per-image scores and curves the
    metrics take from them are computed on first use and kept: every metric (and collection)
    updated with the same batch shares one preparation, one set of threshold counts (F and E
    curves) and one S-measure pass. ``sod_metrics().update(pred, gt)`` makes one per update;
    make one yourself to feed several collections, e.g. per-group and overall scores::

        batch = SODBatch(pred, gt)
        group_metrics.update(batch)
        overall_metrics.update(batch)
    """

    def __init__(self, pred: torch.Tensor, gt: torch.Tensor) -> None:
        self.p, self.g = prepare(pred.detach().cpu(), gt.detach().cpu())
        self._memo: dict = {}

    def __len__(self) -> int:
        return self.p.shape[0]

    def _get(self, key, compute):
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def positives(self) -> torch.Tensor:
        """Object pixels per image, ``(B,)`` float64."""
        return self._get("positives", lambda: self.g.sum(dim=(1, 2)).double())

    def threshold_counts(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self._get("counts", lambda: _threshold_counts(self.p, self.g))

    def adaptive_counts(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self._get("adaptive", lambda: _adaptive_counts(self.p, self.g))

    def s_measure(self, alpha: float = 0.5) -> torch.Tensor:
        return self._get(("s", alpha), lambda: _s_measure(self.p, self.g, alpha))

    def mae(self) -> torch.Tensor:
        return self._get("mae", lambda: _mae(self.p, self.g))

    def f_measure_curves(self, beta2: float = BETA2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self._get(("f", beta2), lambda: _f_curves(*self.threshold_counts(), self.positives(), beta2))

    def adaptive_f_measure(self, beta2: float = BETA2) -> torch.Tensor:
        return self._get(("adpf", beta2), lambda: _adaptive_f(*self.adaptive_counts(), self.positives(), beta2))

    def e_measure_curves(self) -> torch.Tensor:
        def compute():
            fg_fg, fg_bg = self.threshold_counts()
            size = float(self.p.shape[1] * self.p.shape[2])
            return _enhanced_alignment(fg_fg, fg_bg, self.positives()[:, None].expand_as(fg_fg), size)
        return self._get("e", compute)

    def adaptive_e_measure(self) -> torch.Tensor:
        def compute():
            inter, selected = self.adaptive_counts()
            size = float(self.p.shape[1] * self.p.shape[2])
            return _enhanced_alignment(inter, selected - inter, self.positives(), size)
        return self._get("adpe", compute)


def _as_sod_batch(pred: torch.Tensor | SODBatch, gt: torch.Tensor | None) -> SODBatch:
    if isinstance(pred, SODBatch):
        if gt is not None:
            raise ValueError("update takes (pred, gt) or one SODBatch, not both")
        return pred
    if gt is None:
        raise TypeError("update needs the ground truth: update(pred, gt) or update(SODBatch(pred, gt))")
    return SODBatch(pred, gt)


class _SODMetric(Metric):
    """Accumulates per-image scores (or curves) as a sum and a count over ``update(pred, gt)``
    (or ``update(batch)`` with an :class:`SODBatch` shared with other metrics)."""

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def _mean(self, total: torch.Tensor) -> torch.Tensor:
        """``total`` over the images seen; NaN before any image (a mean over no image)."""
        if int(self.count) == 0:
            return torch.full_like(total, float("nan"))
        return total / self.count

    def _add(self, name: str, values: torch.Tensor) -> None:
        setattr(self, name, getattr(self, name) + values.sum(dim=0).to(getattr(self, name)))

    def update(self, pred: torch.Tensor | SODBatch, gt: torch.Tensor | None = None) -> None:
        batch = _as_sod_batch(pred, gt)
        self._update_batch(batch)
        self.count += len(batch)

    def _update_batch(self, batch: SODBatch) -> None:
        raise NotImplementedError


class SMeasure(_SODMetric):
    """Mean S-measure (alpha 0.5) over the images seen."""

    def __init__(self, alpha: float = 0.5, **kwargs) -> None:
        super().__init__(**kwargs)
        self.alpha = alpha
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def _update_batch(self, batch: SODBatch) -> None:
        self._add("total", batch.s_measure(self.alpha))

    def compute(self) -> torch.Tensor:
        return self._mean(self.total)


class SODMAE(_SODMetric):
    """Mean absolute error of the normalised maps over the images seen."""

    higher_is_better = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def _update_batch(self, batch: SODBatch) -> None:
        self._add("total", batch.mae())

    def compute(self) -> torch.Tensor:
        return self._mean(self.total)


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

    def _update_batch(self, batch: SODBatch) -> None:
        precision, recall, fm = batch.f_measure_curves(self.beta2)
        self._add("precision", precision)
        self._add("recall", recall)
        self._add("fmeasure", fm)
        self._add("adaptive", batch.adaptive_f_measure(self.beta2))

    def curves(self) -> dict[str, torch.Tensor]:
        return {"precision": self._mean(self.precision), "recall": self._mean(self.recall),
                "fmeasure": self._mean(self.fmeasure)}

    def compute_all(self) -> dict[str, torch.Tensor]:
        curve = self._mean(self.fmeasure)
        return {"maxf": curve.max(), "meanf": curve.mean(), "adpf": self._mean(self.adaptive)}

    def compute(self) -> torch.Tensor:
        return self._mean(self.fmeasure).max()


class MaxEMeasure(_SODMetric):
    """Max of the data set's mean E-measure curve; the curve and the adaptive E are kept."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("emeasure", default=torch.zeros(NUM_THRESHOLDS, dtype=torch.float64),
                       dist_reduce_fx="sum")
        self.add_state("adaptive", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def _update_batch(self, batch: SODBatch) -> None:
        self._add("emeasure", batch.e_measure_curves())
        self._add("adaptive", batch.adaptive_e_measure())

    def curves(self) -> dict[str, torch.Tensor]:
        return {"emeasure": self._mean(self.emeasure)}

    def compute_all(self) -> dict[str, torch.Tensor]:
        curve = self._mean(self.emeasure)
        return {"maxe": curve.max(), "meane": curve.mean(), "adpe": self._mean(self.adaptive)}

    def compute(self) -> torch.Tensor:
        return self._mean(self.emeasure).max()


class SODMetrics(MetricCollection):
    """:func:`sod_metrics`' collection: ``update(pred, gt)`` prepares the maps once
    (:class:`SODBatch`) and feeds that batch to every member, which share its threshold counts;
    ``update(batch)`` takes a batch already made (shared with another collection).

    torchmetrics' compute groups are off: :class:`SMeasure` and :class:`SODMAE` have states of
    the same names and shapes, which compute groups would merge whenever their values happened
    to be close after the first update."""

    def __init__(self, metrics, *additional_metrics, **kwargs) -> None:
        kwargs.setdefault("compute_groups", False)
        super().__init__(metrics, *additional_metrics, **kwargs)

    def update(self, pred: torch.Tensor | SODBatch, gt: torch.Tensor | None = None) -> None:
        batch = _as_sod_batch(pred, gt)
        for metric in self.values(copy_state=False):
            if isinstance(metric, _SODMetric):
                metric.update(batch)
            else:  # any other metric added to the collection gets the maps as given
                metric.update(*((batch.p, batch.g) if gt is None else (pred, gt)))


def sod_metrics(prefix: str | None = None) -> SODMetrics:
    """The four SOD metrics in one ``MetricCollection``: ``s``, ``maxf``, ``maxe``, ``mae``;
    one preparation per ``update`` serves all four (:class:`SODMetrics`)."""
    return SODMetrics({"s": SMeasure(), "maxf": MaxFMeasure(), "maxe": MaxEMeasure(),
                       "mae": SODMAE()}, prefix=prefix)
