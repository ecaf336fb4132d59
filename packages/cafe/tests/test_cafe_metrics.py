"""Metrics against hand computations, on seeded inputs."""

from __future__ import annotations

import math

import pytest
import torch

from paperzoo.cafe.metrics import (
    PSNR_CAP_DB,
    hungarian_match,
    label_accuracy,
    psnr_per_image,
    reconstruction_metrics,
    relative_l2,
    share_above,
    ssim,
    tabular_psnr,
)


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def test_psnr_matches_hand_computation():
    target = torch.full((2, 1, 4, 4), 0.5)
    pred = target.clone()
    pred[0] += 0.1  # mse 0.01 -> 20 dB
    pred[1, 0, 0, 0] += 0.4  # mse 0.16 / 16 = 0.01 -> 20 dB
    assert torch.allclose(psnr_per_image(pred, target), torch.tensor([20.0, 20.0]), atol=1e-4)


def test_psnr_clips_to_unit_range_and_caps_exact_matches():
    target = _rand(3, 1, 8, 8)
    assert torch.equal(psnr_per_image(target, target), torch.full((3,), 100.0))
    # values outside [0, 1] are clipped before the comparison
    assert float(psnr_per_image(target.clamp(0, 1) + (target > 0.999) * 5, target).min()) == 100.0
    zero, one = torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2)
    assert math.isclose(float(psnr_per_image(zero, one)), 0.0, abs_tol=1e-6)


def test_share_and_label_accuracy():
    assert share_above(torch.tensor([10.0, 25.0, 30.0, 20.0])) == 0.5
    assert label_accuracy(torch.tensor([[0.1, 0.9], [0.8, 0.2]]), torch.tensor([1, 1])) == 0.5


def test_hungarian_match_recovers_a_permutation():
    target = _rand(6, 1, 4, 4, seed=1)
    perm = torch.tensor([3, 0, 5, 1, 2, 4])
    pred = torch.empty_like(target)
    pred[perm] = target
    found = hungarian_match(pred, target)
    assert torch.equal(pred[found], target)


def test_hungarian_match_maps_images_from_their_data_range():
    """Images on [0, 255]: clipped to [0, 1] every pixel would be 1 and any matching would do;
    mapped from the data range, the permutation is recovered."""
    target = _rand(6, 1, 4, 4, seed=1) * 255
    perm = torch.tensor([3, 0, 5, 1, 2, 4])
    pred = torch.empty_like(target)
    pred[perm] = target
    found = hungarian_match(pred, target, data_range=(0.0, 255.0))
    assert torch.equal(found, perm)
    assert torch.equal(pred[found], target)


def test_ssim_and_report():
    x = _rand(4, 1, 8, 8, seed=2)
    assert abs(ssim(x, x) - 1.0) < 1e-5
    report = reconstruction_metrics(x, x, torch.eye(4), torch.arange(4))
    assert report["psnr_db"] == 100.0 and report["label_acc"] == 1.0 and report["share_above_20db"] == 1.0


def test_psnr_on_a_data_range_other_than_unit():
    target = torch.full((1, 1, 2, 2), 50.0)
    pred = target + 10.0  # 10 on a width of 100: mse 0.01 after scaling -> 20 dB
    assert torch.allclose(psnr_per_image(pred, target, data_range=(0.0, 100.0)), torch.tensor([20.0]), atol=1e-4)


def test_tabular_metrics_scale_each_feature_by_its_range():
    target = torch.tensor([[0.0, -10.0], [1.0, 10.0]])
    pred = target + torch.tensor([0.1, 2.0])  # 0.1 of each feature's range -> mse 0.01 -> 20 dB
    assert torch.allclose(tabular_psnr(pred, target), torch.tensor([20.0, 20.0]), atol=1e-4)
    expected = math.sqrt(2 * (0.1**2 + 2.0**2)) / math.sqrt(1 + 100 + 100)
    assert relative_l2(pred, target) == pytest.approx(expected, rel=1e-6)
    report = reconstruction_metrics(pred, target, torch.tensor([1, 0]), torch.tensor([1, 1]))
    assert report["psnr_db"] == pytest.approx(20.0, abs=1e-4) and report["label_acc"] == 0.5
    assert "ssim" not in report and report["rel_l2"] == pytest.approx(expected, rel=1e-6)


def test_relative_l2_of_an_all_zero_target_is_zero_or_inf_and_shapes_must_match():
    zero = torch.zeros(2, 3)
    assert relative_l2(zero, zero) == 0.0
    assert relative_l2(torch.full((2, 3), 1e-3), zero) == float("inf")
    with pytest.raises(ValueError, match=r"pred has shape \(2, 3\), target \(2, 1\)"):
        relative_l2(zero, torch.zeros(2, 1))


def test_tabular_psnr_leaves_a_constant_feature_unscaled():
    target = torch.tensor([[1.0, 5.0], [1.0, 7.0]])  # feature 0 constant, feature 1 of range 2
    pred = torch.tensor([[1.5, 5.0], [1.0, 7.0]])  # row 0: error 0.5 on the unscaled feature -> mse 0.125
    expected = torch.tensor([10 * math.log10(1 / 0.125), PSNR_CAP_DB])
    assert torch.allclose(tabular_psnr(pred, target), expected, atol=1e-4)


def test_psnr_of_a_nan_reconstruction_is_nan_not_zero():
    target = torch.full((2, 1, 4, 4), 0.5)
    pred = target.clone()
    pred[0, 0, 0, 0] = float("nan")
    psnr = psnr_per_image(pred, target)
    assert math.isnan(psnr[0]) and psnr[1] == PSNR_CAP_DB
    table = torch.tensor([[float("nan"), 1.0], [0.0, 0.0]])
    assert math.isnan(tabular_psnr(table, torch.tensor([[0.0, 1.0], [1.0, 0.0]]))[0])
    assert math.isnan(reconstruction_metrics(pred, target)["psnr_db"])
