import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


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
