"""Metrics on hand-made masks: F1 and AUC by hand and against scikit-learn; empty masks
excluded; image F1 uses recall; the best-threshold F1 only under its own name."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from paperzoo.tripinet.baselines import NoiseVarianceBaseline
from paperzoo.tripinet.metrics import (
    f1_best_per_image,
    image_auc,
    image_f1,
    pixel_auc,
    pixel_auc_per_image,
    pixel_f1,
    pixel_f1_per_image,
)


def _pair():
    mask = torch.zeros(3, 1, 4, 4)
    mask[0, 0, :2, :2] = 1  # 4 tampered pixels
    mask[1, 0, 0, :] = 1  # 4 tampered pixels
    prob = torch.full((3, 1, 4, 4), 0.2)
    prob[0, 0, :2, :1] = 0.9  # image 0: TP 2, FP 0, FN 2 -> F1 = 4 / 6
    prob[0, 0, 3, 3] = 0.6  # ... plus one FP -> F1 = 4 / 7
    prob[1, 0, 0, :] = 0.7  # image 1: perfect -> F1 = 1
    prob[2, 0, 1, 1] = 0.99  # image 2 is authentic: excluded from pixel metrics
    return prob, mask


def test_pixel_f1_matches_hand_computation_and_skips_empty_masks():
    prob, mask = _pair()
    per_image = pixel_f1_per_image(prob, mask)
    assert torch.allclose(per_image, torch.tensor([4 / 7, 1.0]))
    assert pixel_f1(prob, mask) == pytest.approx((4 / 7 + 1.0) / 2)
    with pytest.raises(ValueError, match="tampered pixel"):
        pixel_f1(prob[2:], mask[2:])


def test_pixel_f1_threshold_is_strict_and_valid_pixels_only():
    prob, mask = _pair()
    assert pixel_f1(prob, mask, threshold=0.6) == pytest.approx((2 * 2 / (2 * 2 + 2) + 1.0) / 2)
    valid = torch.ones_like(mask)
    valid[0, 0, 3, 3] = 0  # the false positive sits in padding
    assert pixel_f1_per_image(prob, mask, valid=valid)[0] == pytest.approx(4 / 6)


def test_pixel_auc_matches_scikit_learn_per_image():
    generator = torch.Generator().manual_seed(0)
    prob = torch.rand(4, 1, 8, 8, generator=generator)
    mask = (torch.rand(4, 1, 8, 8, generator=generator) > 0.7).float()
    mask[3] = 0
    expected = [
        roc_auc_score(mask[i].flatten().numpy(), prob[i].flatten().numpy()) for i in range(3)
    ]
    assert np.allclose(pixel_auc_per_image(prob, mask).numpy(), expected, atol=1e-6)
    assert pixel_auc(prob, mask) == pytest.approx(np.mean(expected), abs=1e-6)


def test_inputs_are_checked():
    prob, mask = _pair()
    with pytest.raises(ValueError, match="binary"):
        pixel_f1(prob, mask * 0.5)
    with pytest.raises(ValueError, match="differ in shape"):
        pixel_f1(prob[:, :, :2], mask)
    with pytest.raises(ValueError, match="probabilities"):
        pixel_f1(prob * 3, mask)


def test_image_metrics():
    labels = torch.tensor([1, 1, 1, 0, 0])
    decisions = torch.tensor([1, 0, 1, 1, 0])  # TP 2, FN 1, FP 1 -> 4 / 6
    assert image_f1(decisions, labels) == pytest.approx(4 / 6)
    # "F1" with specificity for recall would give 2 * 0.667 * 0.5 / 1.167 = 0.571: not this
    scores = torch.tensor([0.9, 0.2, 0.8, 0.7, 0.1])
    assert image_auc(scores, labels) == pytest.approx(roc_auc_score(labels.numpy(), scores.numpy()))
    with pytest.raises(ValueError, match="both"):
        image_auc(scores, torch.ones(5))


def test_best_threshold_f1_is_separate_and_an_upper_bound():
    prob, mask = _pair()
    best = f1_best_per_image(prob, mask)
    assert best == pytest.approx(
        (4 / 6 + 1.0) / 2
    )  # image 0 at a threshold in (0.6, 0.9]: 2 TP, 0 FP
    assert best > pixel_f1(prob, mask)


def test_noise_variance_baseline_finds_a_noisy_patch():
    generator = torch.Generator().manual_seed(0)
    image = 0.5 + 0.01 * torch.randn(1, 3, 64, 64, generator=generator)
    image[..., 16:40, 16:40] += 0.06 * torch.randn(1, 3, 24, 24, generator=generator)
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 16:40, 16:40] = 1
    score = NoiseVarianceBaseline()(image.clamp(0, 1))
    assert score.shape == (1, 1, 64, 64) and score.min() >= 0 and score.max() <= 1
    assert pixel_auc(score, mask) > 0.9


def test_nan_probabilities_are_refused():
    prob, mask = _pair()
    prob[0, 0, 3, 0] = float("nan")  # an authentic pixel of a tampered image
    for metric in (pixel_f1, pixel_auc, f1_best_per_image):
        with pytest.raises(ValueError, match=r"prob \(3, 4, 4\) holds NaN"):
            metric(prob, mask)
    with pytest.raises(ValueError, match=r"scores hold NaN \(1 of 3\)"):
        image_auc(torch.tensor([float("nan"), 0.4, 0.9]), torch.tensor([0, 1, 1]))


def test_image_metrics_refuse_values_other_than_0_1():
    labels = torch.tensor([0, 1, 0])
    # scores 0.2, 0.9, 0.1 cast to bool would be three positive decisions: F1 2 / 4, not 1
    with pytest.raises(
        ValueError, match=r"predicted must be 0/1 \(or bool\), got the values 0.1, 0.2"
    ):
        image_f1(torch.tensor([0.2, 0.9, 0.1]), labels)
    with pytest.raises(ValueError, match="labels must be 0/1 .* 255"):
        image_f1(torch.tensor([0, 1, 0]), labels * 255)
    # labels 1/2 would make 1 the authentic class: AUC 1.0 of scores that rank it first
    with pytest.raises(ValueError, match="labels must be 0/1 .* got the values 2"):
        image_auc(torch.tensor([0.1, 0.5, 0.9]), torch.tensor([1, 2, 2]))
    assert image_f1(torch.tensor([False, True, True]), torch.tensor([0.0, 1.0, 0.0])) == 2 / 3


def test_score_batch_refuses_nan_maps_and_summary_flags_auc_without_authentic_pixels(caplog):
    from paperzoo.tripinet.module import score_batch, summarise_scores

    mask = torch.zeros(3, 1, 2, 2)
    mask[0, 0, 0, 0] = 1
    mask[1] = 1  # every pixel tampered: F1 defined, pixel AUC not
    prob = torch.tensor([[0.9, 0.2], [0.3, 0.1]]).repeat(3, 1, 1, 1)
    prob[1, 0] = torch.tensor([[0.7, 0.7], [0.2, 0.2]])
    valid = torch.ones_like(mask, dtype=torch.bool)
    labels = torch.tensor([1, 1, 0])
    kinds = ["noise", "noise", "none"]
    nan_prob = prob.clone()
    nan_prob[2, 0, 1, 1] = float("nan")  # in the authentic image: no F1 or AUC would see it
    with pytest.raises(
        ValueError, match=r"1 of the 3 probability maps hold NaN \(batch images \[2\]\)"
    ):
        score_batch(nan_prob, mask, valid, labels, kinds)
    caplog.set_level("WARNING")
    summary = summarise_scores([score_batch(prob, mask, valid, labels, kinds)])
    # image 0: F1 1, AUC 1; image 1: TP 2, FN 2 -> F1 4 / 6, no AUC
    assert summary["f1"] == pytest.approx((1 + 4 / 6) / 2)
    assert summary["auc"] == pytest.approx(1.0)
    assert summary["num_tampered"] == 2
    assert "1 of the 2 images with a tampered pixel have no authentic pixel" in caplog.text
    assert "auc averages over the other 1 (f1 over all 2)" in caplog.text
