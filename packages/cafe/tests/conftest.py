"""Shared fixtures: one thread (tiny models run fastest that way) and a small frozen VFL run."""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture()
def small_run():
    """Digits, 4 parties, N = 40, K = 20, frozen model (the spec's test-suite setting)."""
    from paperzoo.cafe.config import Scenario
    from paperzoo.cafe.pipeline import build_run

    return build_run(Scenario(n_samples=40, batch_size=20, seed=0))
