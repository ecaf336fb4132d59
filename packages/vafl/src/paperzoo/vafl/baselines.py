"""Baselines beside VAFL (spec section 3 and V2): centralised training on all features (one model
of the same total size, trained to convergence with Lightning on the core) and single-party
training (each client's block alone plus a head; the best is reported)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

from paperzoo.core.lightning import make_trainer
from paperzoo.vafl.data import VerticalData
from paperzoo.vafl.module import VerticalClassifier
from paperzoo.vafl.runtime import FederationConfig


@dataclass
class BaselineResult:
    accuracy: float
    balanced_accuracy: float
    model: VerticalClassifier


def _scores(model: VerticalClassifier, x: torch.Tensor, y: torch.Tensor, classes: int) -> tuple[float, float]:
    from torchmetrics.functional.classification import multiclass_accuracy

    model.eval()
    with torch.no_grad():
        logits = model(x)
    return (float(multiclass_accuracy(logits, y, classes, average="micro")),
            float(multiclass_accuracy(logits, y, classes, average="macro")))


def train_reference(train_x: torch.Tensor, y_train: torch.Tensor, test_x: torch.Tensor, y_test: torch.Tensor,
                    in_dims: list[int], classes: int, config: FederationConfig, epochs: int = 150,
                    batch_size: int = 128, lr: float = 1e-2, out_dir: Path | None = None,
                    device: str = "cpu") -> BaselineResult:
    """Train :class:`VerticalClassifier` with Adam for ``epochs`` full passes (to convergence on the
    built-in data sets) and score it on the test split."""
    torch.manual_seed(config.seed)
    model = VerticalClassifier(in_dims, classes, preset=config.preset, embed_dim=config.embed_dim,
                               hidden=config.hidden, head_hidden=config.head_hidden, kind=config.kind,
                               lr=lr, max_epochs=epochs)
    loader = DataLoader(TensorDataset(train_x, y_train), batch_size=batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(config.seed))
    trainer = make_trainer(out_dir, max_epochs=epochs, device=device, logger=False, progress_bar=False)
    trainer.fit(model, train_dataloaders=loader)
    model = model.cpu()
    accuracy, balanced = _scores(model, test_x, y_test, classes)
    return BaselineResult(accuracy, balanced, model)


def train_centralised(data: VerticalData, config: FederationConfig, epochs: int = 150,
                      device: str = "cpu") -> BaselineResult:
    """All parties' features in one place: the upper reference of vertical training."""
    return train_reference(data.merged("train"), data.y_train, data.merged("test"), data.y_test,
                           data.in_dims, data.num_classes, config, epochs, device=device)


def train_single_parties(data: VerticalData, config: FederationConfig, epochs: int = 150,
                         device: str = "cpu") -> list[BaselineResult]:
    """One model per party on its own block with its own head (labels assumed co-located)."""
    return [train_reference(data.train_parts[m], data.y_train, data.test_parts[m], data.y_test,
                            [data.in_dims[m]], data.num_classes, config, epochs, device=device)
            for m in range(data.num_parties)]
