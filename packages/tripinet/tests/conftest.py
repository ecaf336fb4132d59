"""Shared fixtures: one torch thread (the tests are small), small generated sets built once."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def small_train():
    from paperzoo.tripinet.forgery import ForgeryGenerator

    return ForgeryGenerator("train").generate(48, seed=0)


@pytest.fixture(scope="session")
def small_test():
    from paperzoo.tripinet.forgery import ForgeryGenerator

    return ForgeryGenerator("test").generate(24, seed=1)
