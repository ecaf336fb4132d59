"""Ensembles from the RWAE prior and the collapse check (spec section 1, "RWAE", and V3).

``K`` prior trajectories are drawn (``z_t ~ p(z_t | z_{t-1}, h_t)``), each decoded and projected,
so every member is LR-consistent; the mean is the estimate and the per-pixel standard deviation
the uncertainty. A spread below 1 % of the field's standard deviation is a collapse and raises.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # data.py holds the Lightning datamodule; plain parts only need the type
    from paperzoo.advdiffsr.data import LRSequences


class SpreadCollapseError(ValueError):
    """The ensemble's spread collapsed (mean std below the threshold x the field std)."""


@torch.no_grad()
def sample_ensemble(model: torch.nn.Module, data: LRSequences, samples: int = 16, seed: int = 0,
                    device: str = "cpu", batch_size: int = 8) -> torch.Tensor:
    """``(K, B, T, N, N)`` members: prior trajectories of an ``RWAE``, decoded and projected."""
    if not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples must be a positive integer, got {samples!r}")
    if not hasattr(model, "prior_cell"):
        raise ValueError(f"sample_ensemble needs an RWAE (with a learned prior), got {type(model).__name__}")
    model = model.to(device).eval()
    projection = "none" if data.downsample == "blur_decimate" else "hard"
    generator = torch.Generator(device=device).manual_seed(int(seed))
    members = []
    for _ in range(samples):
        parts = []
        for start in range(0, data.num_sequences, batch_size):
            index = slice(start, start + batch_size)
            lr = data.lr[index].to(device)
            u = data.velocity(index).to(device)
            c, _, _ = model(lr, u, None, mode="prior", generator=generator, projection=projection)
            parts.append(c.cpu())
        members.append(torch.cat(parts))
    return torch.stack(members)


def spread_map(samples: torch.Tensor) -> torch.Tensor:
    """Per-pixel ensemble standard deviation ``(B, T, N, N)``."""
    return samples.std(0, unbiased=samples.shape[0] > 1)


def spread_ratio(samples: torch.Tensor) -> float:
    """Mean per-pixel std over the std of the ensemble-mean field (no HR needed)."""
    return float(spread_map(samples).mean() / samples.mean(0).std())


def check_spread(samples: torch.Tensor, threshold: float = 0.01) -> float:
    """Return the spread ratio; raise :class:`SpreadCollapseError` when it is below ``threshold``."""
    ratio = spread_ratio(samples)
    if not ratio >= threshold:
        raise SpreadCollapseError(f"ensemble spread collapsed: mean std is {ratio:.2e} of the field std "
                                  f"(threshold {threshold:g})")
    return ratio
