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
    from paperzoo.advdiffsr.model import own_model, with_projection

    if not hasattr(own_model(model), "prior_cell"):
        raise ValueError(
            f"sample_ensemble needs an RWAE (with a learned prior), got {type(model).__name__}"
        )
    # an own RWAE-like module (not the package's RWAE) gets the package's projection on its output
    model = with_projection(model.to(device).eval(), data.scale, data.downsample)
    projection = "none" if data.downsample == "blur_decimate" else "hard"
    # a CPU generator (draws moved to the device): the same ensemble for a seed on any device
    generator = torch.Generator().manual_seed(int(seed))
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


def ensemble_forecast(ensemble: torch.Tensor, data: LRSequences, frames: int) -> torch.Tensor:
    """Probabilistic prediction past ``T`` (spec section 1, RWAE: rolling past T): the last frame
    of every member ``(K, B, T, N, N)`` advanced with the simulator (``Phi``) for ``frames``
    intervals of ``dt_obs``, the last frame's velocity held fixed; ``(K, B, frames, N, N)``.

    Past ``T`` there is no LR frame to encode, so each member's own estimate is carried by the
    physics: the spread of the forecast is the spread at ``T`` moved and diffused by ``Phi``."""
    from paperzoo.advdiffsr.pipeline import roll_forward

    if ensemble.dim() != 5:
        raise ValueError(f"ensemble must be (K, B, T, N, N), got {tuple(ensemble.shape)}")
    K, B, _, N, _ = ensemble.shape
    if B != data.num_sequences or N != data.hr_size:
        raise ValueError(
            f"{data.path}: ensemble {tuple(ensemble.shape)} does not match {data.num_sequences} "
            f"sequences on the HR grid {data.hr_size}"
        )
    if data.source is not None:
        raise ValueError(
            f"{data.path}: forecasting with a source term is not supported (the propagator has no S)"
        )
    u = data.u[:, -1]  # (B or 1, 2, N, N): the last frame's velocity
    if u.shape[0] > 1:
        u = u.repeat(K, 1, 1, 1)  # member-major, as the flattened ensemble below
    last = ensemble[:, :, -1].reshape(K * B, N, N)
    rolled = roll_forward(last, u, data.kappa, data.dt_obs, frames)
    return rolled.reshape(K, B, frames, N, N)


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


@torch.no_grad()
def latent_diagnostics(
    model: torch.nn.Module,
    data: LRSequences,
    samples: int = 4,
    seed: int = 0,
    device: str = "cpu",
    batch_size: int = 8,
) -> dict[str, float]:
    """Why an RWAE ensemble is narrow, measured on LR data only (no HR).

    - ``posterior_std`` / ``prior_std``: mean per-coordinate std of ``q(z_t | z_{t-1}, h_t, b_t)``
      along the posterior path and of ``p(z_t | z_{t-1}, h_t)`` along a prior path;
      ``posterior_mean_std``: the spread of the posterior means over pixels and frames (what
      the MMD asks the prior to match).
    - ``latent_pde_gain``: ``L_pde(z = 0) / L_pde(posterior mean) - 1`` (with a static latent
      ``z_c``, both latents at their posterior means against both at 0): how much the information
      the posterior draws from the future LR (``b_t``) lowers the PDE loss of the decoded field;
      near 0 means the latent carries nothing the loss rewards, so the decoder learns to ignore
      it and prior draws move the output little.
    - ``member_pde_ratio``: mean PDE loss of single prior members over that of the posterior-mean
      decoding (above 1: the members' differences are not solutions of the PDE)."""
    if not hasattr(model, "prior_cell"):
        raise ValueError(f"latent_diagnostics needs an RWAE, got {type(model).__name__}")
    model = model.to(device).eval()
    generator = torch.Generator().manual_seed(int(seed))  # CPU draws, moved: as sample_ensemble
    sums = dict.fromkeys(
        ("posterior_std", "prior_std", "posterior_mean_sq", "posterior_mean", "pde_post"), 0.0
    )
    sums.update(pde_zero=0.0, pde_member=0.0)
    count = 0
    for start in range(0, data.num_sequences, batch_size):
        index = slice(start, start + batch_size)
        lr = data.lr[index].to(device)
        B, T, n, _ = lr.shape
        u = data.velocity(index).to(device).expand(B, T, *data.u.shape[-3:]).to(lr.dtype)
        mask = torch.ones_like(lr)
        features = model.sr.encode(lr, u, mask)
        h = model.sr.core(features)
        b = model.sr.run_cell(model.backward_cell, features, reverse=True)
        z_prev, post_means, post_std = lr.new_zeros(B, model.latent_channels, n, n), [], []
        for t in range(T):
            mean, log_var = model.posterior_head(torch.cat([z_prev, h[:, t], b[:, t]], 1)).chunk(
                2, 1
            )
            post_means.append(mean)
            post_std.append(torch.exp(0.5 * log_var.clamp(-10, 10)))
            z_prev = mean
        z_prev, state, prior_std = lr.new_zeros(B, model.latent_channels, n, n), None, []
        for t in range(T):
            out, state = model.prior_cell(torch.cat([z_prev, h[:, t]], 1), state)
            stats = model.prior_head(out)
            prior_std.append(torch.exp(0.5 * stats.chunk(2, 1)[1].clamp(-10, 10)))
            z_prev = model._sample(stats, generator)
        means = torch.stack(post_means, 1)
        decoded = means
        if model.static_channels:  # the decoder also reads z_c: its posterior mean, per pixel
            static_mean = model.static_head(b[:, 0].mean((-1, -2))).chunk(2, 1)[0]
            static = static_mean[:, None, :, None, None].expand(B, T, model.static_channels, n, n)
            decoded = torch.cat([means, static], 2)
        fields = {
            "pde_post": model.sr.decode(h, lr, u, mask, decoded, "hard"),
            "pde_zero": model.sr.decode(h, lr, u, mask, torch.zeros_like(decoded), "hard"),
        }
        sums["posterior_std"] += float(torch.stack(post_std).mean()) * B
        sums["prior_std"] += float(torch.stack(prior_std).mean()) * B
        sums["posterior_mean"] += float(means.mean()) * B
        sums["posterior_mean_sq"] += float(means.pow(2).mean()) * B
        for name, c in fields.items():
            sums[name] += _mean_sq_residual(c, u, data) * B
        for _ in range(samples):
            member = model(lr, u, None, mode="prior", generator=generator, projection="hard")[0]
            sums["pde_member"] += _mean_sq_residual(member, u, data) * B / samples
        count += B
    mean = {k: v / count for k, v in sums.items()}
    return {
        "posterior_std": mean["posterior_std"],
        "prior_std": mean["prior_std"],
        "posterior_mean_std": max(mean["posterior_mean_sq"] - mean["posterior_mean"] ** 2, 0.0)
        ** 0.5,
        "latent_pde_gain": mean["pde_zero"] / mean["pde_post"] - 1,
        "member_pde_ratio": mean["pde_member"] / mean["pde_post"],
    }


def _mean_sq_residual(c: torch.Tensor, u: torch.Tensor, data: LRSequences) -> float:
    from paperzoo.advdiffsr.operators import advdiff_residual

    return float(advdiff_residual(c.double(), u.double(), data.kappa, data.dt_obs).pow(2).mean())
