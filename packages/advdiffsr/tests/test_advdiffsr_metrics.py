"""Metrics against hand-computed values and Gaussian toys; the MMD penalty."""

from __future__ import annotations

import math

import pytest
import torch

from paperzoo.advdiffsr import metrics as M
from paperzoo.advdiffsr.model import mmd_imq


def test_deterministic_metrics_hand_values():
    truth = torch.tensor([[3.0, 4.0]])
    pred = torch.tensor([[3.0, 1.0]])
    assert math.isclose(M.rel_l2(pred, truth), 3 / 5)
    assert math.isclose(M.mae(pred, truth), 1.5)
    assert math.isclose(M.rmse(pred, truth), math.sqrt(4.5))
    assert math.isclose(M.psnr(pred, truth, data_range=3.0), 10 * math.log10(9 / 4.5))
    with pytest.raises(ValueError, match="data_range"):
        M.psnr(pred, truth, 0.0)


def test_lr_consistency_and_high_k_ratio():
    c = torch.randn(1, 2, 16, 16, generator=torch.Generator().manual_seed(0))
    from paperzoo.advdiffsr.operators import block_mean

    assert M.lr_consistency(c, block_mean(c, 4), 4) < 1e-6
    assert math.isclose(M.high_k_energy_ratio(c, c, 4), 1.0)
    assert M.high_k_energy_ratio(c * 0.5, c, 4) == pytest.approx(0.25)


def test_crps_one_member_is_mae_and_two_member_hand_value():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(1, 50, generator=g), torch.randn(50, generator=g)
    assert math.isclose(M.crps_fair(x, y), M.mae(x[0], y), rel_tol=1e-12)
    samples = torch.tensor([[0.0], [2.0]])
    truth = torch.tensor([1.0])
    # E|X - y| = 1; sum_ij |xi - xj| = 4; fair: 1 - 4 / (2 * 2 * 1) = 0
    assert math.isclose(M.crps_fair(samples, truth), 0.0, abs_tol=1e-12)


def test_gaussian_toy_is_calibrated():
    g = torch.Generator().manual_seed(2)
    samples, truth = torch.randn(200, 4000, generator=g), torch.randn(4000, generator=g)
    assert abs(M.coverage(samples, truth, 0.5) - 0.5) < 0.05
    assert abs(M.coverage(samples, truth, 0.9) - 0.9) < 0.05
    hist = M.rank_histogram(samples[:9], truth)
    assert hist.shape == (10,) and float((hist - 0.1).abs().max()) < 0.03
    skill = M.spread_skill(samples[:16], truth)
    assert abs(skill["ratio"] - 1) < 0.1
    # an over-confident ensemble covers less than nominal
    assert M.coverage(0.3 * samples, truth, 0.9) < 0.6


def test_spread_skill_rewards_informative_spread():
    g = torch.Generator().manual_seed(3)
    sigma = torch.rand(5000, generator=g) * 2 + 0.1
    truth = sigma * torch.randn(5000, generator=g)
    samples = sigma * torch.randn(16, 5000, generator=g)
    skill = M.spread_skill(samples, truth)
    assert skill["spearman"] > 0.3 and skill["slope"] > 0.5


def test_spread_skill_of_a_collapsed_ensemble_has_no_slope():
    truth = torch.tensor([0.0, 1.0, -2.0, 3.0, 0.5, -1.0])
    # identical members: zero spread everywhere, ensemble-mean error |truth|
    samples = torch.zeros(4, 6)
    with pytest.warns(Warning, match="constant"):
        skill = M.spread_skill(samples, truth, bins=3)
    assert skill["ratio"] == 0.0
    assert math.isnan(skill["slope"]) and math.isnan(skill["spearman"])


def test_spread_skill_refuses_more_bins_than_points():
    samples, truth = torch.randn(4, 2, 2), torch.randn(2, 2)
    with pytest.raises(ValueError, match="10 bins needs at least 10 points, got 4"):
        M.spread_skill(samples, truth)


def test_mmd_zero_for_equal_positive_for_shifted_and_hand_value():
    g = torch.Generator().manual_seed(4)
    a, b = torch.randn(512, 4, generator=g), torch.randn(512, 4, generator=g)
    assert abs(float(mmd_imq(a, b))) < 0.02
    assert float(mmd_imq(a, b + 1.0)) > 0.2
    # m = 2, d = 1, one scale: C = 2; k(0,1) = 2/3, k(0,0)=1 (dropped on the diagonal)
    x, y = torch.tensor([[0.0], [1.0]]), torch.tensor([[0.0], [1.0]])
    within = 2 * (2 / 3) / 2  # two off-diagonal pairs, each 2/3, over m (m - 1) = 2
    cross = 2 * (1 + 1 + 2 / 3 + 2 / 3) / 4
    assert math.isclose(float(mmd_imq(x, y, scales=(1.0,))), 2 * within - cross, rel_tol=1e-6)
    with pytest.raises(ValueError, match="equal shape"):
        mmd_imq(a, b[:10])


def test_ensemble_shape_is_checked():
    with pytest.raises(ValueError, match="samples must be"):
        M.crps_fair(torch.zeros(4, 3), torch.zeros(5))
