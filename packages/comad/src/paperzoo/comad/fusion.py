"""Fusion of the logical and the structural branch [reconstructed]: each branch's scores are
normalised by statistics of ``validation/good`` only (never test data; pitfall 8).

``TrimmedZNorm(0.2, 0.8)``: the scores between the 20th and 80th percentiles give the mean and
the standard deviation (floored), and ``fused = sum_b (s_b - mu_b) / sigma_b``. ``raw_sum`` is kept
for comparison: without normalisation the branch with the larger scale dominates.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

FUSIONS = ("znorm", "raw", "none")


class TrimmedZNorm:
    """Per-branch trimmed z-normalisation fitted on validation scores of good images."""

    def __init__(self, low: float = 0.2, high: float = 0.8, min_sigma: float = 1e-6) -> None:
        if not 0 <= low < high <= 1:
            raise ValueError(f"percentiles must satisfy 0 <= low < high <= 1, got {low}, {high}")
        if min_sigma <= 0:
            raise ValueError(f"min_sigma must be positive, got {min_sigma}")
        self.low, self.high, self.min_sigma = low, high, min_sigma
        self.stats: dict[str, tuple[float, float]] = {}

    def fit(self, validation_scores: Mapping[str, np.ndarray]) -> TrimmedZNorm:
        """``validation_scores``: branch name -> scores of ``validation/good`` images."""
        if not validation_scores:
            raise ValueError("fusion needs validation scores of at least one branch")
        for name, scores in validation_scores.items():
            scores = np.asarray(scores, dtype=np.float64)
            if scores.size < 2:
                raise ValueError(
                    f"fusion needs >= 2 validation/good images for branch {name!r}, got {scores.size}"
                )
            lo, hi = np.quantile(scores, [self.low, self.high])
            trimmed = scores[(scores >= lo) & (scores <= hi)]
            if trimmed.size < 2:  # too few validation images to trim: use them all
                trimmed = scores
            mu = float(trimmed.mean())
            sigma = max(float(trimmed.std()), self.min_sigma * max(1.0, abs(mu)))
            self.stats[name] = (mu, sigma)
        return self

    def normalise(self, name: str, scores: np.ndarray) -> np.ndarray:
        if name not in self.stats:
            raise ValueError(
                f"no normalisation statistics for branch {name!r}; fitted: {sorted(self.stats)}"
            )
        mu, sigma = self.stats[name]
        return (np.asarray(scores, dtype=np.float64) - mu) / sigma

    def __call__(self, scores: Mapping[str, np.ndarray]) -> np.ndarray:
        missing = set(self.stats) - set(scores)
        if missing:
            raise ValueError(
                f"fusion needs scores of every fitted branch; missing {sorted(missing)}"
            )
        return sum(self.normalise(name, scores[name]) for name in self.stats)


def raw_sum(scores: Mapping[str, np.ndarray]) -> np.ndarray:
    """The plain sum of the branch scores (the comparison the spec asks for)."""
    return sum(np.asarray(s, dtype=np.float64) for s in scores.values())
