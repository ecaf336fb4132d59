"""Shared fixtures: small teacher routes recorded once per test session."""

from __future__ import annotations

import pytest
import torch

from paperzoo.rco.data import DigitsDataModule
from paperzoo.rco.pipeline import train_teacher


@pytest.fixture(scope="session")
def digits_module() -> DigitsDataModule:
    return DigitsDataModule(batch_size=64, seed=0)


@pytest.fixture(scope="session")
def mlp_route(tmp_path_factory, digits_module):
    """An ``mlp_teacher`` (dropout 0.2) route on digits: 6 epochs, 6 checkpoints."""
    torch.manual_seed(0)
    result = train_teacher(digits_module, tmp_path_factory.mktemp("mlp") / "route", "mlp_teacher",
                           {"in_features": 64, "num_classes": 10}, epochs=6,
                           extra={"data": "digits", "seed": 0})
    return result.route


@pytest.fixture(scope="session")
def cnn_route(tmp_path_factory, digits_module):
    """A ``cnn_tiny`` (BatchNorm) route on digits: 3 epochs."""
    torch.manual_seed(0)
    result = train_teacher(digits_module, tmp_path_factory.mktemp("cnn") / "route", "cnn_tiny",
                           {"in_chans": 1, "num_classes": 10}, epochs=3)
    return result.route
