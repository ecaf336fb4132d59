"""The README's Python example, run as written (with fewer steps): the library on the user's
own model and data."""

from __future__ import annotations

import logging

import pytest
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


def _items(count: int, high: float = 1.0, tampered: bool = True) -> list[dict]:
    """Hand-made batches items: 32 x 32 images, every other one tampered (mask value ``high``)
    when ``tampered``, else all authentic."""
    items = []
    for i in range(count):
        mask = torch.zeros(1, 32, 32)
        label = int(tampered and i % 2 == 1)
        if label:
            mask[:, 8:20, 8:20] = high
        image = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(i))
        valid = torch.ones_like(mask)
        kind = "splice" if label else "authentic"
        items.append({"image": image, "mask": mask, "valid": valid, "label": label, "kind": kind})
    return items


def test_own_loader_masks_must_be_0_1_in_training_and_evaluation():
    """The Python path takes mask tensors as they are: a 0/255 mask is refused by training (not
    fit to a target of 255) and by evaluation alike, with the values and the fix named."""
    from torch.utils.data import DataLoader

    from paperzoo.tripinet.pipeline import evaluate_localizer, train_localizer

    own = nn.Conv2d(3, 1, 3, padding=1)
    loader = DataLoader(_items(4, high=255.0), batch_size=4)
    message = r"mask must be binary \(0/1\), got the values 255; divide a 0/255 mask by 255"
    with pytest.raises(ValueError, match=message):
        train_localizer(own, loader, steps=1, progress_bar=False)
    with pytest.raises(ValueError, match=message):
        evaluate_localizer(own, loader)


def test_missing_metrics_are_explained(caplog):
    """No tampered image (or one label only): no F1 / AUC / image AUC, a warning saying why, and
    the counts in the metrics."""
    from torch.utils.data import DataLoader

    from paperzoo.tripinet.pipeline import evaluate_localizer

    own = nn.Conv2d(3, 1, 3, padding=1)
    with caplog.at_level(logging.WARNING, logger="paperzoo.tripinet"):
        metrics = evaluate_localizer(
            own, DataLoader(_items(3, tampered=False), batch_size=2)
        ).metrics
    assert metrics == {"num_images": 3.0, "num_tampered": 0.0, "num_authentic": 3.0}
    text = caplog.text
    assert (
        "none of the 3 evaluated images has a tampered pixel" in text and "num_tampered 0" in text
    )
    assert "all authentic: image_auc needs both" in text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="paperzoo.tripinet"):
        metrics = evaluate_localizer(own, DataLoader(_items(4), batch_size=2)).metrics
    assert {"f1", "auc", "image_auc"} <= set(metrics) and metrics["num_authentic"] == 2
    assert caplog.text == ""


def test_training_masks_are_checked_on_the_host_before_the_copy_to_the_device(monkeypatch):
    """Each training batch's mask is checked once, on the loader's tensors before Lightning moves
    the batch to the device (a check in ``training_step`` made every GPU step wait for the device),
    and only elementwise (no ``unique``) when it passes; called outside a trainer,
    ``training_step`` still refuses a 0/255 mask itself."""
    from torch.utils.data import DataLoader

    from paperzoo.tripinet import metrics, module
    from paperzoo.tripinet.pipeline import train_localizer

    events = []
    check = metrics.check_binary_mask
    monkeypatch.setattr(module, "check_binary_mask", lambda m: (events.append("check"), check(m)))
    transfer = module.TriPINetModule.transfer_batch_to_device

    def spy_transfer(self, batch, device, dataloader_idx):
        events.append("to_device")
        return transfer(self, batch, device, dataloader_idx)

    monkeypatch.setattr(module.TriPINetModule, "transfer_batch_to_device", spy_transfer)
    unique = torch.Tensor.unique
    monkeypatch.setattr(
        torch.Tensor, "unique", lambda *a, **k: events.append("unique") or unique(*a, **k)
    )
    own = nn.Conv2d(3, 1, 3, padding=1)
    train_localizer(own, DataLoader(_items(4), batch_size=2), steps=3, progress_bar=False)
    assert events == ["check", "to_device"] * 3
    bad = module.TriPINetModule(own, steps=1)
    batch = next(iter(DataLoader(_items(2, high=255.0), batch_size=2)))
    with pytest.raises(ValueError, match="got the values 255"):
        bad.training_step(batch, 0)
