"""The spectral solver against exact solutions, its order, conservation and the CFL check."""

from __future__ import annotations

import math

import pytest
import torch

from paperzoo.advdiffsr.simulator import (
    SpectralAdvDiff,
    cellular_velocity,
    divergence,
    fourier_mode,
    gaussian_puff,
    gaussian_puff_exact,
    make_velocity,
    puffs,
    random_streamfunction_velocity,
    simulate_sequence,
    uniform_velocity,
)


def test_fourier_mode_matches_exact_solution():
    N, kappa, u = 32, 0.01, (0.7, -0.4)
    solver = SpectralAdvDiff(N, kappa, uniform_velocity(N, *u)[0])
    c0 = fourier_mode(N, (3, 2), u, kappa, 0.0)
    out = solver.integrate(c0, 11, 0.05, substeps=5)
    for frame in (1, 5, 10):
        exact = fourier_mode(N, (3, 2), u, kappa, 0.05 * frame)
        assert (out[frame] - exact).abs().max() < 1e-6
    # diffusion alone is exact through the integrating factor
    still = SpectralAdvDiff(N, 0.05, uniform_velocity(N, 0.0, 0.0)[0]).integrate(
        c0 * 0 + fourier_mode(N, (3, 2), (0, 0), 0, 0), 2, 1.0, 1
    )
    assert (still[-1] - fourier_mode(N, (3, 2), (0.0, 0.0), 0.05, 1.0)).abs().max() < 1e-12


def test_gaussian_puff_moves_and_spreads_exactly():
    N, kappa, u = 64, 0.02, (0.5, 0.25)
    c0 = gaussian_puff(N, (2.0, 3.0), 0.5)
    out = SpectralAdvDiff(N, kappa, uniform_velocity(N, *u)[0], dealias=False).integrate(
        c0, 2, 0.5, substeps=20
    )
    exact = gaussian_puff_exact(N, (2.0, 3.0), 0.5, u, kappa, 0.5)
    assert (out[-1] - exact).abs().max() < 1e-6


def test_time_step_halving_gives_fourth_order():
    N = 32
    solver = SpectralAdvDiff(N, 0.005, cellular_velocity(N)[0])
    c0 = puffs(N, generator=torch.Generator().manual_seed(0))[0]
    reference = solver.integrate(c0, 2, 0.4, substeps=400)[-1]
    errors = [
        float((solver.integrate(c0, 2, 0.4, substeps=n)[-1] - reference).abs().max())
        for n in (10, 20)
    ]
    assert 14 <= errors[0] / errors[1] <= 18


@pytest.mark.parametrize(
    "kind, kwargs",
    [("cellular", {}), ("uniform", {"a": 0.3, "b": -0.2}), ("random_streamfunction", {"seed": 3})],
)
def test_mass_is_kept_and_velocity_is_divergence_free(kind, kwargs):
    N = 32
    u = make_velocity(kind, N, **kwargs)
    assert float(divergence(u).abs().max()) < 1e-10
    c0 = puffs(N, generator=torch.Generator().manual_seed(1))
    out = simulate_sequence(c0, u, 0.005, 12, 0.025)
    mass = out.mean((-1, -2))
    assert float((mass - mass[..., :1]).abs().max()) < 1e-10


def test_per_frame_velocity_equals_fixed_when_constant():
    N = 32
    u = cellular_velocity(N)
    c0 = puffs(N, generator=torch.Generator().manual_seed(2))[0]
    fixed = simulate_sequence(c0, u, 0.005, 6, 0.025)
    per_frame = simulate_sequence(c0, u.expand(6, 2, N, N), 0.005, 6, 0.025)
    assert torch.allclose(fixed, per_frame, atol=1e-12)


def test_cfl_limit_raises():
    N = 32
    solver = SpectralAdvDiff(N, 0.005, cellular_velocity(N)[0])
    limit = solver.max_stable_dt()
    assert math.isclose(limit, 1.4 / (solver.max_speed * 16))
    c0 = puffs(N)[0]
    with pytest.raises(ValueError, match="CFL"):
        solver.step(c0, 2 * limit)
    with pytest.raises(ValueError, match="CFL"):
        solver.integrate(c0, 3, 0.5, substeps=1)
    assert solver.substeps_for(0.5) >= math.ceil(0.5 / limit)


def test_bad_solver_inputs():
    with pytest.raises(ValueError, match="kappa"):
        SpectralAdvDiff(32, -0.1, cellular_velocity(32)[0])
    with pytest.raises(ValueError, match="velocity must have shape"):
        SpectralAdvDiff(32, 0.1, torch.zeros(2, 16, 16))
    with pytest.raises(
        ValueError,
        match="unknown velocity 'vortex'; choose from uniform, cellular, random_streamfunction",
    ):
        make_velocity("vortex", 32)
    with pytest.raises(ValueError, match="k_max"):
        random_streamfunction_velocity(32, k_max=20)


def test_puffs_are_seeded():
    a = puffs(32, generator=torch.Generator().manual_seed(5), batch=2)
    b = puffs(32, generator=torch.Generator().manual_seed(5), batch=2)
    c = puffs(32, generator=torch.Generator().manual_seed(6), batch=2)
    assert torch.equal(a, b) and not torch.equal(a, c)
