"""Observation operators, their adjoint, the projection, periodic bicubic and the PDE residual."""

from __future__ import annotations

import math

import pytest
import torch

from paperzoo.advdiffsr.operators import (
    advdiff_residual,
    bicubic_periodic,
    block_mean,
    block_mean_adjoint,
    downsample,
    gradient,
    laplacian,
    nearest_up,
    point_sample,
    project_consistent,
)
from paperzoo.advdiffsr.simulator import cellular_velocity, grid, puffs, simulate_sequence


def test_block_mean_inverts_nearest_up_and_matches_hand_values():
    y = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.allclose(block_mean(nearest_up(y, 4), 4), y, rtol=0, atol=1e-14)
    c = torch.arange(16, dtype=torch.float64).reshape(4, 4)
    assert torch.equal(
        block_mean(c, 2), torch.tensor([[2.5, 4.5], [10.5, 12.5]], dtype=torch.float64)
    )


def test_block_mean_adjoint_identity():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 16, 16, generator=g, dtype=torch.float64)
    y = torch.randn(3, 4, 4, generator=g, dtype=torch.float64)
    assert math.isclose(
        float((block_mean(x, 4) * y).sum()),
        float((x * block_mean_adjoint(y, 4)).sum()),
        rel_tol=1e-12,
    )


@pytest.mark.parametrize("kind, scale", [("block_mean", 4), ("point_sample", 3)])
def test_hard_projection_is_exact_and_idempotent(kind, scale):
    g = torch.Generator().manual_seed(2)
    c = torch.randn(2, 5, 8 * scale, 8 * scale, generator=g, dtype=torch.float64)
    y = torch.randn(2, 5, 8, 8, generator=g, dtype=torch.float64)
    p = project_consistent(c, y, scale, "hard", kind)
    assert torch.allclose(downsample(p, scale, kind), y, atol=1e-12)
    assert torch.allclose(project_consistent(p, y, scale, "hard", kind), p, atol=1e-12)


def test_projection_respects_the_holdout_mask_and_multiplicative_keeps_positivity():
    g = torch.Generator().manual_seed(3)
    c = torch.rand(1, 2, 16, 16, generator=g, dtype=torch.float64) + 0.1
    y = torch.rand(1, 2, 4, 4, generator=g, dtype=torch.float64) + 0.1
    mask = torch.ones_like(y)
    mask[..., 0, 0] = 0
    p = project_consistent(c, y, 4, "hard", mask=mask)
    low = block_mean(p, 4)
    assert torch.allclose(low[..., 1:, :], y[..., 1:, :]) and torch.allclose(
        low[..., 0, 0], block_mean(c, 4)[..., 0, 0]
    )
    m = project_consistent(c, y, 4, "multiplicative")
    assert torch.allclose(block_mean(m, 4), y) and bool((m > 0).all())


def test_periodic_bicubic_is_exact_on_constants_and_shift_equivariant():
    assert torch.allclose(
        bicubic_periodic(torch.full((3, 8, 8), 2.5), 4), torch.full((3, 32, 32), 2.5)
    )
    y = torch.randn(8, 8, generator=torch.Generator().manual_seed(4))
    up = bicubic_periodic(y, 4)
    shifted = bicubic_periodic(torch.roll(y, 1, -1), 4)
    assert torch.allclose(
        torch.roll(up, 4, -1), shifted, atol=1e-6
    )  # wrap padding: no edge effects


def test_point_sample_needs_odd_scale_and_scale_must_divide():
    with pytest.raises(ValueError, match="odd scale"):
        point_sample(torch.zeros(8, 8), 2)
    with pytest.raises(ValueError, match="not divisible by the scale"):
        block_mean(torch.zeros(10, 10), 4)
    with pytest.raises(
        ValueError,
        match="unknown downsample 'lanczos'; choose from block_mean, point_sample, blur_decimate",
    ):
        downsample(torch.zeros(8, 8), 2, "lanczos")


@pytest.mark.parametrize("scheme, tol", [("spectral", 1e-10), ("fd4", 2e-3), ("fd2", 5e-2)])
def test_derivatives_on_a_smooth_field(scheme, tol):
    x, y = grid(32)
    c = torch.sin(2 * x) * torch.cos(y)
    dx, dy = gradient(c, scheme)
    assert (dx - 2 * torch.cos(2 * x) * torch.cos(y)).abs().max() < tol * 4
    assert (dy + torch.sin(2 * x) * torch.sin(y)).abs().max() < tol * 4
    assert (laplacian(c, scheme) + 5 * c).abs().max() < tol * 20


@pytest.fixture(scope="module")
def truth_sequence():
    N = 32
    u = cellular_velocity(N)
    c0 = puffs(N, generator=torch.Generator().manual_seed(0))[0]
    return simulate_sequence(c0, u, 0.005, 16, 0.025), u


def test_residual_floor_of_the_truth_and_a_flipped_sign(truth_sequence):
    seq, u = truth_sequence
    bic = bicubic_periodic(block_mean(seq, 4), 4)
    r_bic = advdiff_residual(bic, u, 0.005, 0.025).norm()
    floor = float(advdiff_residual(seq, u, 0.005, 0.025).norm() / r_bic)
    assert floor < 0.2
    flipped = float(advdiff_residual(seq, -u, 0.005, 0.025).norm() / r_bic)
    assert flipped > 5 * floor
    # the propagator residual of the simulator's own output is zero to rounding
    assert float(advdiff_residual(seq, u, 0.005, 0.025, time="propagator").abs().max()) < 1e-10


def test_residual_hand_value_on_a_constant_velocity_mode():
    N, dt, kappa, u0 = 16, 0.1, 0.0, (1.0, 0.0)
    x, _ = grid(N)
    c = torch.stack([torch.sin(x), torch.sin(x - u0[0] * dt)])
    u = torch.zeros(1, 2, N, N, dtype=torch.float64)
    u[:, 0] = 1.0
    r = advdiff_residual(c, u, kappa, dt)[0]
    # sin(x - dt) - sin(x) + dt/2 (cos(x - dt) + cos(x)), evaluated exactly
    expected = torch.sin(x - dt) - torch.sin(x) + dt / 2 * (torch.cos(x - dt) + torch.cos(x))
    assert torch.allclose(r, expected, atol=1e-12)


def test_residual_bad_inputs(truth_sequence):
    seq, u = truth_sequence
    with pytest.raises(ValueError, match="at least 2 frames"):
        advdiff_residual(seq[:1], u, 0.005, 0.025)
    with pytest.raises(ValueError, match="dt_obs"):
        advdiff_residual(seq, u, 0.005, 0.0)
    with pytest.raises(ValueError, match=r"u must have shape"):
        advdiff_residual(seq, u[..., :16, :16], 0.005, 0.025)
    with pytest.raises(ValueError, match="unknown time scheme"):
        advdiff_residual(seq, u, 0.005, 0.025, time="leapfrog")
