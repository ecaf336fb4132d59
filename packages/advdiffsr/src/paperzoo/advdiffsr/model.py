"""The recurrent super-resolution network and the recurrent Wasserstein autoencoder (spec
section 1, "Network" and "RWAE"); plain ``nn.Module``s, no Lightning.

- ``ConvGRUCell`` / ``ConvLSTMCell``: 3x3 convolutional recurrent cells with circular padding.
- ``RecurrentSR``: LR encoder on ``[y_t, mask_t, u at LR]`` -> (bi)directional ConvGRU at ``n x n``
  -> HR head ``[h_t, z_t]`` -> conv -> ``PixelShuffle(s)`` -> concat ``[bicubic(y_t), u at HR]`` ->
  two convs -> correction (last conv zero-initialised, so training starts at periodic bicubic);
  output ``bicubic + correction`` and then the consistency projection.
- ``RWAE``: a forward-only ``RecurrentSR`` with a dynamic latent ``z_t`` (``d_z`` channels at
  ``n x n``), posterior ``q(z_t | z_{t-1}, h_t, b_t)`` with ``b_t`` from a backward ConvGRU over the
  encoded ``y_{t..T}``, learned prior ``p(z_t | z_{t-1}, h_t)`` from a small ConvGRU; optional
  static latent ``z_c`` (``static_channels``, the spec's 8-d, prior ``N(0, I)``, posterior from
  the pooled backward state ``b_1``, which summarises the whole sequence), fed to the head.
- ``mmd_imq``: the unbiased multi-scale IMQ-kernel MMD of the WAE penalty (Tolstikhin et al. 2018).

Presets: ``tiny`` (C 8, head 4, d_z 2), ``small`` (C 16, head 8, d_z 4), ``paper`` (C 64, head 32,
3x3 upsampling conv, d_z 8), each also as ``rwae_<preset>``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from paperzoo.advdiffsr.operators import (
    LIFTS,
    PROJECTIONS,
    bicubic_periodic,
    block_mean,
    project_consistent,
)
from paperzoo.core.registry import Registry

MMD_SCALES = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
CELLS = ("gru", "lstm")


def _conv(cin: int, cout: int, kernel: int = 3) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, padding=kernel // 2, padding_mode="circular")


class ConvGRUCell(nn.Module):
    """Convolutional GRU cell (3x3, circular padding): ``h' = (1 - z) h + z tanh(W [x, r h])``."""

    def __init__(self, in_channels: int, hidden_channels: int, kernel: int = 3) -> None:
        super().__init__()
        self.hidden_channels = hidden_channels
        self.gates = _conv(in_channels + hidden_channels, 2 * hidden_channels, kernel)
        self.candidate = _conv(in_channels + hidden_channels, hidden_channels, kernel)

    def initial_state(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(x.shape[0], self.hidden_channels, *x.shape[-2:])

    def forward(
        self, x: torch.Tensor, state: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.initial_state(x) if state is None else state
        z, r = torch.sigmoid(self.gates(torch.cat([x, h], 1))).chunk(2, 1)
        n = torch.tanh(self.candidate(torch.cat([x, r * h], 1)))
        h = (1 - z) * h + z * n
        return h, h


class ConvLSTMCell(nn.Module):
    """Convolutional LSTM cell (3x3, circular padding); the state is ``(h, c)`` stacked on channels."""

    def __init__(self, in_channels: int, hidden_channels: int, kernel: int = 3) -> None:
        super().__init__()
        self.hidden_channels = hidden_channels
        self.gates = _conv(in_channels + hidden_channels, 4 * hidden_channels, kernel)

    def initial_state(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(x.shape[0], 2 * self.hidden_channels, *x.shape[-2:])

    def forward(
        self, x: torch.Tensor, state: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        state = self.initial_state(x) if state is None else state
        h, c = state.chunk(2, 1)
        i, f, o, g = self.gates(torch.cat([x, h], 1)).chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, torch.cat([h, c], 1)


def _cell(kind: str, cin: int, hidden: int) -> nn.Module:
    if kind == "gru":
        return ConvGRUCell(cin, hidden)
    if kind == "lstm":
        return ConvLSTMCell(cin, hidden)
    raise ValueError(f"unknown recurrent cell {kind!r}; choose from {', '.join(CELLS)}")


def fill_hidden(lr: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Replace hidden LR cells (``mask`` 0) of ``(B, T, n, n)`` by the mean of their observed
    neighbours: the same cell at ``t - 1`` and ``t + 1`` when observed (frames are close in
    time, so this is the accurate neighbour), else the observed periodic 4-neighbours in space,
    else the frame's observed mean."""
    observed = lr * mask
    time_sum, time_count = torch.zeros_like(lr), torch.zeros_like(lr)
    time_sum[:, 1:] += observed[:, :-1]
    time_count[:, 1:] += mask[:, :-1]
    time_sum[:, :-1] += observed[:, 1:]
    time_count[:, :-1] += mask[:, 1:]
    shifts = [(1, -1), (-1, -1), (1, -2), (-1, -2)]
    space_sum = sum(torch.roll(observed, s, d) for s, d in shifts)
    space_count = sum(torch.roll(mask, s, d) for s, d in shifts)
    frame_mean = observed.sum((-1, -2), keepdim=True) / mask.sum((-1, -2), keepdim=True).clamp_min(
        1
    )
    neighbours = torch.where(
        space_count > 0, space_sum / space_count.clamp_min(1), frame_mean.expand_as(lr)
    )
    neighbours = torch.where(time_count > 0, time_sum / time_count.clamp_min(1), neighbours)
    return torch.where(mask > 0, lr, neighbours)


def broadcast_velocity(u: torch.Tensor, batch: int, frames: int) -> torch.Tensor:
    """``u`` ``(B or 1, T or 1, 2, N, N)`` -> ``(B, T, 2, N, N)`` (a view)."""
    if u.ndim != 5 or u.shape[2] != 2:
        raise ValueError(
            f"velocity must have shape (B or 1, T or 1, 2, N, N), got {tuple(u.shape)}"
        )
    if u.shape[0] not in (1, batch) or u.shape[1] not in (1, frames):
        raise ValueError(
            f"velocity of shape {tuple(u.shape)} does not match batch {batch} and {frames} frames"
        )
    return u.expand(batch, frames, *u.shape[2:])


class RecurrentSR(nn.Module):
    """Recurrent convolutional super-resolution of an LR sequence (spec section 1, "Network").

    ``forward(lr (B, T, n, n), u (B or 1, T or 1, 2, N, N), mask=None, latent=None)`` returns the
    HR estimate ``(B, T, N, N)``; ``mask`` marks observed LR cells (hold-out cells are 0) and
    ``latent`` ``(B, T, d_z, n, n)`` feeds the RWAE's ``z_t`` into the head.
    """

    def __init__(
        self,
        scale: int = 4,
        channels: int = 16,
        head_channels: int = 8,
        latent_channels: int = 0,
        bidirectional: bool = True,
        cell: str = "gru",
        upsample_kernel: int = 1,
        projection: str = "hard",
        downsample: str = "block_mean",
        lift: str = "bicubic",
    ) -> None:
        super().__init__()
        for name, value in (
            ("scale", scale),
            ("channels", channels),
            ("head_channels", head_channels),
        ):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if latent_channels < 0:
            raise ValueError(f"latent_channels must be >= 0, got {latent_channels}")
        if upsample_kernel not in (1, 3):
            raise ValueError(f"upsample_kernel must be 1 or 3, got {upsample_kernel}")
        if projection not in PROJECTIONS:
            raise ValueError(
                f"unknown projection {projection!r}; choose from {', '.join(PROJECTIONS)}"
            )
        self.scale, self.channels, self.latent_channels = scale, channels, latent_channels
        if lift not in LIFTS:
            raise ValueError(f"unknown lift {lift!r}; choose from {', '.join(LIFTS)}")
        self.bidirectional, self.projection, self.downsample, self.lift = (
            bidirectional,
            projection,
            downsample,
            lift,
        )
        self.encoder = nn.Sequential(
            _conv(4, channels), nn.GELU(), _conv(channels, channels), nn.GELU()
        )
        self.forward_cell = _cell(cell, channels, channels)
        self.backward_cell = _cell(cell, channels, channels) if bidirectional else None
        core_out = channels * (2 if bidirectional else 1)
        self.core_channels = core_out
        self.upsample = nn.Sequential(
            _conv(core_out + latent_channels, head_channels * scale**2, upsample_kernel),
            nn.PixelShuffle(scale),
        )
        self.refine = nn.Sequential(
            _conv(head_channels + 4, head_channels), nn.GELU(), _conv(head_channels, 1)
        )
        nn.init.zeros_(self.refine[-1].weight)
        nn.init.zeros_(self.refine[-1].bias)
        # global affine normalisation, set from the training LR only (spec "Training")
        self.register_buffer("lr_mean", torch.zeros(()))
        self.register_buffer("lr_std", torch.ones(()))
        self.register_buffer("u_scale", torch.ones(()))

    @torch.no_grad()
    def set_normalisation(self, lr: torch.Tensor, u: torch.Tensor) -> None:
        """Global mean/std of the training LR and the largest speed (no HR involved)."""
        self.lr_mean.fill_(float(lr.mean()))
        self.lr_std.fill_(max(float(lr.std()), 1e-8))
        self.u_scale.fill_(max(float(u.norm(dim=-3).max()), 1e-8))

    # -- pieces (reused by the RWAE) ---------------------------------------------------------
    def encode(self, lr: torch.Tensor, u: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``(B, T, C, n, n)`` features of ``[y_t (hidden cells filled), mask_t, u_t at LR]``."""
        B, T, n, _ = lr.shape
        y = (fill_hidden(lr, mask) - self.lr_mean) / self.lr_std
        u_lr = block_mean(u, self.scale) / self.u_scale
        x = torch.cat([y[:, :, None], mask[:, :, None], u_lr], 2).reshape(B * T, 4, n, n)
        return self.encoder(x).reshape(B, T, self.channels, n, n)

    def run_cell(
        self, cell: nn.Module, features: torch.Tensor, reverse: bool = False
    ) -> torch.Tensor:
        T = features.shape[1]
        order = range(T - 1, -1, -1) if reverse else range(T)
        state, outputs = None, [None] * T
        for t in order:
            outputs[t], state = cell(features[:, t], state)
        return torch.stack(outputs, 1)

    def core(self, features: torch.Tensor) -> torch.Tensor:
        h = self.run_cell(self.forward_cell, features)
        if self.backward_cell is not None:
            h = torch.cat([h, self.run_cell(self.backward_cell, features, reverse=True)], 2)
        return h

    def decode(
        self,
        h: torch.Tensor,
        lr: torch.Tensor,
        u: torch.Tensor,
        mask: torch.Tensor,
        latent: torch.Tensor | None = None,
        projection: str | None = None,
    ) -> torch.Tensor:
        """``(B, T, N, N)``: bicubic of the (filled) LR plus the head's correction, then projected."""
        B, T, n, _ = lr.shape
        N = n * self.scale
        if (latent is None) != (self.latent_channels == 0):
            raise ValueError(
                f"this network takes {self.latent_channels} latent channels; latent given: "
                f"{latent is not None}"
            )
        feats = h if latent is None else torch.cat([h, latent], 2)
        up = self.upsample(feats.reshape(B * T, feats.shape[2], n, n))
        filled = fill_hidden(lr, mask)
        bicubic = bicubic_periodic(filled, self.scale)
        # the block-constant step the projection will add to bicubic: seen by the head so that
        # its correction can smooth it out (all freedom lives in the null space of D)
        gap = (
            project_consistent(
                bicubic,
                lr,
                self.scale,
                "hard" if self.downsample != "blur_decimate" else "none",
                self.downsample,
                mask,
                lift=self.lift,
            )
            - bicubic
        )
        extra = torch.cat(
            [
                ((bicubic - self.lr_mean) / self.lr_std).reshape(B * T, 1, N, N),
                (gap / self.lr_std).reshape(B * T, 1, N, N),
                (u / self.u_scale).reshape(B * T, 2, N, N),
            ],
            1,
        )
        correction = self.refine(torch.cat([up, extra], 1)).reshape(B, T, N, N)
        c = bicubic + self.lr_std * correction
        projection = self.projection if projection is None else projection
        return project_consistent(
            c, lr, self.scale, projection, self.downsample, mask, lift=self.lift
        )

    def forward(
        self,
        lr: torch.Tensor,
        u: torch.Tensor,
        mask: torch.Tensor | None = None,
        latent: torch.Tensor | None = None,
        projection: str | None = None,
    ) -> torch.Tensor:
        if lr.ndim != 4 or lr.shape[-1] != lr.shape[-2]:
            raise ValueError(f"lr must have shape (B, T, n, n), got {tuple(lr.shape)}")
        B, T, n, _ = lr.shape
        u = broadcast_velocity(u, B, T).to(lr.dtype)
        if u.shape[-1] != n * self.scale:
            raise ValueError(f"velocity grid {u.shape[-1]} is not n x scale = {n} x {self.scale}")
        mask = torch.ones_like(lr) if mask is None else mask.to(lr.dtype)
        h = self.core(self.encode(lr, u, mask))
        return self.decode(h, lr, u, mask, latent, projection)


Generators = torch.Generator | Sequence[torch.Generator] | None


def standard_normal(
    shape: Sequence[int], generator: Generators, like: torch.Tensor
) -> torch.Tensor:
    """``N(0, 1)`` noise of ``shape`` on ``like``'s device and dtype from ``generator``: one
    ``torch.Generator`` (or None: the global RNG of ``like``'s device) for the whole tensor, or a
    sequence of generators, one per row of the first dimension (row ``k`` drawn from
    ``generator[k]`` alone). The noise is drawn on the generator's device and moved to ``like``'s:
    the sampling verbs seed CPU generators, so a seed gives the same draws on the CPU and a GPU."""
    if generator is None:
        return torch.randn(tuple(shape), device=like.device, dtype=like.dtype)
    if isinstance(generator, torch.Generator):
        noise = torch.randn(
            tuple(shape), generator=generator, device=generator.device, dtype=like.dtype
        )
        return noise.to(like.device)
    generators = list(generator)
    if len(generators) != shape[0]:
        raise ValueError(
            f"one generator per batch row: got {len(generators)} generators for {shape[0]} rows"
        )
    rows = [
        torch.randn(tuple(shape[1:]), generator=g, device=g.device, dtype=like.dtype).to(
            like.device
        )
        for g in generators
    ]
    return torch.stack(rows)


class RWAE(nn.Module):
    """Recurrent Wasserstein autoencoder over the SR network (spec section 1, "RWAE").

    ``forward(lr, u, mask, mode="posterior", generator=None)`` returns ``(c, z_post, z_prior)``:
    the decoded HR sequence of the posterior (or prior) path, and per-frame posterior and prior
    samples drawn from the same history ``(z_{t-1}, h_t)`` for the MMD penalty.
    """

    def __init__(
        self,
        scale: int = 4,
        channels: int = 16,
        head_channels: int = 8,
        latent_channels: int = 4,
        cell: str = "gru",
        upsample_kernel: int = 1,
        projection: str = "hard",
        downsample: str = "block_mean",
        prior_channels: int | None = None,
        lift: str = "bicubic",
        static_channels: int = 0,
    ) -> None:
        super().__init__()
        if latent_channels < 1:
            raise ValueError(
                f"latent_channels (d_z) must be >= 1 for the RWAE, got {latent_channels}"
            )
        if not isinstance(static_channels, int) or static_channels < 0:
            raise ValueError(
                f"static_channels (d_c of z_c) must be an integer >= 0, got {static_channels!r}"
            )
        self.static_channels = static_channels
        self.static_head = nn.Linear(channels, 2 * static_channels) if static_channels else None
        self.sr = RecurrentSR(
            scale,
            channels,
            head_channels,
            latent_channels + static_channels,
            bidirectional=False,
            cell=cell,
            upsample_kernel=upsample_kernel,
            projection=projection,
            downsample=downsample,
            lift=lift,
        )
        self.latent_channels = latent_channels
        prior_channels = prior_channels or max(channels // 2, 4)
        self.backward_cell = ConvGRUCell(channels, channels)
        self.prior_cell = ConvGRUCell(latent_channels + channels, prior_channels)
        self.prior_head = _conv(prior_channels, 2 * latent_channels)
        self.posterior_head = nn.Sequential(
            _conv(latent_channels + 2 * channels, channels),
            nn.GELU(),
            _conv(channels, 2 * latent_channels),
        )
        self.scale = scale

    @property
    def projection(self) -> str:
        return self.sr.projection

    def set_normalisation(self, lr: torch.Tensor, u: torch.Tensor) -> None:
        self.sr.set_normalisation(lr, u)

    @staticmethod
    def _sample(stats: torch.Tensor, generator: Generators) -> torch.Tensor:
        mean, log_var = stats.chunk(2, 1)
        noise = standard_normal(mean.shape, generator, mean)
        return mean + torch.exp(0.5 * log_var.clamp(-10, 10)) * noise

    def static_latent(
        self,
        b: torch.Tensor | None,
        batch: int,
        like: torch.Tensor,
        generator: Generators,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(z_c posterior, z_c prior)``, ``(B, d_c)`` each: the prior draws ``N(0, I)``; the
        posterior ``q(z_c | y_{1..T})`` reads the spatial mean of the backward state at the first
        frame (``b`` None: prior mode, the posterior is the prior draw)."""
        prior = standard_normal((batch, self.static_channels), generator, like)
        if b is None:
            return prior, prior
        return self._sample(self.static_head(b[:, 0].mean((-1, -2))), generator), prior

    def forward(
        self,
        lr: torch.Tensor,
        u: torch.Tensor,
        mask: torch.Tensor | None = None,
        mode: str = "posterior",
        generator: Generators = None,
        projection: str | None = None,
        return_static: bool = False,
    ) -> tuple[torch.Tensor, ...]:
        """``(c, z_post, z_prior)``, plus ``(z_c posterior, z_c prior)`` with ``return_static``.
        ``generator``: one ``torch.Generator`` for the whole batch, or a sequence of them, one per
        batch row (each row's noise then depends on its own generator only, not on the batch)."""
        if mode not in ("posterior", "prior"):
            raise ValueError(f"mode must be 'posterior' or 'prior', got {mode!r}")
        B, T, n, _ = lr.shape
        u = broadcast_velocity(u, B, T).to(lr.dtype)
        mask = torch.ones_like(lr) if mask is None else mask.to(lr.dtype)
        features = self.sr.encode(lr, u, mask)
        h = self.sr.core(features)
        b = (
            self.sr.run_cell(self.backward_cell, features, reverse=True)
            if mode == "posterior"
            else None
        )
        static = self.static_latent(b, B, lr, generator) if self.static_channels else None
        z_prev = lr.new_zeros(B, self.latent_channels, n, n)
        prior_state = None
        z_post, z_prior, chosen = [], [], []
        for t in range(T):
            prior_out, prior_state = self.prior_cell(torch.cat([z_prev, h[:, t]], 1), prior_state)
            zp = self._sample(self.prior_head(prior_out), generator)
            z_prior.append(zp)
            if mode == "posterior":
                zq = self._sample(
                    self.posterior_head(torch.cat([z_prev, h[:, t], b[:, t]], 1)), generator
                )
                z_post.append(zq)
                z_prev = zq
            else:
                z_prev = zp
            chosen.append(z_prev)
        latent = torch.stack(chosen, 1)
        if static is not None:
            z_c = static[0][:, None, :, None, None].expand(B, T, self.static_channels, n, n)
            latent = torch.cat([latent, z_c], 2)
        c = self.sr.decode(h, lr, u, mask, latent, projection)
        z_post_t = torch.stack(z_post, 1) if z_post else torch.stack(z_prior, 1)
        if return_static:
            empty = lr.new_zeros(B, 0)
            return (
                c,
                z_post_t,
                torch.stack(z_prior, 1),
                *(static if static is not None else (empty, empty)),
            )
        return c, z_post_t, torch.stack(z_prior, 1)


class ProjectedOwnModel(nn.Module):
    """A user's own SR module wrapped so that the package's projection holds for it too.

    The contract of an own module (``train_sr(..., model=...)``): ``forward(lr, u, mask=None,
    projection=..., **kwargs)`` with ``lr`` ``(B, T, n, n)``, ``u`` ``(B or 1, T or 1, 2, N, N)``,
    ``mask`` ``(B, T, n, n)`` (1 observed, 0 hidden hold-out cell) or None, returning the HR
    estimate ``(B, T, N, N)`` with ``N = n x scale`` (an RWAE-like module, called with ``mode`` and
    ``generator``, returns a tuple whose first item is that estimate). ``projection`` is one of
    ``hard``, ``multiplicative``, ``none`` and may be ignored: this wrapper applies the package's
    ``project_consistent`` (``lift`` ``bicubic``, the package models' default) to the output, on
    the observed cells, so ``D(c) = y`` holds whether the module projects or not (projecting an
    already consistent field again changes nothing: the projection is idempotent). The output
    shape is checked on every call, so a wrong resolution fails on the first batch, naming the
    expected and the returned shapes. The package's own ``RecurrentSR`` and ``RWAE`` project
    themselves and are never wrapped (:func:`with_projection`)."""

    def __init__(
        self, model: nn.Module, scale: int, downsample: str = "block_mean", lift: str = "bicubic"
    ) -> None:
        super().__init__()
        if lift not in LIFTS:
            raise ValueError(f"unknown lift {lift!r}; choose from {', '.join(LIFTS)}")
        self.model, self.scale, self.downsample, self.lift = model, scale, downsample, lift

    def forward(
        self,
        lr: torch.Tensor,
        u: torch.Tensor,
        mask: torch.Tensor | None = None,
        projection: str = "hard",
        **kwargs,
    ):
        if projection not in PROJECTIONS:
            raise ValueError(
                f"unknown projection {projection!r}; choose from {', '.join(PROJECTIONS)}"
            )
        out = self.model(lr, u, mask, projection=projection, **kwargs)
        several = isinstance(out, (tuple, list))
        c = out[0] if several and len(out) else out
        B, T, n = lr.shape[0], lr.shape[1], lr.shape[-1]
        expected = (B, T, n * self.scale, n * self.scale)
        name = type(self.model).__name__
        if not isinstance(c, torch.Tensor):
            raise ValueError(
                f"own model {name} returned {type(c).__name__}, expected a tensor of shape "
                f"{expected} = (B, T, n x scale, n x scale)"
            )
        if tuple(c.shape) != expected:
            raise ValueError(
                f"own model {name} returned shape {tuple(c.shape)}, expected {expected} = "
                f"(B, T, n x scale, n x scale) with n {n} and scale {self.scale}"
            )
        m = None if mask is None else mask.to(c.dtype)
        c = project_consistent(c, lr, self.scale, projection, self.downsample, m, lift=self.lift)
        return (c, *out[1:]) if several else c


def with_projection(model: nn.Module, scale: int, downsample: str = "block_mean") -> nn.Module:
    """``model`` itself for the package's networks (``RecurrentSR``, ``RWAE``, which project
    themselves, so their numbers are untouched) and an already wrapped module, else a
    :class:`ProjectedOwnModel` around it."""
    if isinstance(model, (RecurrentSR, RWAE, ProjectedOwnModel)):
        return model
    return ProjectedOwnModel(model, scale, downsample)


def own_model(model: nn.Module) -> nn.Module:
    """The module a :class:`ProjectedOwnModel` wraps (any other module as it is)."""
    return model.model if isinstance(model, ProjectedOwnModel) else model


def mmd_imq(
    a: torch.Tensor, b: torch.Tensor, sigma2: float = 1.0, scales: Sequence[float] = MMD_SCALES
) -> torch.Tensor:
    """Unbiased MMD^2 between samples ``a`` and ``b`` (``(m, d)`` each) with the multi-scale IMQ
    kernel ``C / (C + ||x - y||^2)``, ``C = 2 d sigma2 x scale`` (WAE-MMD, Tolstikhin et al. 2018):
    within-sample sums drop the diagonal (``m (m - 1)``), the cross term is ``2 / m^2``."""
    if a.ndim != 2 or b.ndim != 2 or a.shape != b.shape:
        raise ValueError(
            f"mmd_imq needs two (m, d) samples of equal shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    m, d = a.shape
    if m < 2:
        raise ValueError("mmd_imq needs at least 2 samples")
    # the estimate is a difference of near-equal kernel means: in half or bfloat16 (autocast,
    # --precision 16-mixed / bf16-mixed) it would round away, so it is computed in float32 or better
    with torch.autocast(device_type=a.device.type, enabled=False):
        if a.dtype in (torch.float16, torch.bfloat16) or b.dtype in (torch.float16, torch.bfloat16):
            a, b = a.float(), b.float()
        daa, dbb, dab = (
            torch.cdist(a, a).pow(2),
            torch.cdist(b, b).pow(2),
            torch.cdist(a, b).pow(2),
        )
        off = 1 - torch.eye(m, dtype=a.dtype, device=a.device)
        total = a.new_zeros(())
        for scale in scales:
            C = 2 * d * sigma2 * scale
            total = (
                total
                + ((C / (C + daa)) * off).sum() / (m * (m - 1))
                + ((C / (C + dbb)) * off).sum() / (m * (m - 1))
                - 2 * (C / (C + dab)).sum() / m**2
            )
        return total


MODELS = Registry("model")
_PRESETS = {
    "tiny": dict(channels=8, head_channels=4, latent_channels=2),
    "small": dict(channels=16, head_channels=8, latent_channels=4),
    "paper": dict(channels=64, head_channels=32, latent_channels=8, upsample_kernel=3),
}
for _name, _preset in _PRESETS.items():
    _sr = {k: v for k, v in _preset.items() if k != "latent_channels"}
    MODELS.add(_name, RecurrentSR, **_sr)
    MODELS.add(f"rwae_{_name}", RWAE, **_preset)
create_model = MODELS.create
list_models = MODELS.names


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
