from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from paperzoo.forgerynas.metrics import equal_error_rate, forgery_scores, video_auc
from paperzoo.forgerynas.probe import colour_histograms


def _arrays():
    rng = np.random.default_rng(0)
    labels = np.array([0, 1] * 20)
    probs = np.clip(0.35 * labels + rng.random(40) * 0.7, 0, 1)
    return probs, labels


def test_auc_ap_acc_match_sklearn():
    probs, labels = _arrays()
    scores = forgery_scores(torch.tensor(probs), torch.tensor(labels))
    assert scores["auc"] == pytest.approx(roc_auc_score(labels, probs), abs=1e-6)
    assert scores["ap"] == pytest.approx(average_precision_score(labels, probs), abs=1e-6)
    assert scores["acc"] == pytest.approx(((probs >= 0.5) == labels).mean(), abs=1e-6)


def test_eer_matches_sklearn_roc():
    """The usual recipe: where scikit-learn's interpolated ROC meets tpr = 1 - fpr."""
    from scipy.interpolate import interp1d
    from scipy.optimize import brentq

    probs, labels = _arrays()
    fpr, tpr, _ = roc_curve(labels, probs)
    expected = brentq(lambda x: 1.0 - x - interp1d(fpr, tpr)(x), 0.0, 1.0)
    assert equal_error_rate(torch.tensor(probs), torch.tensor(labels)) == pytest.approx(
        expected, abs=1e-6
    )


@pytest.mark.parametrize(
    "labels, expected",
    [
        # ROC (fpr, fnr): (0,1) (0,2/3) (1/2,2/3) (1/2,1/3) (1/2,0) (1,0): vertical step at 1/2
        ([1, 0, 1, 1, 0], 0.5),
        # (0,1) (0,1/2) (1/3,1/2) (2/3,1/2) (2/3,0) (1,0): horizontal step at 1/2
        ([1, 0, 0, 1, 0], 0.5),
    ],
)
def test_eer_is_where_the_rates_meet_not_the_mean_at_a_nearest_point(labels, expected):
    """Two ROC points equally near FNR = FPR used to be resolved by float rounding, giving the
    mean at either (7/12 or 5/12); the rates meet at 1/2 on the step between them, the only
    value within max_t min(FNR, FPR) <= EER <= min_t max(FNR, FPR)."""
    probs = torch.tensor([0.9, 0.7, 0.5, 0.3, 0.1])
    assert equal_error_rate(probs, torch.tensor(labels)) == pytest.approx(expected, abs=1e-12)


def test_eer_on_a_tied_group_interpolates_along_its_segment():
    # (0,1) (0,1/2), then the tie at 0.5 takes one fake and one real: (1/2,0); crossing at 1/4
    probs = torch.tensor([0.8, 0.5, 0.5, 0.2])
    assert equal_error_rate(probs, torch.tensor([1, 1, 0, 0])) == pytest.approx(0.25)


@pytest.mark.parametrize("bad", [float("nan"), 2.0, -0.5])
def test_probabilities_that_are_nan_or_outside_the_unit_range_are_refused(bad):
    """A NaN used to score AUC 0 and EER 1 without a word, and a logit silently switched
    torchmetrics' accuracy to sigmoid(score) > 0.5."""
    probs = torch.tensor([bad, 0.2, 0.8, 0.3])
    with pytest.raises(ValueError, match=r"finite and in \[0, 1\]; 1 of 4 are not"):
        forgery_scores(probs, torch.tensor([0, 1, 0, 1]))


def test_probabilities_closer_than_float32_are_not_tied():
    probs = torch.tensor([0.1, 0.1 + 1e-9], dtype=torch.float64)
    assert forgery_scores(probs, torch.tensor([0, 1]))["auc"] == pytest.approx(1.0)
    assert forgery_scores(probs, torch.tensor([0, 1]), torch.tensor([0, 1]), "video")[
        "auc"
    ] == pytest.approx(1.0)


def test_video_auc_from_mean_probability():
    probs = torch.tensor([0.1, 0.3, 0.8, 0.6, 0.4, 0.2, 0.9, 0.7])
    labels = torch.tensor([0, 0, 1, 1, 0, 0, 1, 1])
    videos = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    mean = np.array([0.2, 0.7, 0.3, 0.8])
    assert video_auc(probs, labels, videos) == pytest.approx(roc_auc_score([0, 1, 0, 1], mean))
    assert forgery_scores(probs, labels, videos, "video")["auc"] == pytest.approx(1.0)


def test_one_class_set_is_refused():
    with pytest.raises(ValueError, match="one class"):
        forgery_scores(torch.rand(5), torch.ones(5, dtype=torch.long))


def test_colour_histograms_hand_example():
    image = torch.zeros(1, 3, 2, 2)
    image[0, 0] = torch.tensor([[0.0, 0.99], [0.5, 0.5]])
    hist = colour_histograms(image, bins=4)
    assert hist.shape == (1, 12)
    assert hist[0, :4].tolist() == [0.25, 0.0, 0.5, 0.25]
    assert hist[0, 4:8].tolist() == [1.0, 0.0, 0.0, 0.0]


def test_video_with_both_labels_is_refused_naming_it():
    """A video id whose frames carry real and fake labels has no video label (the amax used to
    make it fake silently, e.g. synthetic source ids shared by real and fake crops)."""
    probs = torch.tensor([0.1, 0.3, 0.8, 0.6, 0.4, 0.2])
    labels = torch.tensor([0, 0, 1, 1, 0, 1])
    videos = torch.tensor([5, 5, 7, 7, 9, 9])  # video 9: one real, one fake frame
    with pytest.raises(ValueError, match="video id 9 holds real and fake frames"):
        video_auc(probs, labels, videos)
    with pytest.raises(ValueError, match="video id 9"):
        forgery_scores(probs, labels, videos, "video")
    # frames are fine: fakes 0.8 and 0.6 above the three reals, 0.2 above one: AUC 7 / 9
    auc = forgery_scores(probs, labels, videos, "frame")["auc"]
    assert auc == pytest.approx(7 / 9, abs=1e-6)
    assert auc == pytest.approx(roc_auc_score(labels.numpy(), probs.numpy()), abs=1e-6)
