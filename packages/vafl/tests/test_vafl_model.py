"""Model registry: presets, shapes, finite gradients, checkpoints."""

import pytest
import torch

from paperzoo.core import testing
from paperzoo.vafl.model import LocalEmbedding, SumHead, create_model, list_models


@pytest.mark.parametrize("name", list_models())
def test_every_preset_builds_and_gets_gradients(name, tmp_path):
    model = create_model(name, in_dims=[5, 7, 3], classes=4)
    parts = [torch.randn(6, 5), torch.randn(6, 7), torch.randn(6, 3)]
    out = model(parts)
    assert out.shape == ((6,) if name == "linear" else (6, 4))
    testing.check_finite_gradients(model, parts)
    testing.check_checkpoint_roundtrip(model, tmp_path)


def test_unknown_preset_and_option():
    with pytest.raises(ValueError, match="choose from linear, paper, tiny"):
        create_model("huge", in_dims=[3], classes=2)
    with pytest.raises(ValueError, match="takes no \\['depth'\\]"):
        create_model("tiny", in_dims=[3], classes=2, depth=3)


@pytest.mark.parametrize("name", list_models())
def test_registry_builds_the_preset_sizes_and_explicit_sizes_win(name):
    from paperzoo.vafl.config import MODEL_PRESETS

    sizes = MODEL_PRESETS[name]
    model = create_model(name, in_dims=[5, 7], classes=3)
    assert model.config.embed_dim == sizes["embed_dim"] and model.config.kind == sizes["kind"]
    assert model.locals[0].embed_dim == sizes["embed_dim"]
    if name != "linear":
        wider = create_model(name, in_dims=[5, 7], classes=3, embed_dim=6, hidden=5)
        assert (wider.config.embed_dim, wider.config.hidden) == (6, 5)
        assert wider.config.head_hidden == sizes["head_hidden"]


@pytest.mark.parametrize("name", list_models())
def test_federation_config_preset_fills_only_unset_sizes(name):
    from paperzoo.vafl.config import MODEL_PRESETS, FederationConfig

    config = FederationConfig(preset=name)
    assert config.model_sizes() == MODEL_PRESETS[name]
    explicit = FederationConfig(preset=name, embed_dim=3)
    assert explicit.embed_dim == 3 and explicit.hidden == MODEL_PRESETS[name]["hidden"]
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        FederationConfig(preset="huge")


def test_cnn_embedding_and_sum_head():
    embedding = LocalEmbedding(3, 8, hidden=4, kind="cnn")
    assert embedding(torch.randn(2, 3, 16, 16)).shape == (2, 8)
    with pytest.raises(ValueError, match="channels"):
        embedding(torch.randn(2, 48))
    head = SumHead(3)
    torch.testing.assert_close(head(torch.tensor([[1.0, 2.0, 3.0]])), torch.tensor([6.0]))


def test_package_imports_light_and_offline():
    import subprocess
    import sys

    code = ("import sys, paperzoo.vafl as v; assert v.__version__ == '0.1.0'; "
            "assert 'lightning' not in sys.modules and 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_every_lazy_export_resolves():
    import paperzoo.vafl as vafl

    for name in vafl.__all__:
        assert getattr(vafl, name) is not None, name
    with pytest.raises(AttributeError, match="attribute NotAThing"):
        vafl.NotAThing  # noqa: B018


def test_predict_federation_noise_follows_its_seed():
    """``sigma > 0`` perturbs the released embeddings from a generator seeded with ``seed``: the
    same seed gives the same predictions, another seed others; sigma 0 ignores the seed."""
    from paperzoo.vafl.pipeline import predict_federation

    torch.manual_seed(0)
    model = create_model("tiny", in_dims=[4, 4], classes=5)
    generator = torch.Generator().manual_seed(1)
    parts = [torch.randn(400, 4, generator=generator), torch.randn(400, 4, generator=generator)]

    def predict(seed, sigma=3.0):
        return predict_federation(model, parts, sigma=sigma, seed=seed)

    assert torch.equal(predict(0), predict(0)) and torch.equal(predict(7), predict(7))
    assert not torch.equal(predict(0), predict(7))
    assert torch.equal(predict(0, sigma=0.0), predict(7, sigma=0.0))
    default = predict_federation(model, parts, sigma=3.0)  # seed 0 by default
    assert torch.equal(default, predict(0))
