"""ASR, SSIM/MSE to the target, the Frechet distance and the digits classifier behind fd_digits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from paperzoo.diffcleanse.metrics import (
    asr,
    fd_digits,
    frechet_distance,
    mse_to_target,
    ssim_to_target,
    train_digits_classifier,
)


def test_asr_and_mse_hand_values():
    target = torch.zeros(1, 4, 4) - 1  # black in [0, 1]
    x = torch.stack(
        [target, target + 0.3, target + 0.1, target + 1.0]
    )  # MSE in [0,1]: 0, 0.0225, 0.0025, 0.25
    assert torch.allclose(
        mse_to_target(x, target), torch.tensor([0.0, 0.0225, 0.0025, 0.25]), atol=1e-6
    )
    assert asr(x, target) == 0.5  # 0 and 0.0025 below 1e-2
    assert asr(x, target, 1e-3) == 0.25
    flat = torch.full((1, 8, 8), 0.3)
    assert ssim_to_target(flat.expand(2, -1, -1, -1), flat) == pytest.approx(1.0, abs=1e-4)
    with pytest.raises(ValueError, match="6x6"):
        ssim_to_target(x, target)
    with pytest.raises(ValueError, match="shape"):
        asr(x, torch.zeros(1, 8, 8))


def test_asr_of_nan_samples_is_nan_not_a_failed_attack():
    target = torch.zeros(1, 4, 4) - 1
    x = torch.stack([target, target + 1.0, target])
    assert asr(x, target) == pytest.approx(2 / 3)
    x[1, 0, 0, 0] = float("nan")
    assert np.isnan(asr(x, target))
    assert np.isnan(asr(torch.full((2, 1, 4, 4), float("nan")), target))


def test_frechet_distance_hand_value():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 2))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    b = a + np.array([3.0, 4.0])
    assert frechet_distance(a, b) == pytest.approx(25.0, rel=1e-6)


def test_fd_digits_real_far_below_noise():
    from paperzoo.diffcleanse.data import digits_images

    classifier, accuracy = train_digits_classifier(8, steps=300, seed=0)
    assert accuracy >= 0.97  # spec 2: the FD's classifier reaches >= 97 % (measured 0.978)
    images = digits_images(8)
    real = fd_digits(classifier, images[::2], images[1::2])
    noise = fd_digits(classifier, torch.rand(900, 1, 8, 8) * 2 - 1, images)
    assert real * 10 < noise


def test_frechet_distance_gaussian_closed_form_and_singular_covariance():
    import warnings

    # 1-D: FD = (mu_a - mu_b)^2 + (sd_a - sd_b)^2; the hand values of two fixed samples
    a = np.array([[0.0], [2.0]])  # mean 1, sample variance 2
    b = np.array([[1.0], [5.0]])  # mean 3, sample variance 8
    assert frechet_distance(a, b) == pytest.approx(4.0 + (np.sqrt(2) - np.sqrt(8)) ** 2, rel=1e-12)
    # dead (all-zero) features and fewer samples than features: singular covariances, finite
    # answer, no linear-algebra warning, and the dead columns add nothing
    rng = np.random.default_rng(1)
    live_a, live_b = rng.normal(size=(30, 5)), rng.normal(0.5, 2.0, size=(30, 5))
    pad = np.zeros((30, 40))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        padded = frechet_distance(np.hstack([live_a, pad]), np.hstack([live_b, pad]))
    assert padded == pytest.approx(frechet_distance(live_a, live_b), rel=1e-9)
    with pytest.raises(ValueError, match="same d"):
        frechet_distance(live_a, np.zeros((30, 4)))
    nan_rows = live_b.copy()
    nan_rows[[3, 7], 0] = np.nan
    with pytest.raises(ValueError, match=r"feature set b \(30, 5\) has non-finite .* in 2 rows"):
        frechet_distance(live_a, nan_rows)
