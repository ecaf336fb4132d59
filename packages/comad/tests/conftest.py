import pytest

from paperzoo.core.runtime import torch_threads


@pytest.fixture(autouse=True)
def _one_thread():
    """Every test runs on one torch thread (the CI budget); the caller's setting is restored."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="session")
def tray_root(tmp_path_factory):
    """A small generated tray category (112 px) shared by the model and CLI tests."""
    from paperzoo.comad.synth import SplitSizes, generate_category

    root = tmp_path_factory.mktemp("loco")
    generate_category(root, "tray", seed=0, sizes=SplitSizes(12, 6, 6, 10, 3), image_size=112)
    return root


@pytest.fixture(scope="session")
def fitted_tiny(tray_root):
    from paperzoo.comad.data import LocoCategory
    from paperzoo.comad.model import create_model

    loco = LocoCategory(tray_root, "tray")
    model = create_model("tiny").fit(loco.train().images, loco.val().images)
    return model, loco
