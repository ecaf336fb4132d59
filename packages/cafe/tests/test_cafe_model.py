"""Model registry: every preset's shapes and gradients, the first-FC split, presets against
explicit arguments, checkpoints, and the party/server protocol a user's own model follows."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from paperzoo.cafe.model import (
    MODELS,
    PartyNet,
    ServerHead,
    VFLModel,
    check_vertical_model,
    create_model,
    list_models,
)
from paperzoo.core import testing


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_has_shapes_and_finite_gradients(name):
    model = create_model(name, seed=0)
    part_shape = MODELS.preset(name)["part_shape"]
    parts = [torch.rand(3, *part_shape, generator=torch.Generator().manual_seed(m)) for m in range(4)]
    logits, features = model(parts, return_features=True)
    assert logits.shape == (3, 10)
    assert features[0].shape == (3, model.parties[0].d1)
    assert check_vertical_model(model).classes == 10
    testing.check_finite_gradients(model, parts)


def test_registry_names_and_unknown_model():
    assert list_models() == ["paper", "paper_cifar", "paper_mnist", "tiny", "tiny_digits", "tiny_tabular"]
    with pytest.raises(ValueError, match="tiny_digits"):
        create_model("resnet")
    with pytest.raises(ValueError, match="valid:"):
        create_model("tiny", width=3)


def test_explicit_arguments_override_the_preset():
    model = create_model("tiny", fc_dims=(32, 5), classes=3, num_parties=2, seed=0)
    assert (model.parties[0].d2, model.parties[0].out_dim, model.num_parties) == (32, 5, 2)
    assert model.head.linear.out_features == 3
    assert MODELS.preset("tiny")["fc_dims"] == (64, 10)  # the preset itself is unchanged


def test_tiny_digits_sizes_match_spec():
    model = create_model("tiny", seed=0)
    party = model.parties[0]
    assert (party.d1, party.d2) == (128, 64)
    assert model.head.linear.in_features == 40
    assert tuple(party.first_fc.weight.shape) == (64, 128)  # torch stores W as (out, in)


def test_paper_presets_flatten_to_2048():
    assert create_model("paper_mnist").parties[0].d1 == 2048
    assert create_model("paper_cifar").parties[0].d1 == 2048


def test_tabular_parties_hold_uneven_column_blocks():
    model = create_model("tiny_tabular", part_shapes=[(8,), (8,), (7,), (7,)], seed=0)
    assert [p.d1 for p in model.parties] == [8, 8, 7, 7]  # H is the party's own columns
    assert check_vertical_model(model).part_shapes == ((8,), (8,), (7,), (7,))


def test_seeded_models_are_identical():
    a, b = create_model("tiny", seed=3), create_model("tiny", seed=3)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))


def test_double_softmax_option_reproduces_official_defect():
    model = create_model("tiny", double_softmax=True, seed=0)
    out = model([torch.rand(2, 1, 4, 4) for _ in range(4)])
    assert torch.allclose(out.sum(1), torch.ones(2))


def test_checkpoint_roundtrip(tmp_path):
    testing.check_checkpoint_roundtrip(create_model("tiny", seed=0), tmp_path)


def test_own_modules_follow_the_protocol_through_party_net():
    parties = [PartyNet(nn.Sequential(nn.Linear(5, 6), nn.Tanh()), nn.Linear(6, 4), nn.ReLU(), part_shape=(5,))
               for _ in range(2)]
    model = VFLModel(parties, ServerHead(8, 3))
    spec = check_vertical_model(model)
    assert (spec.num_parties, spec.d1, spec.d2, spec.classes) == (2, (6, 6), (4, 4), 3)


def test_a_model_outside_the_protocol_is_told_what_is_missing():
    with pytest.raises(ValueError, match=r"missing: model.parties .*model.head"):
        check_vertical_model(nn.Linear(3, 3))
    no_bias = create_model("tiny", first_fc_bias=False)
    with pytest.raises(ValueError, match="party 0: a bias on first_fc"):
        check_vertical_model(no_bias)
    with pytest.raises(ValueError, match="first_fc must be an nn.Linear"):
        PartyNet(nn.Identity(), nn.Identity(), part_shape=(3,))
