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
    probs, labels = _arrays()
    fpr, tpr, _ = roc_curve(labels, probs, drop_intermediate=False)
    i = np.argmin(np.abs((1 - tpr) - fpr))
    assert equal_error_rate(torch.tensor(probs), torch.tensor(labels)) == pytest.approx(
        (fpr[i] + 1 - tpr[i]) / 2, abs=1e-6
    )


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
