"""Verification metrics (section 3): exact EER and minimum detection cost, DET curve, and the
torchmetrics classes over the same math.

Convention: higher score = same speaker. At threshold theta a trial is accepted when its score is
above theta: FNR(theta) = share of targets with score <= theta, FPR(theta) = share of nontargets
with score > theta. Thresholds are every distinct score (ties grouped) plus accept-all (-inf).
EER interpolates FNR - FPR linearly at its sign change; minDCF is the minimum over all thresholds
(accept-all and reject-all included) of the cost normalised by the best trivial system.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat


@dataclass(frozen=True)
class ErrorRates:
    """FNR and FPR at each threshold (first entry: accept-all at -inf)."""

    thresholds: np.ndarray
    fnr: np.ndarray
    fpr: np.ndarray


def _as_arrays(scores, labels, weights=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    scores = np.asarray(scores.detach().cpu() if isinstance(scores, torch.Tensor) else scores, dtype=np.float64)
    labels = np.asarray(labels.detach().cpu() if isinstance(labels, torch.Tensor) else labels)
    if scores.ndim != 1 or labels.shape != scores.shape:
        raise ValueError(f"scores and labels must be 1-D and equally long, got {scores.shape} and {labels.shape}")
    if not np.isfinite(scores).all():
        raise ValueError(f"{int((~np.isfinite(scores)).sum())} scores are NaN or infinite; "
                         "refusing to score non-finite embeddings")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 1 (target, same speaker) or 0 (nontarget)")
    labels = labels.astype(bool)
    if weights is None:
        weights = np.ones_like(scores)
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != scores.shape or (weights < 0).any():
        raise ValueError(f"weights must be non-negative with the scores' shape {scores.shape}")
    if weights[labels].sum() <= 0 or weights[~labels].sum() <= 0:
        raise ValueError("the trials hold only one class (need target and nontarget trials)")
    return scores, labels, weights


def error_rates(scores, labels, weights=None) -> ErrorRates:
    """FNR and FPR at -inf and at every distinct score (ties grouped), optionally weighted."""
    scores, labels, weights = _as_arrays(scores, labels, weights)
    order = np.argsort(scores, kind="stable")
    scores, labels, weights = scores[order], labels[order], weights[order]
    last_of_group = np.r_[scores[1:] != scores[:-1], True]
    cum_target = np.cumsum(weights * labels)[last_of_group]
    cum_nontarget = np.cumsum(weights * ~labels)[last_of_group]
    fnr = cum_target / cum_target[-1]
    fpr = 1.0 - cum_nontarget / cum_nontarget[-1]
    return ErrorRates(np.r_[-np.inf, scores[last_of_group]], np.r_[0.0, fnr], np.r_[1.0, fpr])


def eer(scores, labels, weights=None) -> tuple[float, float]:
    """Equal error rate (fraction) and its threshold, interpolated at the sign change of FNR - FPR."""
    return _eer_of_rates(error_rates(scores, labels, weights))


def _eer_of_rates(rates: ErrorRates) -> tuple[float, float]:
    diff = rates.fnr - rates.fpr  # non-decreasing from -1 to +1
    i = int(np.argmax(diff >= 0))
    if diff[i] == 0 or i == 0:
        return float(rates.fnr[i]), float(rates.thresholds[i])
    t = -diff[i - 1] / (diff[i] - diff[i - 1])
    value = rates.fnr[i - 1] + t * (rates.fnr[i] - rates.fnr[i - 1])
    low, high = rates.thresholds[i - 1], rates.thresholds[i]
    threshold = high if not np.isfinite(low) else low + t * (high - low)
    return float(value), float(threshold)


class _SortedTrials:
    """One system's trials sorted once (as :func:`error_rates` sorts them), so that the EER under
    new weights costs two cumulative sums: the same arithmetic as ``eer(scores, labels, weights)``
    on the same sorted order, hence the same value."""

    def __init__(self, scores, labels, spk_a: np.ndarray, spk_b: np.ndarray) -> None:
        scores, labels, _ = _as_arrays(scores, labels)
        order = np.argsort(scores, kind="stable")
        scores, self.labels = scores[order], labels[order]
        self.nonlabels = ~self.labels
        self.spk_a, self.spk_b = spk_a[order], spk_b[order]
        self.last_of_group = np.r_[scores[1:] != scores[:-1], True]
        self.thresholds = np.r_[-np.inf, scores[self.last_of_group]]

    def eer(self, counts: np.ndarray) -> float | None:
        """EER with trial weights ``counts[spk_a] * counts[spk_b]``; None without both classes."""
        weights = (counts[self.spk_a] * counts[self.spk_b]).astype(np.float64)
        cum_target = np.cumsum(weights * self.labels)[self.last_of_group]
        cum_nontarget = np.cumsum(weights * self.nonlabels)[self.last_of_group]
        if cum_target[-1] <= 0 or cum_nontarget[-1] <= 0:  # non-negative weights: sum 0 = none
            return None
        fnr = cum_target / cum_target[-1]
        fpr = 1.0 - cum_nontarget / cum_nontarget[-1]
        return _eer_of_rates(ErrorRates(self.thresholds, np.r_[0.0, fnr], np.r_[1.0, fpr]))[0]


def speaker_bootstrap(curves: dict, enroll: Sequence[str], test: Sequence[str],
                      pairs: Sequence[tuple[str, str]], resamples: int = 1000,
                      seed: int = 0) -> dict[str, dict]:
    """Paired bootstrap over speakers of EER differences between systems scored on one trial list.

    ``curves`` maps a system name to ``(scores, labels)`` (only the systems ``pairs`` names are
    scored) in the order of the trials whose enroll
    and test utterance ids are ``enroll`` and ``test`` (the speaker of an id is its first path
    component, ``<speaker>/...``). Each resample draws the speakers with replacement and weights
    a trial by the product of its two speakers' draw counts; every system sees the same draw.
    Returns, per pair ``(a, b)`` under ``"a_minus_b"``, the mean EER difference in percent points,
    its 95 % percentile interval, the share of resamples with ``a <= b`` and the resamples used
    (draws without a target or a nontarget trial are skipped)."""
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    if len(enroll) != len(test):
        raise ValueError(f"enroll ({len(enroll)}) and test ({len(test)}) lists differ in length")
    named = sorted({name for pair in pairs for name in pair})
    missing = sorted(set(named) - set(curves))
    if missing:
        raise ValueError(f"pairs name systems without scores: {missing}")
    speakers = sorted({u.split("/")[0] for u in (*enroll, *test)})
    index = {s: i for i, s in enumerate(speakers)}
    spk_a = np.array([index[u.split("/")[0]] for u in enroll])
    spk_b = np.array([index[u.split("/")[0]] for u in test])
    for name in named:
        if len(curves[name][0]) != len(spk_a):
            raise ValueError(f"{name}: {len(curves[name][0])} scores for {len(spk_a)} trials")
    sorted_trials = {name: _SortedTrials(*curves[name], spk_a, spk_b) for name in named}  # sort once
    rng = np.random.default_rng(seed)
    diffs: dict[tuple[str, str], list[float]] = {tuple(pair): [] for pair in pairs}
    for _ in range(resamples):
        counts = np.bincount(rng.integers(0, len(speakers), len(speakers)), minlength=len(speakers))
        values = {name: trials.eer(counts) for name, trials in sorted_trials.items()}
        if any(value is None for value in values.values()):  # a draw without target or nontarget trials
            continue
        for a, b in diffs:
            diffs[(a, b)].append(100.0 * (values[a] - values[b]))
    out = {}
    for (a, b), values in diffs.items():
        d = np.array(values)
        if len(d) == 0:
            raise ValueError("no bootstrap draw held both target and nontarget trials")
        out[f"{a}_minus_{b}"] = {"mean": float(d.mean()),
                                 "ci95": [float(np.percentile(d, 2.5)), float(np.percentile(d, 97.5))],
                                 "share_in_order": float((d <= 0).mean()), "resamples": len(d)}
    return out


def _check_cost(p_target: float, c_miss: float, c_fa: float) -> None:
    if not 0.0 < p_target < 1.0:
        raise ValueError(f"p_target must be in (0, 1), got {p_target}")
    if c_miss <= 0 or c_fa <= 0:
        raise ValueError(f"c_miss and c_fa must be positive, got {c_miss}, {c_fa}")


def min_dcf(scores, labels, p_target: float = 0.01, c_miss: float = 1.0, c_fa: float = 1.0,
            weights=None) -> tuple[float, float]:
    """Normalised minimum detection cost and its threshold (NIST SRE definition)."""
    _check_cost(p_target, c_miss, c_fa)
    rates = error_rates(scores, labels, weights)
    cost = c_miss * rates.fnr * p_target + c_fa * rates.fpr * (1 - p_target)
    cost = cost / min(c_miss * p_target, c_fa * (1 - p_target))
    i = int(np.argmin(cost))
    return float(cost[i]), float(rates.thresholds[i])


def det_curve(scores, labels, weights=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, fnr, thresholds)`` at every threshold, for a DET plot."""
    rates = error_rates(scores, labels, weights)
    return rates.fpr, rates.fnr, rates.thresholds


