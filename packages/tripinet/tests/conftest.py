"""Shared fixtures: one torch thread (the tests are small), small generated sets built once."""

from __future__ import annotations

import pytest

from paperzoo.core.runtime import torch_threads


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """Every test runs on one torch thread (the CI budget); the caller's setting is restored."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="session")
def small_train():
    from paperzoo.tripinet.forgery import ForgeryGenerator

    return ForgeryGenerator("train").generate(48, seed=0)


@pytest.fixture(scope="session")
def small_test():
    from paperzoo.tripinet.forgery import ForgeryGenerator

    return ForgeryGenerator("test").generate(24, seed=1)
