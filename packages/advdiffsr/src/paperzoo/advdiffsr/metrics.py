"""Scores of HR estimates and of ensembles (spec section 2, ``metrics.py``).

Deterministic: relative L2, RMSE, MAE, PSNR (explicit data range), SSIM (torchmetrics), the
high-wavenumber energy ratio, the PDE residual and the LR consistency. Ensembles ``(K, ...)``:
spread-skill (spread corrected by ``sqrt((K+1)/K)``, Spearman from scipy), central-interval
coverage, the rank histogram and the fair ensemble CRPS. Per-frame curves keep the time axis.
"""

from __future__ import annotations

import math

import torch

from paperzoo.advdiffsr.operators import advdiff_residual, downsample


def rel_l2(pred: torch.Tensor, truth: torch.Tensor) -> float:
    """``||pred - truth|| / ||truth||`` over every element."""
    return float((pred.double() - truth.double()).norm() / truth.double().norm())


def rel_l2_per_frame(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """``(T,)`` relative L2 per frame over ``(B, T, N, N)`` (all sequences pooled)."""
    diff = (pred.double() - truth.double()).pow(2).sum((0, 2, 3))
    return (diff / truth.double().pow(2).sum((0, 2, 3))).sqrt()


def rmse(pred: torch.Tensor, truth: torch.Tensor) -> float:
    return float((pred.double() - truth.double()).pow(2).mean().sqrt())


def mae(pred: torch.Tensor, truth: torch.Tensor) -> float:
    return float((pred.double() - truth.double()).abs().mean())


def psnr(pred: torch.Tensor, truth: torch.Tensor, data_range: float) -> float:
    """``10 log10(range^2 / MSE)`` with an explicit ``data_range`` (no guess from the data)."""
    if data_range <= 0:
        raise ValueError(f"data_range must be positive, got {data_range}")
    mse = float((pred.double() - truth.double()).pow(2).mean())
    return math.inf if mse == 0 else 10 * math.log10(data_range**2 / mse)


def ssim(pred: torch.Tensor, truth: torch.Tensor, data_range: float) -> float:
    """Mean SSIM of every frame (torchmetrics, Gaussian window), frames as single-channel images."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    N = truth.shape[-1]
    kernel = min(11, N - (1 - N % 2))
    return float(
        structural_similarity_index_measure(
            pred.reshape(-1, 1, N, N).float(),
            truth.reshape(-1, 1, N, N).float(),
            data_range=data_range,
            kernel_size=kernel,
        )
    )


def radial_spectrum(c: torch.Tensor) -> torch.Tensor:
    """Energy per integer wavenumber shell ``|k|`` of ``(..., N, N)``, summed over leading axes
    (float64, on ``c``'s device)."""
    N = c.shape[-1]
    hat = torch.fft.fft2(c.double()) / N**2
    k = torch.fft.fftfreq(N, d=1.0 / N, dtype=torch.float64, device=c.device)
    shell = torch.sqrt(k[:, None] ** 2 + k[None, :] ** 2).round().long()
    energy = hat.abs().pow(2).reshape(-1, N, N).sum(0)
    return torch.zeros(int(shell.max()) + 1, dtype=torch.float64, device=c.device).index_add_(
        0, shell.flatten(), energy.flatten()
    )


def high_k_energy_ratio(pred: torch.Tensor, truth: torch.Tensor, scale: int) -> float:
    """Energy of ``pred`` above the LR Nyquist ``|k| > n/2`` over that of ``truth`` (1 = right)."""
    cut = truth.shape[-1] // (2 * scale)
    return float(radial_spectrum(pred)[cut + 1 :].sum() / radial_spectrum(truth)[cut + 1 :].sum())


def pde_residual_rms(
    c: torch.Tensor, u: torch.Tensor, kappa: float, dt_obs: float, lr: torch.Tensor, **options
) -> float:
    """RMS of the PDE residual of ``c`` ``(B, T, N, N)`` over the RMS of the LR field."""
    r = advdiff_residual(c.double(), u.double(), kappa, dt_obs, **options)
    return float(r.pow(2).mean().sqrt() / lr.double().pow(2).mean().sqrt())


def lr_consistency(
    c: torch.Tensor, lr: torch.Tensor, scale: int, downsample_kind: str = "block_mean"
) -> float:
    """``||D(c) - y|| / ||y||``."""
    low = downsample(c.double(), scale, downsample_kind)
    return float((low - lr.double()).norm() / lr.double().norm())


def lr_consistency_per_sample(
    samples: torch.Tensor, lr: torch.Tensor, scale: int, downsample_kind: str = "block_mean"
) -> torch.Tensor:
    """``(K,)``: LR consistency of each ensemble member ``samples (K, B, T, N, N)``."""
    low = downsample(samples.double(), scale, downsample_kind)
    return (low - lr.double()).flatten(1).norm(dim=1) / lr.double().norm()


# -- ensembles -----------------------------------------------------------------------------------
def _check_ensemble(samples: torch.Tensor, truth: torch.Tensor) -> None:
    if samples.ndim != truth.ndim + 1 or tuple(samples.shape[1:]) != tuple(truth.shape):
        raise ValueError(
            f"samples must be (K, *truth.shape) = (K, {tuple(truth.shape)}), got {tuple(samples.shape)}"
        )


def crps_fair(samples: torch.Tensor, truth: torch.Tensor) -> float:
    """Fair ensemble CRPS ``E|X - y| - sum_ij |X_i - X_j| / (2 K (K - 1))``, averaged over points
    (Ferro 2014); a one-member ensemble gives the MAE."""
    _check_ensemble(samples, truth)
    K = samples.shape[0]
    x, y = samples.double(), truth.double()
    skill = (x - y).abs().mean(0)
    if K == 1:
        return float(skill.mean())
    sorted_x = x.sort(0).values  # sum_ij |x_i - x_j| = 2 sum_i (2i - K + 1) x_(i), i from 0
    weights = (2 * torch.arange(K, dtype=torch.float64, device=x.device) - K + 1).reshape(
        K, *([1] * truth.ndim)
    )
    pair_sum = 2 * (weights * sorted_x).sum(0)
    return float((skill - pair_sum / (2 * K * (K - 1))).mean())


def coverage(samples: torch.Tensor, truth: torch.Tensor, level: float) -> float:
    """Fraction of points whose truth lies inside the ensemble's central ``level`` interval."""
    _check_ensemble(samples, truth)
    if not 0 < level < 1:
        raise ValueError(f"coverage level must be in (0, 1), got {level}")
    x = samples.double().flatten(1)
    q = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64, device=x.device)
    low, high = torch.quantile(x, q, dim=0) if x.shape[1] < 2**24 else _chunked_quantile(x, q)
    y = truth.double().flatten()
    return float(((y >= low) & (y <= high)).double().mean())


def _chunked_quantile(x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    return torch.cat([torch.quantile(part, q, dim=0) for part in x.split(2**22, dim=1)], dim=1)


def rank_histogram(
    samples: torch.Tensor, truth: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``(K + 1,)`` frequencies of the truth's rank among the members (ties broken at random)."""
    _check_ensemble(samples, truth)
    K = samples.shape[0]
    x, y = samples.double().flatten(1), truth.double().flatten()
    below = (x < y).sum(0)
    ties = (x == y).sum(0)
    if ties.any():
        generator = generator if generator is not None else torch.Generator().manual_seed(0)
        # drawn on the generator's device (the CPU by default: the same draws for any input)
        draw = torch.rand(
            ties.shape, generator=generator, dtype=torch.float64, device=generator.device
        )
        below = below + (draw.to(ties.device) * (ties + 1)).floor().long()
    return torch.bincount(below, minlength=K + 1).double() / y.numel()


def spread_skill(
    samples: torch.Tensor,
    truth: torch.Tensor,
    bins: int = 10,
    max_points: int = 200_000,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """Spread-skill: ``ratio`` = RMS spread ``x sqrt((K+1)/K)`` over the ensemble-mean RMSE (1 is
    calibrated), ``slope`` of the binned RMSE against the binned spread, and the Spearman rank
    correlation of per-point spread and absolute error (scipy, on a seeded subsample). The slope is
    NaN when every bin has the same spread (a collapsed ensemble), as is scipy's Spearman for a
    constant spread."""
    from scipy.stats import spearmanr

    _check_ensemble(samples, truth)
    K = samples.shape[0]
    if K < 2:
        raise ValueError("spread-skill needs at least 2 ensemble members")
    x = samples.double().flatten(1)
    y = truth.double().flatten()
    if y.numel() < bins:
        raise ValueError(
            f"spread-skill with {bins} bins needs at least {bins} points, got {y.numel()}"
        )
    spread = x.std(0, unbiased=True) * math.sqrt((K + 1) / K)
    error = (x.mean(0) - y).abs()
    ratio = float(spread.pow(2).mean().sqrt() / error.pow(2).mean().sqrt())
    order = spread.argsort()
    groups = order.tensor_split(bins)
    bin_spread = torch.stack([spread[g].pow(2).mean().sqrt() for g in groups])
    bin_error = torch.stack([error[g].pow(2).mean().sqrt() for g in groups])
    if bool((bin_spread == bin_spread[0]).all()):
        slope = math.nan
    else:
        slope = float(
            torch.linalg.lstsq(
                torch.stack([bin_spread, torch.ones_like(bin_spread)], 1), bin_error[:, None]
            ).solution[0, 0]
        )
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    pick = torch.randperm(y.numel(), generator=generator, device=generator.device)[:max_points]
    pick = pick.to(spread.device)
    rho = spearmanr(spread[pick].cpu().numpy(), error[pick].cpu().numpy()).statistic
    return {"ratio": ratio, "slope": slope, "spearman": float(rho)}
