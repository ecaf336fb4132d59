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


@pytest.mark.parametrize("releases", [1, 7, 99])
def test_per_record_epsilon_equals_opacus_with_the_records_count(releases):
    from opacus.accountants import RDPAccountant

    from paperzoo.vafl.privacy import record_epsilon

    reference = RDPAccountant()
    for _ in range(releases):
        reference.step(noise_multiplier=0.25, sample_rate=1.0)
    assert record_epsilon(0.25, releases, 1e-5) == pytest.approx(reference.get_epsilon(delta=1e-5), rel=1e-12)


def test_record_guarantee_is_the_worst_and_mean_record_and_never_below_amplified():
    from paperzoo.vafl.privacy import record_epsilon, record_guarantee, sampled_release_counts

    counts = torch.tensor([3, 1, 3, 5])
    guarantee = record_guarantee(0.5, counts, 1e-5)
    assert guarantee.worst == record_epsilon(0.5, 5, 1e-5)
    expected_mean = (2 * record_epsilon(0.5, 3, 1e-5) + record_epsilon(0.5, 1, 1e-5) + guarantee.worst) / 4
    assert guarantee.mean == pytest.approx(expected_mean, rel=1e-12)
    assert (guarantee.max_releases, guarantee.mean_releases) == (5, 3.0)
    # one client, N 100, B 10, 300 uploads: the count the server sees beats the amplified figure
    releases = sampled_release_counts(100, 10, 300)
    assert int(releases.sum()) == 100 + 10 * 300
    for sigma in (0.5, 1.0, 2.0):
        accountant = EmbeddingAccountant(sigma, 1.0)
        accountant.step(1.0)
        accountant.step(0.1, 300)
        assert record_guarantee(sigma / 2, releases, 1e-5).worst >= accountant.epsilon()
    assert math.isinf(record_guarantee(0.0, releases, 1e-5).worst)


def test_client_counts_every_release_of_every_record(cancer_data):
    from paperzoo.vafl.config import FederationConfig
    from paperzoo.vafl.federation import build_federation
    from paperzoo.vafl.privacy import sampled_release_counts
    from paperzoo.vafl.simulation import SimRuntime

    federation = build_federation(cancer_data, FederationConfig(preset="tiny", sigma=0.5, seed=3))
    SimRuntime("exp:1,2,4,8", 200, 3, eval_every=200).run(federation)
    for client in federation.clients:
        expected = sampled_release_counts(client.num_samples, 16, client.uploads, seed=3, client_id=client.client_id)
        assert torch.equal(client.release_counts, expected)  # initial pass + the sampler's batches
        guarantee = client.record_guarantee()
        assert guarantee.max_releases == int(expected.max())
        assert guarantee.worst >= client.epsilon()


def test_readme_number_sigma_half_n455_b16_2000_uploads(tmp_path):
    """The README's per-record figure for one client (C 1, delta 1e-5), beside the amplified one."""
    import json

    from paperzoo.vafl import cli

    out = tmp_path / "q"
    assert cli.main(["privacy", "--accountant_only", "true", "--sigmas", "[0.5]", "--num_samples", "455",
                     "--batch_size", "16", "--steps", "2000", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["releases_max"] == 99
    assert metrics["epsilon_record_sigma0.5"] == pytest.approx(982.978, abs=1e-3)
    assert metrics["epsilon_record_mean_sigma0.5"] == pytest.approx(736.894, abs=1e-3)
    assert metrics["epsilon_sigma0.5"] == pytest.approx(591.898, abs=1e-3)
    assert metrics["epsilon_record_matches_opacus"] == 1 and metrics["epsilon_matches_opacus"] == 1


def test_perturbation_draws_on_its_generators_device_and_moves_the_noise():
    """A CPU generator with embeddings elsewhere (``meta`` stands for CUDA here): the noise is
    drawn on the CPU and moved, so the same seed gives the same noise on every device."""
    import torch

    from paperzoo.vafl.privacy import GaussianPerturbation

    h = torch.zeros(3, 4)
    noisy = GaussianPerturbation(0.5, torch.Generator().manual_seed(7))(h)
    torch.testing.assert_close(noisy, 0.5 * torch.randn(3, 4, generator=torch.Generator().manual_seed(7)))
    moved = GaussianPerturbation(0.5, torch.Generator().manual_seed(7))(h.to("meta"))
    assert moved.device.type == "meta" and moved.shape == (3, 4)
