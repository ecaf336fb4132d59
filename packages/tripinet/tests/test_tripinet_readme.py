"""The README's Python example, run as written (with fewer steps): the library on the user's
own model and data."""

from __future__ import annotations

import torch
from torch import nn


def test_readme_python_example(tmp_path):
    # --- README example -------------------------------------------------------------------
    from torch.utils.data import DataLoader

    from paperzoo.tripinet import ForgeryGenerator, create_model, pixel_f1
    from paperzoo.tripinet.data import ForgeryDataset
    from paperzoo.tripinet.pipeline import evaluate_localizer, predict_masks, train_localizer

    train_set = ForgeryGenerator("train").generate(32, seed=0)  # offline forgeries
    test_set = ForgeryGenerator("test").generate(16, seed=1)  # other photographs
    net = create_model("tiny", streams=("rgb", "noise", "freq"), fusion="gcmda")
    loader = DataLoader(ForgeryDataset(train_set, augment=True), batch_size=8, shuffle=True)
    train_localizer(net, loader, steps=2, lr=2e-3)
    report = evaluate_localizer(
        net, DataLoader(ForgeryDataset(test_set), batch_size=16), perturbation="jpeg:75"
    )
    maps = predict_masks(net, [test_set.images[0].float() / 255])  # any size: padded inside
    # --- end -------------------------------------------------------------------------------
    assert {"f1", "auc"} <= set(report.metrics)
    assert maps[0].shape == (64, 64)
    assert 0.0 <= float(maps[0].min()) and float(maps[0].max()) <= 1.0
    assert pixel_f1(torch.full((1, 4, 4), 0.9), torch.ones(1, 4, 4)) == 1.0


def test_own_module_trains_and_evaluates():
    from torch.utils.data import DataLoader

    from paperzoo.tripinet import ForgeryGenerator
    from paperzoo.tripinet.data import ForgeryDataset
    from paperzoo.tripinet.pipeline import evaluate_localizer, train_localizer

    own = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 1, 3, padding=1))
    data = ForgeryGenerator("train").generate(16, seed=2)
    result = train_localizer(own, DataLoader(ForgeryDataset(data), batch_size=8), steps=2)
    assert len(result.losses) == 2 and all(torch.isfinite(torch.tensor(result.losses)))
    assert "f1" in evaluate_localizer(own, DataLoader(ForgeryDataset(data), batch_size=8)).metrics
