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
def sample_ensemble(
    model: torch.nn.Module,
    data: LRSequences,
    samples: int = 16,
    seed: int = 0,
    device: str = "cpu",
    batch_size: int = 8,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """``(K, B, T, N, N)`` members: prior trajectories of an ``RWAE``, decoded and projected
    (``mask`` ``(B, T, n, n)``: 0 marks hidden LR cells, left out of the input and the projection)."""
    if not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples must be a positive integer, got {samples!r}")
    if not hasattr(model, "prior_cell"):
        raise ValueError(
            f"sample_ensemble needs an RWAE (with a learned prior), got {type(model).__name__}"
        )
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
            m = None if mask is None else mask[index].to(device)
            c, _, _ = model(lr, u, m, mode="prior", generator=generator, projection=projection)
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
        raise SpreadCollapseError(
            f"ensemble spread collapsed: mean std is {ratio:.2e} of the field std "
            f"(threshold {threshold:g})"
        )
    return ratio


def holdout_calibration(
    model: torch.nn.Module,
    data: LRSequences,
    fraction: float = 0.1,
    samples: int = 16,
    seed: int = 0,
    device: str = "cpu",
) -> dict[str, float]:
    """Calibration checked on LR hold-out only (no HR): a seeded ``fraction`` of the LR cells is
    hidden from the input and the projection, ``K`` members are sampled, and their block means
    ``D(c)`` on the hidden cells are scored against the hidden LR values: 50 %/90 % coverage,
    spread-skill ratio and fair CRPS. On observed cells every member equals ``y``, so hidden cells
    are where the ensemble's spread can be checked against data the model has not seen."""
    from paperzoo.advdiffsr import metrics as M
    from paperzoo.advdiffsr.data import holdout_mask
    from paperzoo.advdiffsr.operators import downsample

    if not 0 < fraction < 1:
        raise ValueError(f"hold-out fraction must be in (0, 1), got {fraction}")
    mask = holdout_mask(tuple(data.lr.shape), fraction, torch.Generator().manual_seed(seed + 31337))
    members = sample_ensemble(model, data, samples, seed, device, mask=mask)
    low = downsample(members.double(), data.scale, data.downsample)
    hidden = mask == 0
    ensemble, truth = low[:, hidden], data.lr.double()[hidden]
    skill = M.spread_skill(ensemble, truth)
    return {
        "holdout_coverage_50": M.coverage(ensemble, truth, 0.5),
        "holdout_coverage_90": M.coverage(ensemble, truth, 0.9),
        "holdout_spread_skill_ratio": skill["ratio"],
        "holdout_crps": M.crps_fair(ensemble, truth),
        "holdout_mean_rel_error": float((ensemble.mean(0) - truth).norm() / truth.norm()),
    }
