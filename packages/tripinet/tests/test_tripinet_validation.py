"""Spec section 5's test-suite version: the noise stream learns the generated forgeries."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from paperzoo.tripinet.data import ForgeryDataset
from paperzoo.tripinet.forgery import ForgeryGenerator
from paperzoo.tripinet.model import create_model
from paperzoo.tripinet.pipeline import evaluate_localizer, train_localizer
from paperzoo.tripinet.validation import ValidationConfig, pass_flags, run_arm, summarise


@pytest.mark.slow
@pytest.mark.xfail(
    reason="known miss at this commit (F1 0.17 with the first preset; still under "
    "the lines with the current one); see README 'Not yet done'",
    strict=False,
)
def test_reduced_validation_nofreq_learns():
    """400 train / 100 test images, ``nofreq`` (RGB + noise, gCMDA) for 250 steps: F1 >= 0.3."""
    train_set = ForgeryGenerator("train").generate(400, seed=0)
    test_set = ForgeryGenerator("test").generate(100, seed=1)
    config = ValidationConfig(num_train=400, num_test=100, steps=250, arms=("nofreq",), seeds=1)
    result = run_arm("nofreq", 0, config, train_set, test_set)
    assert result["f1"] >= 0.3, result
    assert result["auc"] > 0.8, result


def test_same_seed_same_numbers(small_train, small_test):
    def run():
        torch.manual_seed(0)  # the initial weights; train_localizer seeds the rest
        net = create_model("tiny", streams=("rgb", "noise"))
        loader = DataLoader(
            ForgeryDataset(small_train, augment=True, seed=0),
            batch_size=8,
            shuffle=True,
            drop_last=True,
        )
        result = train_localizer(net, loader, steps=3, seed=0, progress_bar=False)
        return result.losses, evaluate_localizer(
            net, DataLoader(ForgeryDataset(small_test), batch_size=24)
        ).metrics

    assert run() == run()


def test_summary_and_pass_flags():
    results = [
        {
            "arm": "full",
            "seed": s,
            "seconds": 1.0,
            "f1": 0.6 + 0.1 * s,
            "auc": 0.95,
            "image_auc": 0.9,
            "f1_noise": 0.8,
            "f1_jpeg": 0.5,
            "robust_jpeg75_f1": 0.4,
        }
        for s in (0, 1)
    ]
    results += [
        {"arm": "plain", "seed": 0, "seconds": 1.0, "f1": 0.7, "auc": 0.9, "image_auc": 0.9},
        {"arm": "nonoise", "seed": 0, "seconds": 1.0, "f1": 0.3, "auc": 0.8, "f1_noise": 0.2},
    ]
    metrics, rows = summarise(results, {"f1": 0.2, "auc": 0.6})
    assert metrics["full_f1"] == pytest.approx(0.65) and metrics["full_f1_seed1"] == pytest.approx(
        0.7
    )
    assert abs(metrics["full_minus_plain_f1"] - (-0.05)) < 1e-12
    assert (
        metrics["pass_full_minus_plain_ge_-0.02"] == 0
        and metrics["pass_nonoise_lower_on_noise"] == 1
    )
    assert metrics["pass_full_beats_noisevar"] == 1 and "pass_rgb_f1_le_0.3" not in metrics
    assert pass_flags({"rgb_f1": 0.3})["pass_rgb_f1_le_0.3"] == 1
    assert [r["arm"] for r in rows][:3] == ["full", "plain", "nonoise"]


def test_robustness_rows_name_the_seed_they_were_measured_on():
    results = [
        {"arm": "full", "seed": 1, "seconds": 1.0, "f1": 0.5, "robust_jpeg75_f1": 0.4},
        {"arm": "full", "seed": 2, "seconds": 1.0, "f1": 0.6},
    ]
    _, rows = summarise(results, {"f1": 0.2})
    assert [r["arm"] for r in rows if "after" in r["arm"]] == ["full seed 1 after jpeg:75"]
