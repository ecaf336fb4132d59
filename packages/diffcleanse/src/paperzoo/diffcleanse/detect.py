"""Detection from an inverted trigger: MSCR on fresh noise and the decision ``MSCR > threshold``
(spec 1.2), and the accuracy/TPR/TNR/AUROC report over a model zoo."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch

from paperzoo.diffcleanse.inversion import (
    BBTIInverter,
    ElijahInverter,
    InversionResult,
    mscr,
    to_unit,
)
from paperzoo.diffcleanse.sampling import BlackBoxSampler

__all__ = ["Detector", "DetectionResult", "detection_report", "score_trigger", "eval_stream_seed"]

EVAL_OFFSET = 7919


def eval_stream_seed(seed: int, avoid: int | None = None) -> int:
    """The seed of the fresh evaluation noise: ``seed + 7919``, shifted by another 7919 when that
    equals ``avoid`` (the BBTI seed, whose generator draws the optimisation noise), so the MSCR
    decision can never be taken on the optimisation noise (spec 1.2). Other seeds are unchanged."""
    stream = seed + EVAL_OFFSET
    return stream + EVAL_OFFSET if avoid is not None and stream == avoid else stream


def score_trigger(
    sampler: BlackBoxSampler,
    trigger: torch.Tensor,
    n_eval: int = 32,
    seed: int = 1,
    sim_thresh: float = 0.999,
    saturation_frac: float = 0.5,
    cluster: str = "component",
    avoid_seed: int | None = None,
) -> float:
    """MSCR of ``n_eval`` fresh noises with ``trigger`` (never the optimisation noise: pass the
    BBTI seed as ``avoid_seed``; see ``eval_stream_seed``)."""
    if n_eval < 2:
        raise ValueError(f"n_eval must be >= 2, got {n_eval}")
    noise = torch.randn(
        (n_eval, *sampler.shape),
        generator=torch.Generator().manual_seed(eval_stream_seed(seed, avoid_seed)),
    )
    return mscr(to_unit(sampler(noise + trigger)), sim_thresh, saturation_frac, cluster)


@dataclass
class DetectionResult:
    mscr: float
    flagged: bool
    threshold: float
    trigger: torch.Tensor
    history: list[dict[str, float]] = field(default_factory=list)
    calls: int = 0
    unet_evals: int = 0
    seconds: float = 0.0
    initial_mscr: float | None = None
    inversion: InversionResult | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "mscr": self.mscr,
            "flagged": int(self.flagged),
            "threshold": self.threshold,
            "calls": self.calls,
            "unet_evals": self.unet_evals,
            "seconds": self.seconds,
            "initial_mscr": self.initial_mscr,
            "iterations": len(self.history),
            "history": self.history,
        }


class Detector:
    """BBTI, then MSCR of the best trigger on ``n_eval`` fresh noises; flagged iff MSCR > threshold."""

    def __init__(
        self,
        inverter: BBTIInverter | None = None,
        threshold: float = 0.5,
        n_eval: int = 32,
        eval_seed: int = 1,
    ) -> None:
        if not 0 <= threshold < 1:
            raise ValueError(f"threshold must be in [0, 1), got {threshold}")
        if n_eval < 2:
            raise ValueError(f"n_eval must be >= 2, got {n_eval}")
        self.inverter = inverter or BBTIInverter()
        self.threshold, self.n_eval, self.eval_seed = threshold, n_eval, eval_seed

    def score(self, sampler, trigger) -> float:
        """MSCR of ``trigger`` on this detector's fresh noises with its inverter's thresholds."""
        cfg = self.inverter.config
        return score_trigger(
            sampler,
            trigger,
            self.n_eval,
            self.eval_seed,
            cfg.sim_thresh,
            cfg.saturation_frac,
            cfg.cluster,
            avoid_seed=cfg.seed,
        )

    def detect(self, sampler: BlackBoxSampler, score_initial: bool = False) -> DetectionResult:
        start = time.perf_counter()
        calls0, evals0 = sampler.calls, sampler.unet_evals
        result = self.inverter.invert(sampler)
        score = self.score(sampler, result.trigger)
        seconds = time.perf_counter() - start
        calls, evals = sampler.calls - calls0, sampler.unet_evals - evals0
        initial = self.score(sampler, result.initial_trigger) if score_initial else None
        return DetectionResult(
            score,
            score > self.threshold,
            self.threshold,
            result.trigger,
            result.history,
            calls,
            evals,
            seconds,
            initial,
            result,
        )

    def detect_elijah(self, sampler: BlackBoxSampler, elijah: ElijahInverter) -> DetectionResult:
        """Elijah's trigger (white-box) scored with the same MSCR decision."""
        start = time.perf_counter()
        result = elijah.invert(sampler.unet)
        score = self.score(sampler, result.trigger)
        return DetectionResult(
            score,
            score > self.threshold,
            self.threshold,
            result.trigger,
            result.history,
            0,
            elijah.iters * elijah.batch,
            time.perf_counter() - start,
        )


def detection_report(
    scores: list[float], labels: list[int], threshold: float = 0.5
) -> dict[str, float]:
    """Accuracy, TPR, TNR (and AUROC) of ``score > threshold`` against labels (1 = backdoored)."""
    if len(scores) != len(labels) or not scores:
        raise ValueError(f"need as many labels as scores (>0), got {len(scores)} and {len(labels)}")
    s = torch.tensor(scores, dtype=torch.float64)
    y = torch.tensor(labels, dtype=torch.long)
    if not torch.isin(y, torch.tensor([0, 1])).all():
        raise ValueError(f"labels must be 0 (clean) or 1 (backdoored), got {sorted(set(labels))}")
    if torch.isnan(s).any():
        raise ValueError(
            f"scores must be numbers, got NaN at {torch.isnan(s).nonzero().flatten().tolist()}"
        )
    pred = (s > threshold).long()
    pos, neg = y == 1, y == 0
    report = {
        "accuracy": float((pred == y).double().mean()),
        "tpr": float((pred[pos] == 1).double().mean()) if pos.any() else float("nan"),
        "tnr": float((pred[neg] == 0).double().mean()) if neg.any() else float("nan"),
    }
    if pos.any() and neg.any():
        from torchmetrics.functional.classification import binary_auroc

        report["auroc"] = float(binary_auroc(s.float(), y))
    return report
