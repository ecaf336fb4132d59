import pytest

from paperzoo.core.runtime import torch_threads


@pytest.fixture(autouse=True)
def _one_thread():
    """Every test runs on one torch thread (the CI budget); the caller's setting is restored."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="session")
def digits_data():
    from paperzoo.vafl.data import load_dataset

    return load_dataset("digits", 4, seed=0)


@pytest.fixture(scope="session")
def cancer_data():
    from paperzoo.vafl.data import load_dataset

    return load_dataset("breast_cancer", 4, seed=0)
