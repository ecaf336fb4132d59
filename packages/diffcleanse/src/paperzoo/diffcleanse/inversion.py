"""Stage 1: black-box trigger inversion (BBTI) and the MSCR score (spec 1.2), and Elijah's
white-box inversion as the peer (An et al., 2024).

The model is used only through ``S(x_T) -> x0`` (:class:`BlackBoxSampler`). A fired backdoor
collapses every noise draw onto one image, so BBTI looks for a pattern ``tau`` that makes the
samples of ``eps_i + tau`` similar, with a constant-Jacobian gradient (``dx0/dx_T ~ c I``) from the
loss on the images only. Degenerate (saturated) images are excluded, entropy and value terms keep
clean models from collapsing onto blank images.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.sparse.csgraph import connected_components

from paperzoo.diffcleanse.data import check_range
from paperzoo.diffcleanse.sampling import BlackBoxSampler
from paperzoo.diffcleanse.triggers import check_trigger

__all__ = [
    "BBTIConfig",
    "BBTIInverter",
    "ElijahInverter",
    "bbti_loss",
    "mscr",
    "similar_set",
    "degenerate_mask",
    "entropy",
    "calibrate",
    "to_unit",
    "LossParts",
    "InversionResult",
]

CLUSTERS = ("component", "pairs")
JACOBIANS = ("const", "autograd_ddim")


def to_unit(x0: torch.Tensor) -> torch.Tensor:
    """``u = clamp((x0 + 1) / 2, 0, 1)`` (spec 1.2)."""
    return ((x0 + 1) / 2).clamp(0, 1)


def entropy(u: torch.Tensor) -> torch.Tensor:
    """``h(u) = H(softmax(255 u))`` over the pixels of each image, ``(B,)``."""
    logp = F.log_softmax(255.0 * u.flatten(1), dim=1)
    return -(logp.exp() * logp).sum(1)


def degenerate_mask(u: torch.Tensor, saturation_frac: float = 0.5) -> torch.Tensor:
    """Images whose share of grayscale pixels <= 0.01 or >= 0.99 exceeds ``saturation_frac``."""
    grey = u.mean(1)
    share = ((grey <= 0.01) | (grey >= 0.99)).float().flatten(1).mean(1)
    return share > saturation_frac


def _cosine_matrix(u: torch.Tensor) -> torch.Tensor:
    flat = F.normalize(u.flatten(1), dim=1, eps=1e-12)
    return flat @ flat.T


def similar_set(
    u: torch.Tensor, valid: torch.Tensor, sim_thresh: float = 0.999, cluster: str = "component"
) -> torch.Tensor:
    """Indices of the similar set: the largest connected component (>= 2) of the graph with an
    edge where ``cos > sim_thresh`` among valid images (``cluster="pairs"``: every image in a
    similar pair, the authors' code)."""
    if cluster not in CLUSTERS:
        raise ValueError(f"unknown cluster {cluster!r}; choose from {', '.join(CLUSTERS)}")
    with torch.no_grad():
        sim = _cosine_matrix(u)
        edges = (sim > sim_thresh) & valid[:, None] & valid[None, :]
        edges.fill_diagonal_(False)
    if cluster == "pairs":
        return edges.any(1).nonzero().flatten()
    count, labels = connected_components(edges.cpu().numpy().astype(np.int8), directed=False)
    sizes = np.bincount(labels, minlength=count)
    best = int(np.argmax(sizes))
    if sizes[best] < 2:
        return torch.zeros(0, dtype=torch.long)
    return torch.as_tensor(np.flatnonzero(labels == best), dtype=torch.long)


def mscr(
    u: torch.Tensor,
    sim_thresh: float = 0.999,
    saturation_frac: float = 0.5,
    cluster: str = "component",
) -> float:
    """Maximum similar-cluster rate: ``|Sset| / n`` (degenerate images stay in n; spec 1.2)."""
    if u.dim() != 4 or len(u) < 2:
        raise ValueError(
            f"mscr needs a batch (B >= 2, C, H, W) of images, got shape {tuple(u.shape)}"
        )
    valid = ~degenerate_mask(u, saturation_frac)
    return len(similar_set(u, valid, sim_thresh, cluster)) / len(u)


@dataclass
class LossParts:
    total: torch.Tensor
    similar: torch.Tensor
    sim_size: int
    valid: int
    parts: dict[str, float]


def bbti_loss(
    u: torch.Tensor,
    sim_thresh: float = 0.999,
    saturation_frac: float = 0.5,
    value_band: tuple[float, float] = (0.05, 0.95),
    cluster: str = "component",
    pattern: torch.Tensor | None = None,
    w_tau: float = 0.0,
) -> LossParts:
    """``L = (B / max(|R|, 1)) L_s + 10 L_e + L_v + w_tau L_tau`` (spec 1.2).

    ``u`` (B, C, H, W) in [0, 1] may require grad; ``pattern`` is the quantised trigger for
    ``L_tau`` (entropy of the pattern kept in [1, 3]).
    """
    b = len(u)
    valid = ~degenerate_mask(u.detach(), saturation_frac)
    sset = similar_set(u.detach(), valid, sim_thresh, cluster)
    in_s = torch.zeros(b, dtype=torch.bool)
    in_s[sset] = True
    rest = valid & ~in_s
    zero = u.sum() * 0.0
    flat = F.normalize(u.flatten(1), dim=1, eps=1e-12)
    h = entropy(u)
    if len(sset):
        sims = flat @ flat[sset[0]]
        l_s = (1 - sims)[rest].sum()
        lo, hi = h[sset].min().detach() - 0.1, h[sset].max().detach() + 0.1
        e_weight = 1.0
    else:
        idx = valid.nonzero().flatten()
        pair = flat[idx] @ flat[idx].T
        l_s = (1 - pair).triu(1).sum() if len(idx) > 1 else zero
        lo, hi, e_weight = torch.tensor(0.8), torch.tensor(6.0), 2.0
    l_e = e_weight * (F.relu(lo - h) + F.relu(h - hi))[rest].sum()
    low, high = value_band
    l_v = (F.relu(u - high) + F.relu(low - u)).flatten(1).sum(1)[rest].sum()
    l_tau = zero
    if pattern is not None and w_tau > 0:
        hp = entropy(to_unit(pattern)[None])[0]
        l_tau = F.relu(1 - hp) + F.relu(hp - 3)
    total = (b / max(int(rest.sum()), 1)) * l_s + 10 * l_e + l_v + w_tau * l_tau
    return LossParts(
        total,
        l_s,
        len(sset),
        int(valid.sum()),
        {k: v.item() for k, v in (("L_s", l_s), ("L_e", l_e), ("L_v", l_v), ("L_tau", l_tau))},
    )


def calibrate(
    images01: torch.Tensor, sim_quantile: float = 0.999, max_pairs: int = 1024
) -> dict[str, Any]:
    """``"auto"`` thresholds from clean images in [0, 1] (``to_unit`` of model-space images; other
    values are a ValueError) (spec 1.2, reconstructed): saturation_frac
    = 99th pct of the saturated share + 0.05 (cap 0.98); value_band = 0.5th/99.5th pct of the
    pixel values not saturated (<= 0.01 or >= 0.99, the degenerate filter's rule;
    all pixels if fewer than 100 remain); sim_thresh = 99.9th pct of pairwise cosine of distinct
    real images + 0.005, in [0.99, 0.999].

    The band skips the saturated pixels because on data whose pixels reach both ends (digits:
    half of them exactly 0, a tenth exactly 1) the plain percentiles are (0, 1), a band the value
    term ``L_v`` can never leave, and BBTI then drifts to saturated images unopposed."""
    if images01.dim() != 4 or len(images01) < 2:
        raise ValueError(f"calibration needs (N >= 2, C, H, W) images, got {tuple(images01.shape)}")
    images01 = check_range(images01.float(), 0.0, 1.0, "calibration images")
    x = images01[:max_pairs]
    grey = x.mean(1)
    share = ((grey <= 0.01) | (grey >= 0.99)).float().flatten(1).mean(1)
    saturation = min(float(torch.quantile(share, 0.99)) + 0.05, 0.98)
    pixels = x.flatten()
    unsaturated = pixels[(pixels > 0.01) & (pixels < 0.99)]
    if len(unsaturated) >= 100:
        pixels = unsaturated
    low, high = float(torch.quantile(pixels, 0.005)), float(torch.quantile(pixels, 0.995))
    sim = _cosine_matrix(x)
    iu = torch.triu_indices(len(x), len(x), 1)
    pairs = sim[iu[0], iu[1]]
    distinct = pairs[pairs < 1 - 1e-6]
    sim_thresh = float(torch.quantile(distinct, sim_quantile)) + 0.005
    return {
        "sim_thresh": min(max(sim_thresh, 0.99), 0.999),
        "saturation_frac": saturation,
        "value_band": (low, high),
    }


@dataclass
class BBTIConfig:
    """BBTI settings (spec 1.2). ``grad_scale``/``w_tau`` ``None`` take the size rule (1e3 / 0 up
    to 32 px, else 10 / 0.1)."""

    batch: int = 16
    iters: int = 100
    lr: float = 0.1
    sampler_steps: int = 20
    sim_thresh: float = 0.999
    saturation_frac: float = 0.5
    value_band: tuple[float, float] = (0.05, 0.95)
    cluster: str = "component"
    jacobian: str = "const"
    grad_scale: float | None = None
    w_tau: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.batch < 2:
            raise ValueError(f"batch must be >= 2, got {self.batch}")
        if self.iters < 1:
            raise ValueError(f"iters must be >= 1, got {self.iters}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0 < self.sim_thresh < 1:
            raise ValueError(f"sim_thresh must be in (0, 1), got {self.sim_thresh}")
        if not 0 <= self.saturation_frac <= 1:
            raise ValueError(f"saturation_frac must be in [0, 1], got {self.saturation_frac}")
        if self.cluster not in CLUSTERS:
            raise ValueError(f"unknown cluster {self.cluster!r}; choose from {', '.join(CLUSTERS)}")
        if self.jacobian not in JACOBIANS:
            raise ValueError(
                f"jacobian must be one of {', '.join(JACOBIANS)} ('autograd_ddim' backpropagates "
                f"through the sampler: white-box, a flagged diagnostic), got {self.jacobian!r}"
            )


@dataclass
class InversionResult:
    trigger: torch.Tensor
    history: list[dict[str, float]] = field(default_factory=list)
    best_sim: int = 0
    iterations: int = 0
    initial_trigger: torch.Tensor | None = None


class BBTIInverter:
    """Black-box trigger inversion (spec 1.2): ``invert(sampler) -> InversionResult``.

    The pattern sampled with is the straight-through quantisation of the *current* ``tau``
    (the authors' code samples with a pattern made once; fixed here). ``jacobian="const"`` (the
    method) steps with ``grad_scale * mean_i dL/du_i``; ``"autograd_ddim"`` (flagged, white-box:
    it needs the sampler's UNet) backpropagates the same loss through every DDIM step instead.
    """

    def __init__(self, config: BBTIConfig | None = None, **overrides: Any) -> None:
        self.config = config or BBTIConfig(**overrides)

    def invert(self, sampler: BlackBoxSampler) -> InversionResult:
        cfg = self.config
        shape = sampler.shape
        small = max(shape[1:]) <= 32
        grad_scale = cfg.grad_scale if cfg.grad_scale is not None else (1e3 if small else 10.0)
        w_tau = cfg.w_tau if cfg.w_tau is not None else (0.0 if small else 0.1)
        generator = torch.Generator().manual_seed(cfg.seed)
        tau = torch.randn(shape, generator=generator).requires_grad_(True)
        initial = tau.detach().clone()
        noises = torch.randn((cfg.batch, *shape), generator=generator)
        optimizer = torch.optim.Adam([tau], lr=cfg.lr, betas=(0.9, 0.999))
        best = (-1, float("inf"))
        best_tau = tau.detach().clone()
        history = []
        white_box = cfg.jacobian == "autograd_ddim"
        if white_box and not hasattr(sampler, "sample_with_grad"):
            raise ValueError("jacobian='autograd_ddim' needs a BlackBoxSampler (white-box access)")
        for k in range(cfg.iters):
            pattern = tau + (torch.round(255 * tau) / 255 - tau).detach()
            if white_box:
                u = to_unit(sampler.sample_with_grad(noises + pattern))
            else:
                u = to_unit(sampler(noises + pattern.detach())).requires_grad_(True)
            parts = bbti_loss(
                u, cfg.sim_thresh, cfg.saturation_frac, cfg.value_band, cfg.cluster, pattern, w_tau
            )
            if white_box:
                (tau_grad,) = torch.autograd.grad(parts.total, [tau])
            else:
                grad_u, grad_tau = torch.autograd.grad(parts.total, [u, tau], allow_unused=True)
                grad_u = torch.zeros_like(u) if grad_u is None else grad_u
                tau_grad = grad_scale * grad_u.mean(0)
                if w_tau > 0 and grad_tau is not None:
                    tau_grad = tau_grad + grad_tau
            history.append(
                {
                    "iter": k,
                    "loss": parts.total.item(),
                    "sim_size": parts.sim_size,
                    "valid": parts.valid,
                    **parts.parts,
                }
            )
            key = (parts.sim_size, -parts.total.item())
            if key > (best[0], -best[1]):
                best = (parts.sim_size, parts.total.item())
                best_tau = pattern.detach().clone()
            if parts.sim_size == cfg.batch or (parts.sim_size > 0 and parts.similar.item() == 0.0):
                break
            optimizer.zero_grad(set_to_none=True)
            tau.grad = tau_grad.detach()
            optimizer.step()
        return InversionResult(best_tau, history, best[0], len(history), initial)


class ElijahInverter:
    """Elijah's white-box inversion at step T (An et al., 2024): minimise
    ``L1(lambda tau, mean_i eps_theta(eps_i + tau, T - 1))`` with ``lambda = 0.5``."""

    def __init__(
        self, batch: int = 16, iters: int = 100, lr: float = 0.1, lam: float = 0.5, seed: int = 0
    ) -> None:
        if batch < 2 or iters < 1 or lr <= 0:
            raise ValueError(
                f"batch must be >= 2, iters >= 1 and lr > 0, got {batch}, {iters}, {lr}"
            )
        self.batch, self.iters, self.lr, self.lam, self.seed = batch, iters, lr, lam, seed

    def invert(self, unet, num_train_timesteps: int = 1000) -> InversionResult:
        from paperzoo.diffcleanse.model import unet_shape

        shape = unet_shape(unet)
        device = next(unet.parameters()).device
        generator = torch.Generator().manual_seed(self.seed)
        tau = torch.randn(shape, generator=generator).to(device).requires_grad_(True)
        noises = torch.randn((self.batch, *shape), generator=generator).to(device)
        t = torch.full((self.batch,), num_train_timesteps - 1, device=device)
        optimizer = torch.optim.Adam([tau], lr=self.lr)
        requires = [p.requires_grad for p in unet.parameters()]
        unet.requires_grad_(False)
        history = []
        try:
            for k in range(self.iters):
                loss = F.l1_loss(self.lam * tau, unet(noises + tau, t).sample.mean(0))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                history.append({"iter": k, "loss": loss.item()})
        finally:
            for p, flag in zip(unet.parameters(), requires):
                p.requires_grad_(flag)
        return InversionResult(tau.detach().cpu(), history, 0, self.iters)


def check_inverted(trigger: torch.Tensor, shape) -> torch.Tensor:
    return check_trigger(trigger, shape, "inverted trigger")
