"""Defences: fake gradients keep the rank order on the gradient's scale, noise, pruning, errors."""

from __future__ import annotations

import pytest
import torch

from paperzoo.cafe.defenses import (
    ClipAndNoise,
    FakeGradients,
    GaussianNoise,
    GradientPruning,
    make_defense,
)


def _grads():
    g = torch.Generator().manual_seed(0)
    return {"w": torch.randn(16, 32, generator=g) * 1e-3, "b": torch.randn(16, generator=g) * 1e-3}


def test_fake_gradients_keep_rank_order_and_scale():
    grads = _grads()
    fake = FakeGradients(seed=0)(grads)
    for name, true in grads.items():
        assert fake[name].shape == true.shape
        assert not torch.equal(fake[name], true)
        assert torch.equal(fake[name].flatten().argsort(), true.flatten().argsort())
        ratio = float(fake[name].std() / true.std())
        assert 0.5 < ratio < 2.0, f"matched sigma should keep the scale, got ratio {ratio:.2f}"


def test_fake_gradients_best_candidate_and_retry_cap():
    grads = _grads()
    strict = FakeGradients(nu=1, tau=0.0, max_resample=3, seed=0)
    loose = FakeGradients(nu=1, tau=10.0, max_resample=3, seed=0)
    d_strict = (strict(grads)["w"].sort().values - grads["w"].flatten().sort().values.view(16, 32)).norm()
    d_loose = (loose(grads)["w"].sort().values - grads["w"].flatten().sort().values.view(16, 32)).norm()
    assert torch.isfinite(d_strict) and torch.isfinite(d_loose)  # tau=0 stops after the cap
    naive = FakeGradients(sigma=1.0, seed=0)(grads)["w"]
    assert float(naive.std()) > 100 * float(grads["w"].std())  # an absolute sigma swamps 1e-3 gradients


def test_fake_gradients_are_seeded():
    a, b = FakeGradients(seed=4)(_grads()), FakeGradients(seed=4)(_grads())
    assert torch.equal(a["w"], b["w"])


def test_noise_and_pruning():
    grads = _grads()
    noisy = GaussianNoise(std=0.5, seed=0)({"x": torch.zeros(20000)})["x"]
    assert abs(float(noisy.std()) - 0.5) < 0.02
    pruned = GradientPruning(0.75)(grads)["w"]
    assert int((pruned == 0).sum()) == 384
    kept = grads["w"].abs() > grads["w"].abs().flatten().kthvalue(384).values
    assert torch.equal(pruned[kept], grads["w"][kept])


def test_clip_and_noise_clips_the_upload():
    grads = {"w": torch.ones(100)}
    out = ClipAndNoise(clip=1.0, noise_multiplier=0.0)(grads)["w"]
    assert abs(float(out.norm()) - 1.0) < 1e-5


def test_clip_and_noise_epsilon_from_opacus():
    pytest.importorskip("opacus")
    eps = ClipAndNoise(clip=1.0, noise_multiplier=1.0).epsilon(rounds=100, sample_rate=0.5)
    assert 0 < eps < float("inf")


def test_unknown_defence_and_bad_knobs():
    with pytest.raises(ValueError, match="unknown defence 'shuffle'"):
        make_defense("shuffle")
    with pytest.raises(ValueError, match="sigma"):
        FakeGradients(sigma="large")
    with pytest.raises(ValueError, match="nu"):
        FakeGradients(nu=0)
    with pytest.raises(ValueError, match="ratio"):
        GradientPruning(1.0)
