"""Figures: the DET curve on normal-deviate axes with EER and minDCF points (section 3)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

TICKS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4)


def save_det(curves: Mapping[str, tuple[Sequence[float], Sequence[int]]], path: str | Path,
             p_target: float = 0.01, title: str = "DET curve") -> Path:
    """One DET curve per entry ``name -> (scores, labels)``; EER (circle) and minDCF (cross) marked."""
    from scipy.stats import norm

    from paperzoo.core.figures import new_figure, save_figure
    from paperzoo.rsknet.metrics import det_curve, eer, min_dcf

    fig, ax = new_figure(figsize=(5.5, 5))
    clip = lambda p: np.clip(np.asarray(p, dtype=float), 5e-4, 1 - 5e-4)  # noqa: E731
    for name, (scores, labels) in curves.items():
        fpr, fnr, thresholds = det_curve(scores, labels)
        line, = ax.plot(norm.ppf(clip(fpr)), norm.ppf(clip(fnr)), label=name, lw=1.4)
        value, _ = eer(scores, labels)
        ax.plot(norm.ppf(clip(value)), norm.ppf(clip(value)), "o", color=line.get_color())
        _, thr = min_dcf(scores, labels, p_target=p_target)
        i = int(np.searchsorted(thresholds, thr))
        ax.plot(norm.ppf(clip(fpr[i])), norm.ppf(clip(fnr[i])), "x", color=line.get_color(), ms=8)
    ticks = norm.ppf(TICKS)
    labels_ = [f"{100 * t:g}" for t in TICKS]
    ax.set_xticks(ticks, labels_)
    ax.set_yticks(ticks, labels_)
    ax.set_xlim(ticks[0], ticks[-1])
    ax.set_ylim(ticks[0], ticks[-1])
    ax.plot(ticks[[0, -1]], ticks[[0, -1]], ":", color="grey", lw=0.8)
    ax.set_xlabel("false acceptance rate (%)")
    ax.set_ylabel("false rejection rate (%)")
    ax.set_title(f"{title}  (o EER, x minDCF p={p_target:g})")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    return save_figure(fig, path)
