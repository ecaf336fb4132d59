"""Pseudo-spectral periodic advection-diffusion simulator (spec section 1, "Simulator").

``dc/dt + u . grad c = kappa lap c + S`` on ``[0, 2 pi)^2``, solved on ``torch.fft`` in float64
with an integrating factor that makes diffusion exact (``exp(-kappa |k|^2 dt)``) and classical
RK4 on the advection term (IF-RK4, Trefethen, *Spectral Methods in MATLAB*, p. 27), spectral
derivatives and the 2/3 rule. The simulator is differentiable, so it is also the propagator
``Phi`` of the PDE residual's ``propagator`` option.

Fields are ``(..., N, N)`` indexed ``[y, x]``; velocities ``(..., 2, N, N)`` with channel 0 the
x component and channel 1 the y component.
"""

from __future__ import annotations

import math

import torch

CFL_LIMIT = 1.4
VELOCITY_KINDS = ("uniform", "cellular", "random_streamfunction")


def grid(N: int, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """Cell coordinates ``(x, y)`` of the periodic ``N x N`` grid, each ``(N, N)``, ``x_j = 2 pi j / N``."""
    axis = torch.arange(N, dtype=dtype) * (2 * math.pi / N)
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    return x, y


def wavenumbers(
    N: int, dtype: torch.dtype = torch.float64, device=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer wavenumbers ``(kx, ky)`` of ``rfft2`` on an ``N x N`` grid, shapes ``(1, N//2+1)`` and ``(N, 1)``."""
    kx = torch.fft.rfftfreq(N, d=1.0 / N, dtype=dtype, device=device)[None, :]
    ky = torch.fft.fftfreq(N, d=1.0 / N, dtype=dtype, device=device)[:, None]
    return kx, ky


def derivative_wavenumbers(N: int, dtype: torch.dtype = torch.float64, device=None):
    """``(i kx, i ky)`` for first derivatives with the Nyquist modes zeroed (odd derivatives)."""
    kx, ky = wavenumbers(N, dtype, device)
    kx = torch.where(kx.abs() == N // 2, torch.zeros_like(kx), kx) if N % 2 == 0 else kx
    ky = torch.where(ky.abs() == N // 2, torch.zeros_like(ky), ky) if N % 2 == 0 else ky
    return 1j * kx, 1j * ky


def dealias_mask(N: int, device=None) -> torch.Tensor:
    """The 2/3 rule: keep ``|kx|, |ky| <= N/3`` (``(N, N//2+1)`` boolean)."""
    kx, ky = wavenumbers(N, device=device)
    return (kx.abs() <= N / 3) & (ky.abs() <= N / 3)


def _check_velocity(velocity: torch.Tensor, N: int) -> torch.Tensor:
    if (
        not isinstance(velocity, torch.Tensor)
        or velocity.ndim < 3
        or tuple(velocity.shape[-3:]) != (2, N, N)
    ):
        shape = (
            tuple(velocity.shape) if isinstance(velocity, torch.Tensor) else type(velocity).__name__
        )
        raise ValueError(f"velocity must have shape (..., 2, {N}, {N}), got {shape}")
    if not torch.isfinite(velocity).all():
        raise ValueError("velocity holds NaN or inf values")
    return velocity


class SpectralAdvDiff:
    """IF-RK4 pseudo-spectral solver of ``dc/dt + u . grad c = kappa lap c + S`` (periodic).

    Args:
        N: HR grid size (cells per side of ``[0, 2 pi)``).
        kappa: diffusivity (>= 0).
        velocity: ``(..., 2, N, N)`` divergence-free velocity, constant over a call of ``step``.
        source: optional ``(..., N, N)`` source ``S``.
        dealias: apply the 2/3 rule to the advection term and to the state.
    """

    def __init__(
        self,
        N: int,
        kappa: float,
        velocity: torch.Tensor,
        source: torch.Tensor | None = None,
        dealias: bool = True,
    ) -> None:
        if not isinstance(N, int) or N < 4:
            raise ValueError(f"N must be an integer >= 4, got {N!r}")
        if kappa < 0:
            raise ValueError(f"kappa must be >= 0, got {kappa}")
        self.N = N
        self.kappa = float(kappa)
        self.velocity = _check_velocity(velocity, N).to(torch.float64)
        self.device = self.velocity.device
        if source is not None and tuple(source.shape[-2:]) != (N, N):
            raise ValueError(f"source must have shape (..., {N}, {N}), got {tuple(source.shape)}")
        self.source_hat = None if source is None else torch.fft.rfft2(source.to(torch.float64))
        kx, ky = wavenumbers(N, device=self.device)
        self.k2 = kx**2 + ky**2
        self.ikx, self.iky = derivative_wavenumbers(N, device=self.device)
        self.mask = (
            dealias_mask(N, self.device) if dealias else torch.ones_like(self.k2, dtype=torch.bool)
        )
        self.max_speed = float(self.velocity.norm(dim=-3).max())

    # -- limits -------------------------------------------------------------------------------
    def max_stable_dt(self) -> float:
        """The largest step with ``dt * max|u| * k_max <= 1.4`` (``k_max = N/2``)."""
        if self.max_speed == 0:
            return math.inf
        return CFL_LIMIT / (self.max_speed * (self.N // 2))

    def check_cfl(self, dt: float) -> None:
        if dt <= 0:
            raise ValueError(f"time step must be positive, got {dt}")
        number = dt * self.max_speed * (self.N // 2)
        if number > CFL_LIMIT * (1 + 1e-12):
            raise ValueError(
                f"time step {dt:g} breaks the CFL limit: dt * max|u| * k_max = {number:.3f} > "
                f"{CFL_LIMIT} (max|u| {self.max_speed:.3g}, N {self.N}); use more sub-steps"
            )

    # -- one step -----------------------------------------------------------------------------
    def _advection_hat(self, c_hat: torch.Tensor) -> torch.Tensor:
        """``-FFT(u . grad c) + S_hat``, dealiased."""
        N = self.N
        cx = torch.fft.irfft2(self.ikx * c_hat, s=(N, N))
        cy = torch.fft.irfft2(self.iky * c_hat, s=(N, N))
        u = self.velocity
        out = -torch.fft.rfft2(u[..., 0, :, :] * cx + u[..., 1, :, :] * cy) * self.mask
        if self.source_hat is not None:
            out = out + self.source_hat
        return out

    def step_hat(self, c_hat: torch.Tensor, dt: float) -> torch.Tensor:
        """One IF-RK4 step of size ``dt`` in Fourier space (diffusion exact)."""
        e_half = torch.exp(-self.kappa * self.k2 * (dt / 2))
        e_full = e_half * e_half
        a = dt * self._advection_hat(c_hat)
        b = dt * self._advection_hat(e_half * (c_hat + a / 2))
        c = dt * self._advection_hat(e_half * c_hat + b / 2)
        d = dt * self._advection_hat(e_full * c_hat + e_half * c)
        return e_full * c_hat + (e_full * a + 2 * e_half * (b + c) + d) / 6

    def step(self, c: torch.Tensor, dt: float, substeps: int = 1) -> torch.Tensor:
        """Advance ``c`` (``(..., N, N)``) by ``dt`` in ``substeps`` equal IF-RK4 steps."""
        if not isinstance(substeps, int) or substeps < 1:
            raise ValueError(f"substeps must be a positive integer, got {substeps!r}")
        h = dt / substeps
        self.check_cfl(h)
        dtype = c.dtype
        c_hat = torch.fft.rfft2(c.to(torch.float64)) * self.mask
        for _ in range(substeps):
            c_hat = self.step_hat(c_hat, h)
        return torch.fft.irfft2(c_hat, s=(self.N, self.N)).to(dtype)

    def substeps_for(self, dt_obs: float, minimum: int = 5) -> int:
        """Sub-steps per observation interval: at least ``minimum`` and enough for the CFL limit."""
        return (
            max(minimum, math.ceil(dt_obs / self.max_stable_dt() - 1e-9))
            if self.max_speed
            else minimum
        )

    def integrate(
        self, c0: torch.Tensor, frames: int, dt_obs: float, substeps: int | None = None
    ) -> torch.Tensor:
        """``frames`` snapshots ``(..., T, N, N)`` spaced ``dt_obs`` starting at the dealiased ``c0``."""
        if not isinstance(frames, int) or frames < 1:
            raise ValueError(f"frames must be a positive integer, got {frames!r}")
        if dt_obs <= 0:
            raise ValueError(f"dt_obs must be positive, got {dt_obs}")
        substeps = self.substeps_for(dt_obs) if substeps is None else substeps
        self.check_cfl(dt_obs / substeps)
        h = dt_obs / substeps
        c_hat = torch.fft.rfft2(c0.to(torch.float64)) * self.mask
        out = [torch.fft.irfft2(c_hat, s=(self.N, self.N))]
        for _ in range(frames - 1):
            for _ in range(substeps):
                c_hat = self.step_hat(c_hat, h)
            out.append(torch.fft.irfft2(c_hat, s=(self.N, self.N)))
        return torch.stack(out, dim=-3).to(c0.dtype if c0.is_floating_point() else torch.float64)


def simulate_sequence(
    c0: torch.Tensor,
    velocity: torch.Tensor,
    kappa: float,
    frames: int,
    dt_obs: float,
    substeps: int | None = None,
    source: torch.Tensor | None = None,
) -> torch.Tensor:
    """``(..., T, N, N)`` HR frames from ``c0``; ``velocity`` ``(T or 1, 2, N, N)``, a per-frame
    velocity held over the interval that starts at its frame."""
    N = c0.shape[-1]
    velocity = _check_velocity(velocity, N)
    if velocity.ndim != 4 or velocity.shape[0] not in (1, frames):
        raise ValueError(
            f"velocity must have shape (T or 1, 2, N, N) with T = {frames}, got {tuple(velocity.shape)}"
        )
    if velocity.shape[0] == 1:
        return SpectralAdvDiff(N, kappa, velocity[0], source).integrate(
            c0, frames, dt_obs, substeps
        )
    c_hat = torch.fft.rfft2(c0.to(torch.float64)) * dealias_mask(N, c0.device)
    out = [torch.fft.irfft2(c_hat, s=(N, N))]
    for t in range(frames - 1):
        solver = SpectralAdvDiff(N, kappa, velocity[t], source)
        steps = solver.substeps_for(dt_obs) if substeps is None else substeps
        solver.check_cfl(dt_obs / steps)
        for _ in range(steps):
            c_hat = solver.step_hat(c_hat, dt_obs / steps)
        out.append(torch.fft.irfft2(c_hat, s=(N, N)))
    return torch.stack(out, dim=-3)


# -- velocity fields ---------------------------------------------------------------------------
def uniform_velocity(N: int, a: float, b: float) -> torch.Tensor:
    """Constant ``(a, b)`` as ``(1, 2, N, N)``."""
    field = torch.empty(1, 2, N, N, dtype=torch.float64)
    field[:, 0] = a
    field[:, 1] = b
    return field


def cellular_velocity(
    N: int, U0: float = 1.0, drift: tuple[float, float] = (0.5, 0.25)
) -> torch.Tensor:
    """``(U0 sin x cos y, -U0 cos x sin y) + drift`` as ``(1, 2, N, N)`` (divergence-free)."""
    x, y = grid(N)
    ux = U0 * torch.sin(x) * torch.cos(y) + drift[0]
    uy = -U0 * torch.cos(x) * torch.sin(y) + drift[1]
    return torch.stack([ux, uy])[None]


def random_streamfunction_velocity(
    N: int, k_max: int = 3, amp: float = 1.0, seed: int = 0
) -> torch.Tensor:
    """``u = (d psi/dy, -d psi/dx)`` of a random streamfunction with modes ``|k| <= k_max``,
    scaled so that ``max|u| = amp``; ``(1, 2, N, N)``, spectrally divergence-free."""
    if k_max < 1 or k_max >= N // 3:
        raise ValueError(f"k_max must be in [1, N/3) = [1, {N // 3}), got {k_max}")
    generator = torch.Generator().manual_seed(int(seed))
    kx, ky = wavenumbers(N)
    keep = ((kx**2 + ky**2) <= k_max**2) & ((kx**2 + ky**2) > 0)
    noise = torch.randn(N, N // 2 + 1, 2, generator=generator, dtype=torch.float64)
    psi_hat = torch.complex(noise[..., 0], noise[..., 1]) * keep
    ikx, iky = derivative_wavenumbers(N)
    ux = torch.fft.irfft2(iky * psi_hat, s=(N, N))
    uy = torch.fft.irfft2(-ikx * psi_hat, s=(N, N))
    field = torch.stack([ux, uy])
    return (field * (amp / field.norm(dim=0).max()))[None]


def make_velocity(kind: str, N: int, **kwargs) -> torch.Tensor:
    """A velocity factory by name: ``uniform(a, b)``, ``cellular(U0, drift)``, ``random_streamfunction(k_max, amp, seed)``."""
    factories = {
        "uniform": uniform_velocity,
        "cellular": cellular_velocity,
        "random_streamfunction": random_streamfunction_velocity,
    }
    if kind not in factories:
        raise ValueError(f"unknown velocity {kind!r}; choose from {', '.join(VELOCITY_KINDS)}")
    return factories[kind](N, **kwargs)


def divergence(velocity: torch.Tensor) -> torch.Tensor:
    """Spectral ``du/dx + dv/dy`` of ``(..., 2, N, N)``."""
    N = velocity.shape[-1]
    ikx, iky = derivative_wavenumbers(N, device=velocity.device)
    hat = torch.fft.rfft2(velocity.to(torch.float64))
    return torch.fft.irfft2(ikx * hat[..., 0, :, :] + iky * hat[..., 1, :, :], s=(N, N))


# -- initial fields and exact references --------------------------------------------------------
def _periodic_distance(coord: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
    return torch.remainder(coord - centre + math.pi, 2 * math.pi) - math.pi


def gaussian_puff(
    N: int, centre: tuple[float, float], width: float, amplitude: float = 1.0
) -> torch.Tensor:
    """A periodic Gaussian ``A exp(-d^2 / (2 w^2))`` with ``d`` the minimum-image distance, ``(N, N)``."""
    x, y = grid(N)
    dx = _periodic_distance(x, torch.tensor(centre[0], dtype=torch.float64))
    dy = _periodic_distance(y, torch.tensor(centre[1], dtype=torch.float64))
    return amplitude * torch.exp(-(dx**2 + dy**2) / (2 * width**2))


def puffs(
    N: int,
    count: int | None = None,
    widths_in_cells: tuple[float, float] = (1.25, 2.5),
    amplitudes: tuple[float, float] = (0.5, 1.5),
    generator: torch.Generator | None = None,
    batch: int = 1,
) -> torch.Tensor:
    """``(batch, N, N)`` initial fields: 8-16 periodic Gaussian puffs (spec section 1).

    Widths are drawn in HR cells (``2 pi / N``); the default ``(1.25, 2.5)`` is the spec's
    0.12-0.25 at ``N = 64``, below the 0.39 LR cell, and keeps the same shape at other ``N``.
    """
    if widths_in_cells[0] <= 0 or widths_in_cells[1] < widths_in_cells[0]:
        raise ValueError(f"widths_in_cells must be 0 < low <= high, got {widths_in_cells}")
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    x, y = grid(N)
    cell = 2 * math.pi / N
    out = torch.zeros(batch, N, N, dtype=torch.float64)
    for b in range(batch):
        n = int(torch.randint(8, 17, (1,), generator=generator)) if count is None else int(count)
        centres = torch.rand(n, 2, generator=generator, dtype=torch.float64) * (2 * math.pi)
        widths = (
            widths_in_cells[0]
            + (widths_in_cells[1] - widths_in_cells[0])
            * torch.rand(n, generator=generator, dtype=torch.float64)
        ) * cell
        amps = amplitudes[0] + (amplitudes[1] - amplitudes[0]) * torch.rand(
            n, generator=generator, dtype=torch.float64
        )
        dx = _periodic_distance(x[None], centres[:, 0, None, None])
        dy = _periodic_distance(y[None], centres[:, 1, None, None])
        out[b] = (
            amps[:, None, None] * torch.exp(-(dx**2 + dy**2) / (2 * widths[:, None, None] ** 2))
        ).sum(0)
    return out


def fourier_mode(
    N: int, k: tuple[int, int], velocity: tuple[float, float], kappa: float, t: float
) -> torch.Tensor:
    """Exact solution for ``c0 = cos(k . x)`` under constant ``u``: ``exp(-kappa |k|^2 t) cos(k . (x - u t))``."""
    x, y = grid(N)
    phase = k[0] * (x - velocity[0] * t) + k[1] * (y - velocity[1] * t)
    return math.exp(-kappa * (k[0] ** 2 + k[1] ** 2) * t) * torch.cos(phase)


def gaussian_puff_exact(
    N: int,
    centre: tuple[float, float],
    width: float,
    velocity: tuple[float, float],
    kappa: float,
    t: float,
    images: int = 2,
) -> torch.Tensor:
    """Exact periodic Gaussian under constant ``u``: width^2 grows by ``2 kappa t``, mass kept,
    centre moved by ``u t``; summed over ``images`` periodic copies each way."""
    x, y = grid(N)
    w2 = width**2 + 2 * kappa * t
    cx, cy = centre[0] + velocity[0] * t, centre[1] + velocity[1] * t
    out = torch.zeros(N, N, dtype=torch.float64)
    for i in range(-images, images + 1):
        for j in range(-images, images + 1):
            out += torch.exp(
                -((x - cx + 2 * math.pi * i) ** 2 + (y - cy + 2 * math.pi * j) ** 2) / (2 * w2)
            )
    return out * (width**2 / w2)
