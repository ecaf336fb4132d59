"""Bound, noise, opacus accounting and the inversion attack."""

import math

import pytest
import torch

from paperzoo.vafl.privacy import (
    EmbeddingAccountant,
    EmbeddingBound,
    FeatureInversionAttack,
    GaussianPerturbation,
    opacus_epsilon,
)


def test_clip_bound_matches_hand_values():
    h = torch.tensor([[3.0, 4.0], [0.3, 0.4]])
    out = EmbeddingBound(1.0, "clip")(h)
    torch.testing.assert_close(out, torch.tensor([[0.6, 0.8], [0.3, 0.4]]))
    tanh = EmbeddingBound(2.0, "tanh")(torch.full((5, 4), 100.0))
    assert tanh.norm(dim=-1).max() <= 2.0 + 1e-6
    assert EmbeddingBound(1.0).sensitivity == 2.0


def test_noise_is_seeded_and_has_the_right_scale():
    a = GaussianPerturbation(0.5, torch.Generator().manual_seed(1))(torch.zeros(20000, 2))
    b = GaussianPerturbation(0.5, torch.Generator().manual_seed(1))(torch.zeros(20000, 2))
    assert torch.equal(a, b)
    assert a.std().item() == pytest.approx(0.5, rel=0.03)


@pytest.mark.parametrize("steps", [1, 250])
def test_epsilon_equals_opacus_called_directly(steps):
    from opacus.accountants import RDPAccountant

    accountant = EmbeddingAccountant(sigma=1.5, clip=0.5, delta=1e-5)
    accountant.step(0.02, steps)
    reference = RDPAccountant()
    for _ in range(steps):
        reference.step(noise_multiplier=1.5 / (2 * 0.5), sample_rate=0.02)
    assert accountant.epsilon() == reference.get_epsilon(delta=1e-5)
    assert accountant.epsilon() == pytest.approx(opacus_epsilon(1.5, [(0.02, steps)], 1e-5), rel=1e-12)


def test_epsilon_falls_strictly_with_sigma():
    values = []
    for sigma in (0.1, 0.25, 0.5, 1.0, 2.0, 4.0):
        accountant = EmbeddingAccountant(sigma, 1.0)
        accountant.step(1.0)
        accountant.step(0.01, 500)
        values.append(accountant.epsilon())
    assert all(b < a for a, b in zip(values, values[1:]))
    zero = EmbeddingAccountant(0.0, 1.0)
    assert zero.epsilon() == 0.0
    zero.step(0.01)
    assert math.isinf(zero.epsilon())


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"sigma": -0.1, "clip": 1.0}, "sigma"),
    ({"sigma": 1.0, "clip": 0.0}, "clip"),
    ({"sigma": 1.0, "clip": 1.0, "delta": 1.0}, "delta"),
    ({"sigma": 1.0, "clip": 1.0, "delta": 0.0}, "delta"),
])
def test_bad_privacy_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EmbeddingAccountant(**kwargs)


def test_noise_without_bound_is_refused():
    from paperzoo.vafl.privacy import check_privacy_parameters

    with pytest.raises(ValueError, match="without a bound"):
        check_privacy_parameters(0.5, 1.0, bound="none")
    with pytest.raises(ValueError, match="sigma"):
        GaussianPerturbation(-1.0)


def test_attack_r2_falls_with_noise():
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(500, 6, generator=generator)
    embedding = features @ torch.randn(6, 8, generator=generator) / 3
    clean = FeatureInversionAttack(seed=0).run(embedding, features)
    noisy = FeatureInversionAttack(seed=0).run(embedding + 3.0 * torch.randn(500, 8, generator=generator), features)
    assert clean > 0.9
    assert noisy < clean - 0.3