class _TrialMetric(Metric):
    """List states of scores and labels; exact computation over everything seen."""

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("scores", default=[], dist_reduce_fx="cat")
        self.add_state("labels", default=[], dist_reduce_fx="cat")

    def update(self, scores: torch.Tensor, labels: torch.Tensor) -> None:
        scores, labels = torch.as_tensor(scores).flatten(), torch.as_tensor(labels).flatten()
        if scores.shape != labels.shape:
            raise ValueError(f"scores {tuple(scores.shape)} and labels {tuple(labels.shape)} differ in length")
        self.scores.append(scores.detach().double())
        self.labels.append(labels.detach().long())

    def _gathered(self) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(self.scores, list) and not self.scores:
            raise ValueError(f"{type(self).__name__} has seen no trials: call update(scores, labels) first")
        return dim_zero_cat(self.scores), dim_zero_cat(self.labels)


class EER(_TrialMetric):
    """Equal error rate (fraction) over every trial seen, exact (torchmetrics ``Metric``)."""

    def compute(self) -> torch.Tensor:
        scores, labels = self._gathered()
        return torch.tensor(eer(scores, labels)[0])


class MinDCF(_TrialMetric):
    """Normalised minimum detection cost over every trial seen, exact (torchmetrics ``Metric``)."""

    def __init__(self, p_target: float = 0.01, c_miss: float = 1.0, c_fa: float = 1.0, **kwargs) -> None:
        _check_cost(p_target, c_miss, c_fa)
        super().__init__(**kwargs)
        self.p_target, self.c_miss, self.c_fa = p_target, c_miss, c_fa

    def compute(self) -> torch.Tensor:
        scores, labels = self._gathered()
        return torch.tensor(min_dcf(scores, labels, self.p_target, self.c_miss, self.c_fa)[0])
