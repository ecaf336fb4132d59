"""Defences against exact references: fake gradients (paper Algorithm 3) recomputed step by step
from the same seeded draws, noise and clipping to the value, pruning's kept entries, opacus'
epsilon from its RDP analysis called directly, and the errors."""

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


def _reference_fake(grads, sigma="matched", nu=10, tau=1.0, max_resample=10, seed=0):
    """Algorithm 3 written out: per tensor, the sorted candidate closest to the sorted truth,
    redrawn while farther than tau * ||g||, written back in the truth's rank order."""
    generator = torch.Generator().manual_seed(seed)
    out = {}
    for name, grad in grads.items():
        flat = grad.reshape(-1).double()
        scale = float(flat.std(unbiased=False)) if sigma == "matched" else float(sigma)
        truth = flat.sort().values
        best, best_dist = None, float("inf")
        for _ in range(max_resample + 1):
            candidates = (torch.randn(nu, flat.numel(), generator=generator, dtype=torch.float64) * scale).sort(1).values
            distances = (candidates - truth).norm(dim=1)
            k = int(distances.argmin())
            if float(distances[k]) < best_dist:
                best, best_dist = candidates[k], float(distances[k])
            if best_dist <= tau * float(flat.norm()):
                break
        fake = torch.empty_like(flat)
        fake[flat.argsort(stable=True)] = best
        out[name] = fake.reshape(grad.shape).float()
    return out


@pytest.mark.parametrize("options", [
    {},                                                   # matched sigma, the default
    {"nu": 1, "tau": 0.0, "max_resample": 3},             # tau 0: exactly max_resample + 1 draws
    {"nu": 1, "tau": 10.0, "max_resample": 3},            # loose tau: the first draw is kept
    {"sigma": 1.0, "max_resample": 0},                    # the naive absolute sigma
])
def test_fake_gradients_equal_algorithm_3_written_out(options):
    grads = _grads()
    fake = FakeGradients(seed=0, **options)(grads)
    expected = _reference_fake(grads, seed=0, **options)
    for name, true in grads.items():
        assert torch.allclose(fake[name], expected[name], rtol=0, atol=1e-9), name
        assert torch.equal(fake[name].flatten().argsort(), true.flatten().argsort())  # ranks kept


def test_fake_gradient_redraws_can_only_bring_the_candidate_closer():
    grads = _grads()
    truth = grads["w"].flatten().sort().values

    def distance(tau):
        fake = FakeGradients(nu=1, tau=tau, max_resample=3, seed=0)(grads)["w"]
        return float((fake.flatten().sort().values - truth).norm())

    first_draw, best_of_four = distance(10.0), distance(0.0)
    assert best_of_four <= first_draw
    assert best_of_four == pytest.approx(float((_reference_fake(grads, nu=1, tau=0.0, max_resample=3)["w"]
                                                .flatten().sort().values - truth).norm()), abs=1e-12)


def test_fake_gradients_are_seeded():
    a, b = FakeGradients(seed=4)(_grads()), FakeGradients(seed=4)(_grads())
    assert torch.equal(a["w"], b["w"])


def test_noise_is_the_seeded_gaussian_draw():
    noisy = GaussianNoise(std=0.5, seed=0)({"x": torch.zeros(20000)})["x"]
    assert torch.equal(noisy, 0.5 * torch.randn(20000, generator=torch.Generator().manual_seed(0)))


def test_pruning_zeroes_exactly_the_smallest_entries():
    grads = _grads()
    pruned = GradientPruning(0.75)(grads)["w"]
    assert int((pruned == 0).sum()) == 384
    kept = grads["w"].abs() > grads["w"].abs().flatten().kthvalue(384).values
    assert torch.equal(pruned[kept], grads["w"][kept])
    assert int(kept.sum()) == 128


def test_clip_and_noise_clips_the_upload_to_the_norm():
    out = ClipAndNoise(clip=1.0, noise_multiplier=0.0)({"w": torch.ones(100)})["w"]
    assert torch.allclose(out, torch.full((100,), 0.1), rtol=0, atol=1e-7)
    small = ClipAndNoise(clip=100.0, noise_multiplier=0.0)({"w": torch.ones(100)})["w"]
    assert torch.equal(small, torch.ones(100))  # under the clip norm: unchanged


def test_clip_and_noise_epsilon_equals_opacus_rdp_analysis():
    pytest.importorskip("opacus")
    from opacus.accountants import RDPAccountant
    from opacus.accountants.analysis.rdp import compute_rdp, get_privacy_spent

    eps = ClipAndNoise(clip=1.0, noise_multiplier=1.0).epsilon(rounds=100, sample_rate=0.5)
    orders = RDPAccountant.DEFAULT_ALPHAS
    rdp = compute_rdp(q=0.5, noise_multiplier=1.0, steps=100, orders=orders)
    expected, _ = get_privacy_spent(orders=orders, rdp=rdp, delta=1e-5)
    assert eps == pytest.approx(float(expected), rel=1e-12)


def test_unknown_defence_and_bad_knobs():
    with pytest.raises(ValueError, match="unknown defence 'shuffle'"):
        make_defense("shuffle")
    with pytest.raises(ValueError, match="sigma"):
        FakeGradients(sigma="large")
    with pytest.raises(ValueError, match="nu"):
        FakeGradients(nu=0)
    with pytest.raises(ValueError, match="ratio"):
        GradientPruning(1.0)
