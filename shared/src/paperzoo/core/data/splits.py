"""Reproducible, disjoint train/val/test splits."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _counts(n: int, fractions: Sequence[float]) -> np.ndarray:
    """Largest-remainder allocation of ``n`` items to ``fractions`` (sums to exactly ``n``)."""
    raw = np.asarray(fractions, dtype=np.float64) * n
    counts = np.floor(raw).astype(np.int64)
    order = np.argsort(-(raw - counts), kind="stable")
    counts[order[: n - counts.sum()]] += 1
    return counts


def split_indices(
    n: int,
    fractions: Sequence[float],
    seed: int,
    stratify: Sequence[int] | np.ndarray | None = None,
) -> list[np.ndarray]:
    """Split ``range(n)`` into disjoint index arrays with the given fractions.

    The same ``seed`` gives the same split. With ``stratify`` (one label per item) every class
    is divided in the same proportions. Fractions must be positive and sum to 1.
    """
    fractions = [float(f) for f in fractions]
    if n < 1:
        raise ValueError(f"split_indices needs n >= 1, got {n}")
    if not fractions or any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"fractions must be non-negative and sum to 1, got {fractions}")
    rng = np.random.default_rng(seed)
    if stratify is None:
        permutation = rng.permutation(n)
        bounds = np.cumsum(_counts(n, fractions))[:-1]
        return [np.sort(part) for part in np.split(permutation, bounds)]
    labels = np.asarray(stratify)
    if labels.shape != (n,):
        raise ValueError(f"stratify must hold one label per item: shape {labels.shape} != ({n},)")
    parts: list[list[np.ndarray]] = [[] for _ in fractions]
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        bounds = np.cumsum(_counts(len(members), fractions))[:-1]
        for k, chunk in enumerate(np.split(members, bounds)):
            parts[k].append(chunk)
    return [np.sort(np.concatenate(chunks)).astype(np.int64) for chunks in parts]
