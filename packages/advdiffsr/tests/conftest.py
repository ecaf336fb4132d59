import pytest

from paperzoo.core.runtime import torch_threads


@pytest.fixture(autouse=True)
def _one_thread():
    """Every test runs on one torch thread (the CI budget); the caller's setting is restored."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="session")
def small_data_dir(tmp_path_factory):
    """A small simulated data set (N 32, s 4, 16 frames): LR files and, apart, val/test HR."""
    from paperzoo.advdiffsr.data import simulate_dataset

    out = tmp_path_factory.mktemp("advdiffsr-data")
    simulate_dataset(out, n_train=6, n_val=2, n_test=2, hr=32, scale=4, frames=12, seed=0)
    return out
