from __future__ import annotations

import json

import pytest
import torch

from paperzoo.forgerynas.model import CascadedPyramidNet, create_model, list_models
from paperzoo.forgerynas.search_space import (
    BUILTIN_GENOTYPES,
    GENOTYPE_FORMAT,
    Genotype,
    load_genotype,
    random_genotype,
    resolve_genotype,
)


def test_genotype_json_roundtrip_builds_the_same_network(tmp_path):
    genotype = random_genotype("forgery", 3, seed=4)
    path = genotype.save(tmp_path / "g.json")
    loaded = load_genotype(path)
    assert loaded == genotype
    torch.manual_seed(0)
    a = CascadedPyramidNet(genotype, C=4, layers=4).eval()
    b = CascadedPyramidNet(loaded, C=4, layers=4).eval()
    assert {k: v.shape for k, v in a.state_dict().items()} == {
        k: v.shape for k, v in b.state_dict().items()
    }
    b.load_state_dict(a.state_dict())
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(a(x), b(x))


def test_random_genotype_is_seeded_and_never_none():
    assert random_genotype("forgery", 4, 1) == random_genotype("forgery", 4, 1)
    assert random_genotype("forgery", 4, 1) != random_genotype("forgery", 4, 2)
    assert "none" not in random_genotype("darts", 4, 3).ops_used()


def test_paper_cross_builds_and_pyramid_sizes():
    net = CascadedPyramidNet("paper-cross", C=4, layers=4).eval()
    sizes = [f.shape[-1] for f in net.features(torch.rand(1, 3, 64, 64))]
    assert sizes == [64, 32, 16, 8, 4]
    assert net(torch.rand(2, 3, 64, 64)).shape == (2, 2)
    assert BUILTIN_GENOTYPES["darts-v2"].space == "darts"


def test_input_too_small_for_four_reductions():
    with pytest.raises(ValueError, match="four reductions"):
        CascadedPyramidNet("paper-cross", C=4, layers=4)(torch.rand(1, 3, 24, 24))


def _good():
    return random_genotype("forgery", 2, 0).to_dict()


@pytest.mark.parametrize(
    "edit,match",
    [
        (lambda d: d.update(format="other"), "format tag"),
        (lambda d: d.update(steps=3), "steps=3 needs 6"),
        (lambda d: d["normal"].__setitem__(0, ["SepCDC_3x3_0.5", 5]), "out of range"),
        (lambda d: d["reduce"].__setitem__(1, ["sep_conv_3x3", 0]), "not a non-none op"),
        (lambda d: d["reduce"].__setitem__(1, ["none", 0]), "not a non-none op"),
        (lambda d: d.update(space="nas"), "unknown search space"),
        (lambda d: d.pop("normal"), "missing field"),
        (lambda d: d.update(normal="SepCDC"), "pairs"),
        (lambda d: d.update(normal_concat=[2, 3, 3]), r"normal_concat \[2, 3, 3\] lists .*\[3\]"),
        (lambda d: d.update(reduce_concat=[2, 2]), r"reduce_concat \[2, 2\] lists .*\[2\]"),
    ],
)
def test_malformed_genotypes_are_refused(tmp_path, edit, match):
    data = _good()
    edit(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=match) as error:
        load_genotype(path)
    assert str(path) in str(error.value)


def test_genotype_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_genotype(tmp_path / "missing.json")
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_genotype(tmp_path / "x.json")
    with pytest.raises(ValueError, match="random:SEED"):
        resolve_genotype("random:abc")
    assert resolve_genotype("random:3", steps=2) == random_genotype("forgery", 2, 3)
    assert Genotype.from_dict(_good()).to_dict()["format"] == GENOTYPE_FORMAT


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_gives_two_logits_with_finite_gradients(name):
    from paperzoo.core.testing import check_finite_gradients

    small = {
        "tiny": dict(C=4, layers=4),
        "paper": dict(C=4, layers=4),
        "hand_cnn": dict(C=4),
        "supernet_tiny": dict(C=4, layers=3, steps=2),
        "supernet_paper": dict(C=8, layers=3, steps=2),
        "timm_resnet10t": {},
    }[name]
    torch.manual_seed(0)
    model = create_model(name, **small)
    x = torch.rand(2, 3, 32, 32)
    assert model(x).shape == (2, 2)
    check_finite_gradients(model, x)


def test_explicit_overrides_beat_the_preset():
    net = create_model("tiny", C=4, layers=4)
    assert net.stem[0].out_channels == 12 and len(net.cells) == 4 and net.reductions == (0, 1, 2, 3)
    with pytest.raises(ValueError, match="takes no"):
        create_model("tiny", width=3)


def test_timm_weights_that_match_no_key_are_refused(tmp_path):
    """TimmNet loaded its weights file with strict=False: a file sharing no key with the network
    left it random, silently."""
    from paperzoo.core.checkpoint import save_weights
    from paperzoo.forgerynas.model import TimmNet

    torch.manual_seed(0)
    source = TimmNet()
    save_weights(source.net, tmp_path / "good.safetensors")
    loaded = TimmNet(weights=str(tmp_path / "good.safetensors"))
    for key, value in source.net.state_dict().items():
        if not key.startswith("fc."):  # the classifier is new
            assert torch.equal(loaded.net.state_dict()[key], value), key
    save_weights({"encoder.weight": torch.zeros(3)}, tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match=r"other\.safetensors: no key matches timm resnet10t"):
        TimmNet(weights=str(tmp_path / "other.safetensors"))
    first = next(iter(source.net.state_dict()))
    save_weights({first: torch.zeros(2)}, tmp_path / "shape.safetensors")
    with pytest.raises(ValueError, match=rf"shape\.safetensors: key '{first}' has shape"):
        TimmNet(weights=str(tmp_path / "shape.safetensors"))
