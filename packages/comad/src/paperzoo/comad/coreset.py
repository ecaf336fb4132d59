"""Greedy k-center coreset (PatchCore, Roth et al. 2022, Algorithm 1), used by both stages.

Distances are taken after a seeded, bias-free random projection to ``proj_dim`` dimensions
(Johnson-Lindenstrauss, as PatchCore does); the first pick is the row of largest norm, then each
step adds the row farthest from everything picked so far.
"""

from __future__ import annotations

import math

import torch


def coreset_size(n: int, ratio: float | None = None, count: int | None = None) -> int:
    """``ceil(ratio * n)`` or ``count``, clipped to ``[1, n]``; exactly one of the two is given."""
    if (ratio is None) == (count is None):
        raise ValueError("give exactly one of ratio and count for the coreset size")
    if ratio is not None:
        if not 0 < ratio <= 1:
            raise ValueError(f"coreset ratio must lie in (0, 1], got {ratio}")
        return max(1, min(n, math.ceil(ratio * n - 1e-9)))
    if count < 1:
        raise ValueError(f"coreset count must be >= 1, got {count}")
    return min(n, int(count))


def random_projection(x: torch.Tensor, proj_dim: int | None, seed: int) -> torch.Tensor:
    """A seeded Gaussian projection without bias to ``proj_dim`` dims (identity when ``None`` or
    when ``x`` is already that narrow)."""
    if proj_dim is None or x.shape[1] <= proj_dim:
        return x
    if proj_dim < 1:
        raise ValueError(f"proj_dim must be >= 1, got {proj_dim}")
    generator = torch.Generator().manual_seed(int(seed))
    matrix = torch.randn(x.shape[1], proj_dim, generator=generator) / math.sqrt(proj_dim)
    return x @ matrix.to(x.device, x.dtype)


def greedy_coreset(
    x: torch.Tensor,
    ratio: float | None = None,
    count: int | None = None,
    proj_dim: int | None = 128,
    seed: int = 0,
) -> torch.Tensor:
    """Indices (``LongTensor``) of a greedy k-center coreset of the rows of ``x`` (N, D).

    Returns ``ceil(ratio * N)`` (or ``count``) distinct indices in pick order.
    """
    if x.dim() != 2 or x.shape[0] == 0:
        raise ValueError(f"coreset input must be a non-empty (N, D) matrix, got {tuple(x.shape)}")
    n = coreset_size(x.shape[0], ratio, count)
    z = random_projection(x.float(), proj_dim, seed)
    picks = torch.empty(n, dtype=torch.long)
    current = int(torch.argmax(z.norm(dim=1)))
    squared = z.pow(2).sum(1)
    nearest = torch.full((z.shape[0],), float("inf"), device=z.device)
    for i in range(n):
        picks[i] = current
        # ||z - c||^2 = ||z||^2 - 2 z.c + ||c||^2: one matrix-vector product per pick
        distance = (squared - 2 * (z @ z[current]) + squared[current]).clamp_min(0)
        nearest = torch.minimum(nearest, distance)
        nearest[current] = 0
        current = int(torch.argmax(nearest))
    return picks
