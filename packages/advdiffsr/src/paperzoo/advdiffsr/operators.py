"""Observation operators, periodic interpolation, derivatives and the PDE residual (spec section 1,
"Downsampling D" and "Losses").

Every operator acts on the last two axes ``(..., H, W)`` of a tensor and is periodic. ``D`` is the
block mean by default (``avg_pool2d`` with kernel = stride = s); ``U = nearest_up`` satisfies
``D(U(y)) = y`` and the block mean's adjoint is ``U(y) / s^2``.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

DOWNSAMPLES = ("block_mean", "point_sample", "blur_decimate")
PROJECTIONS = ("hard", "multiplicative", "none")
LIFTS = ("nearest", "bicubic")
SPACE_SCHEMES = ("spectral", "fd4", "fd2")
TIME_SCHEMES = ("trapezoid", "euler", "propagator")


def _check_scale(c: torch.Tensor, scale: int, name: str = "field") -> None:
    if not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    if c.ndim < 2 or c.shape[-1] % scale or c.shape[-2] % scale:
        raise ValueError(
            f"{name} of shape {tuple(c.shape)}: HR size is not divisible by the scale {scale}"
        )


def _as_images(c: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
    lead = tuple(c.shape[:-2])
    return c.reshape(-1, 1, c.shape[-2], c.shape[-1]), lead


def block_mean(c: torch.Tensor, scale: int) -> torch.Tensor:
    """Mean over each ``scale x scale`` block: ``(..., N, N) -> (..., N/s, N/s)``."""
    _check_scale(c, scale)
    images, lead = _as_images(c)
    out = F.avg_pool2d(images, scale, scale)
    return out.reshape(*lead, out.shape[-2], out.shape[-1])


def nearest_up(y: torch.Tensor, scale: int) -> torch.Tensor:
    """Copy each LR cell into its ``scale x scale`` block (``U``, so that ``block_mean(U(y)) = y``)."""
    return y.repeat_interleave(scale, dim=-2).repeat_interleave(scale, dim=-1)


def block_mean_adjoint(y: torch.Tensor, scale: int) -> torch.Tensor:
    """``D^T y = U(y) / s^2`` for the block mean."""
    return nearest_up(y, scale) / scale**2


def point_sample(c: torch.Tensor, scale: int) -> torch.Tensor:
    """The HR value at each LR cell centre (odd ``scale`` only, so the centre is an HR cell)."""
    _check_scale(c, scale)
    if scale % 2 == 0:
        raise ValueError(
            f"point_sample needs an odd scale (the LR cell centre must be an HR cell), got {scale}"
        )
    return c[..., scale // 2 :: scale, scale // 2 :: scale]


def gaussian_blur_periodic(c: torch.Tensor, sigma_cells: float) -> torch.Tensor:
    """Periodic Gaussian blur (by FFT) with standard deviation ``sigma_cells`` HR cells."""
    H, W = c.shape[-2:]
    ky = torch.fft.fftfreq(H, device=c.device, dtype=torch.float64)[:, None]
    kx = torch.fft.rfftfreq(W, device=c.device, dtype=torch.float64)[None, :]
    kernel = torch.exp(-2 * math.pi**2 * sigma_cells**2 * (kx**2 + ky**2)).to(c.dtype)
    return torch.fft.irfft2(torch.fft.rfft2(c) * kernel, s=(H, W))


def blur_decimate(c: torch.Tensor, scale: int) -> torch.Tensor:
    """Periodic Gaussian blur (sigma = s/2 HR cells) followed by the block mean."""
    _check_scale(c, scale)
    return block_mean(gaussian_blur_periodic(c, scale / 2), scale)


def downsample(c: torch.Tensor, scale: int, kind: str = "block_mean") -> torch.Tensor:
    """``D(c)`` by name: ``block_mean`` (default), ``point_sample`` (odd s) or ``blur_decimate``."""
    if kind == "block_mean":
        return block_mean(c, scale)
    if kind == "point_sample":
        return point_sample(c, scale)
    if kind == "blur_decimate":
        return blur_decimate(c, scale)
    raise ValueError(f"unknown downsample {kind!r}; choose from {', '.join(DOWNSAMPLES)}")


def lift_bicubic(
    gap: torch.Tensor, scale: int, downsample_kind: str = "block_mean"
) -> torch.Tensor:
    """``S (D S)^{-1} g``: the smooth exact lift of an LR field ``g`` (``D`` of it is ``g``).

    ``S`` is periodic bicubic; ``D S`` commutes with LR shifts, so it is inverted by the LR FFT
    (its symbol for the block mean at ``s = 4`` lies in [0.41, 1], well conditioned).
    """
    symbol = _lift_symbol(gap.shape[-1], scale, downsample_kind, gap.device)
    solved = torch.fft.ifft2(torch.fft.fft2(gap.double()) / symbol).real.to(gap.dtype)
    return bicubic_periodic(solved, scale)


@functools.lru_cache(maxsize=32)
def _lift_symbol(n: int, scale: int, downsample_kind: str, device: torch.device) -> torch.Tensor:
    """The LR FFT symbol of ``D S`` (complex128 on ``device``), built and checked once per
    ``(n, scale, downsample_kind, device)``: ``lift_bicubic`` runs twice per forward pass, and the
    singularity check reads a number back from the device (a GPU sync) each time it is built.
    It depends on the input's dtype in no way (built in float64). Created outside inference mode
    and autograd, so a symbol cached under ``torch.inference_mode`` serves training too."""
    with torch.inference_mode(False), torch.no_grad():
        delta = torch.zeros(n, n, dtype=torch.float64, device=device)
        delta[0, 0] = 1.0
        symbol = torch.fft.fft2(downsample(bicubic_periodic(delta, scale), scale, downsample_kind))
        if float(symbol.abs().min()) < 1e-6:
            raise ValueError(
                f"the bicubic lift is singular for n = {n}, scale {scale}, {downsample_kind}"
            )
    return symbol


def project_consistent(
    c: torch.Tensor,
    y: torch.Tensor,
    scale: int,
    kind: str = "hard",
    downsample_kind: str = "block_mean",
    mask: torch.Tensor | None = None,
    eps: float = 1e-8,
    lift: str = "nearest",
) -> torch.Tensor:
    """Project ``c`` onto ``{D(c) = y}`` on the observed cells (``mask`` 1, default all).

    ``hard``: ``c + U(y - D(c))`` with ``lift`` ``nearest`` (``U`` = nearest_up, the spec's
    default, exact for block mean and point sampling, all freedom left in the null space of
    ``D``) or ``bicubic`` (``U = S (D S)^{-1}``, equally exact but smooth); ``multiplicative``:
    ``c * U(y / D(c))`` (keeps positivity); ``none``: ``c`` unchanged.
    """
    if kind == "none":
        return c
    if kind not in PROJECTIONS:
        raise ValueError(f"unknown projection {kind!r}; choose from {', '.join(PROJECTIONS)}")
    if lift not in LIFTS:
        raise ValueError(f"unknown lift {lift!r}; choose from {', '.join(LIFTS)}")
    if downsample_kind == "blur_decimate":
        raise ValueError(
            "the hard projection needs D(U(y)) = y, which blur_decimate lacks; use projection 'none'"
        )
    low = downsample(c, scale, downsample_kind)
    if kind == "hard":
        gap = y - low if mask is None else (y - low) * mask
        if lift == "bicubic":
            return c + lift_bicubic(gap, scale, downsample_kind)
        if downsample_kind == "point_sample":
            up = torch.zeros_like(c)
            up[..., scale // 2 :: scale, scale // 2 :: scale] = gap
            return c + up
        return c + nearest_up(gap, scale)
    if downsample_kind != "block_mean":
        raise ValueError("the multiplicative projection is defined for the block mean only")
    ratio = y / low.clamp_min(eps)
    if mask is not None:
        ratio = torch.where(mask > 0, ratio, torch.ones_like(ratio))
    return c * nearest_up(ratio, scale)


def bicubic_periodic(y: torch.Tensor, scale: int) -> torch.Tensor:
    """Cell-centred bicubic upsampling with periodic (wrap) padding: ``(..., n, n) -> (..., n s, n s)``."""
    if not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    images, lead = _as_images(y)
    pad = 2
    padded = F.pad(images, (pad, pad, pad, pad), mode="circular")
    up = F.interpolate(padded, scale_factor=scale, mode="bicubic", align_corners=False)
    crop = pad * scale
    up = up[..., crop:-crop, crop:-crop]
    return up.reshape(*lead, up.shape[-2], up.shape[-1])


# -- derivatives -------------------------------------------------------------------------------
def gradient(c: torch.Tensor, scheme: str = "spectral") -> tuple[torch.Tensor, torch.Tensor]:
    """``(dc/dx, dc/dy)`` on the periodic ``[0, 2 pi)^2`` grid of ``c`` (x the last axis)."""
    N = c.shape[-1]
    h = 2 * math.pi / N
    if scheme == "spectral":
        kx = torch.fft.rfftfreq(N, d=1.0 / N, device=c.device, dtype=torch.float64)[None, :]
        ky = torch.fft.fftfreq(
            c.shape[-2], d=1.0 / c.shape[-2], device=c.device, dtype=torch.float64
        )[:, None]
        if N % 2 == 0:
            kx = torch.where(kx.abs() == N // 2, torch.zeros_like(kx), kx)
            ky = torch.where(ky.abs() == N // 2, torch.zeros_like(ky), ky)
        hat = torch.fft.rfft2(c)
        cdtype = hat.dtype
        dx = torch.fft.irfft2(hat * (1j * kx).to(cdtype), s=c.shape[-2:])
        dy = torch.fft.irfft2(hat * (1j * ky).to(cdtype), s=c.shape[-2:])
        return dx, dy
    if scheme == "fd2":
        dx = (torch.roll(c, -1, -1) - torch.roll(c, 1, -1)) / (2 * h)
        dy = (torch.roll(c, -1, -2) - torch.roll(c, 1, -2)) / (2 * h)
        return dx, dy
    if scheme == "fd4":

        def d(axis):
            return (
                -torch.roll(c, -2, axis)
                + 8 * torch.roll(c, -1, axis)
                - 8 * torch.roll(c, 1, axis)
                + torch.roll(c, 2, axis)
            ) / (12 * h)

        return d(-1), d(-2)
    raise ValueError(f"unknown space scheme {scheme!r}; choose from {', '.join(SPACE_SCHEMES)}")


def laplacian(c: torch.Tensor, scheme: str = "spectral") -> torch.Tensor:
    """``d2c/dx2 + d2c/dy2`` on the periodic ``[0, 2 pi)^2`` grid of ``c``."""
    N = c.shape[-1]
    h = 2 * math.pi / N
    if scheme == "spectral":
        kx = torch.fft.rfftfreq(N, d=1.0 / N, device=c.device, dtype=torch.float64)[None, :]
        ky = torch.fft.fftfreq(
            c.shape[-2], d=1.0 / c.shape[-2], device=c.device, dtype=torch.float64
        )[:, None]
        return torch.fft.irfft2(torch.fft.rfft2(c) * (-(kx**2 + ky**2)).to(c.dtype), s=c.shape[-2:])
    if scheme == "fd2":
        return (
            torch.roll(c, 1, -1)
            + torch.roll(c, -1, -1)
            + torch.roll(c, 1, -2)
            + torch.roll(c, -1, -2)
            - 4 * c
        ) / h**2
    if scheme == "fd4":

        def d2(axis):
            return (
                -torch.roll(c, -2, axis)
                + 16 * torch.roll(c, -1, axis)
                - 30 * c
                + 16 * torch.roll(c, 1, axis)
                - torch.roll(c, 2, axis)
            ) / (12 * h**2)

        return d2(-1) + d2(-2)
    raise ValueError(f"unknown space scheme {scheme!r}; choose from {', '.join(SPACE_SCHEMES)}")


def advdiff_operator(
    c: torch.Tensor, u: torch.Tensor, kappa: float, scheme: str = "spectral"
) -> torch.Tensor:
    """``A(c) = u . grad c - kappa lap c`` (the generator's advective form); ``u`` ``(..., 2, N, N)``."""
    dx, dy = gradient(c, scheme)
    return u[..., 0, :, :] * dx + u[..., 1, :, :] * dy - kappa * laplacian(c, scheme)


def check_velocity_shape(u: torch.Tensor, frames: int, N: int, name: str = "u") -> None:
    """``u`` must be ``(..., T or 1, 2, N, N)``."""
    if u.ndim < 4 or tuple(u.shape[-3:]) != (2, N, N) or u.shape[-4] not in (1, frames):
        raise ValueError(
            f"{name} must have shape (..., T or 1, 2, {N}, {N}) with T = {frames}, "
            f"got {tuple(u.shape)}"
        )


def advdiff_residual(
    c: torch.Tensor,
    u: torch.Tensor,
    kappa: float,
    dt_obs: float,
    space: str = "spectral",
    time: str = "trapezoid",
    source: torch.Tensor | None = None,
    substeps: int | None = None,
) -> torch.Tensor:
    """The PDE residual of a sequence ``c`` ``(..., T, N, N)`` already times ``dt_obs``:
    ``(..., T-1, N, N)``.

    ``trapezoid`` (default): ``c_{t+1} - c_t + dt/2 (A(c_{t+1}) + A(c_t) - S_{t+1} - S_t)``;
    ``euler``: ``c_{t+1} - c_t + dt (A(c_t) - S_t)``; ``propagator``: ``c_{t+1} - Phi(c_t)``
    with the IF-RK4 simulator. ``u`` is ``(..., T or 1, 2, N, N)`` on the HR grid.
    """
    if c.ndim < 3 or c.shape[-3] < 2:
        raise ValueError(
            f"the residual needs at least 2 frames (..., T >= 2, N, N), got {tuple(c.shape)}"
        )
    if dt_obs <= 0:
        raise ValueError(f"dt_obs must be positive, got {dt_obs}")
    if kappa < 0:
        raise ValueError(f"kappa must be >= 0, got {kappa}")
    if time not in TIME_SCHEMES:
        raise ValueError(f"unknown time scheme {time!r}; choose from {', '.join(TIME_SCHEMES)}")
    T, N = c.shape[-3], c.shape[-1]
    check_velocity_shape(u, T, N)
    u = u.to(c.dtype).expand(*u.shape[:-4], T, 2, N, N) if u.shape[-4] == 1 else u.to(c.dtype)
    s = None
    if source is not None:
        s = source.to(c.dtype)
        s = s.expand(*s.shape[:-3], T, N, N) if s.ndim >= 3 and s.shape[-3] == 1 else s
    if time == "propagator":
        from paperzoo.advdiffsr.simulator import SpectralAdvDiff

        solver = SpectralAdvDiff(
            N, kappa, u[..., :-1, :, :, :], None if s is None else s[..., :-1, :, :]
        )
        steps = solver.substeps_for(dt_obs) if substeps is None else substeps
        return c[..., 1:, :, :] - solver.step(c[..., :-1, :, :], dt_obs, steps)
    a = advdiff_operator(c, u, kappa, space)
    if s is not None:
        a = a - s
    if time == "euler":
        return c[..., 1:, :, :] - c[..., :-1, :, :] + dt_obs * a[..., :-1, :, :]
    return (
        c[..., 1:, :, :] - c[..., :-1, :, :] + 0.5 * dt_obs * (a[..., 1:, :, :] + a[..., :-1, :, :])
    )
