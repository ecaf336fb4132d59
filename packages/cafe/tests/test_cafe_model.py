"""Model registry: shapes, gradients, the first-FC split, presets, checkpoints."""

from __future__ import annotations

import pytest
import torch

from paperzoo.cafe.model import create_model, list_models
from paperzoo.core import testing

PART_INPUTS = {"tiny_digits": (1, 4, 4), "paper_mnist": (1, 14, 14), "paper_cifar": (3, 16, 16)}


@pytest.mark.parametrize("name", ["tiny_digits", "paper_mnist", "paper_cifar"])
def test_registry_shapes_and_gradients(name):
    model = create_model(name, seed=0)
    parts = [torch.rand(3, *PART_INPUTS[name]) for _ in range(4)]
    logits, features = model(parts, return_features=True)
    assert logits.shape == (3, 10)
    assert features[0].shape == (3, model.parties[0].d1)
    testing.check_finite_gradients(model, parts)


def test_tiny_digits_sizes_match_spec():
    model = create_model("tiny", seed=0)
    party = model.parties[0]
    assert (party.d1, party.d2) == (128, 64)
    assert model.head.linear.in_features == 40
    assert tuple(party.first_fc.weight.shape) == (64, 128)  # torch stores W as (out, in)


def test_paper_presets_flatten_to_2048():
    assert create_model("paper_mnist").parties[0].d1 == 2048
    assert create_model("paper_cifar").parties[0].d1 == 2048


def test_unknown_model_lists_valid_names():
    with pytest.raises(ValueError, match="tiny_digits"):
        create_model("resnet")
    assert "tiny" in list_models() and "paper" in list_models()


def test_seeded_models_are_identical():
    a, b = create_model(seed=3), create_model(seed=3)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))


def test_double_softmax_option_reproduces_official_defect():
    model = create_model(double_softmax=True, seed=0)
    out = model([torch.rand(2, 1, 4, 4) for _ in range(4)])
    assert torch.allclose(out.sum(1), torch.ones(2))


def test_checkpoint_roundtrip(tmp_path):
    testing.check_checkpoint_roundtrip(create_model(seed=0), tmp_path)
