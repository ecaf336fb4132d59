import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def digits_data():
    from paperzoo.vafl.data import load_dataset

    return load_dataset("digits", 4, seed=0)


@pytest.fixture(scope="session")
def cancer_data():
    from paperzoo.vafl.data import load_dataset

    return load_dataset("breast_cancer", 4, seed=0)
