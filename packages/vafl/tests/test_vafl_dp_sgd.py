"""Client-side DP-SGD through opacus (spec section 2 and V5): the update, the accounting, the
combined guarantee and its bad inputs."""

import math

import pytest
import torch

from paperzoo.vafl.model import LocalEmbedding, create_model
from paperzoo.vafl.privacy import (
    ClientDPSGD,
    EmbeddingBound,
    combined_epsilon,
    opacus_epsilon_composed,
)
from paperzoo.vafl.protocol import GradReply, VaflClient


def _client_pair(noise: float, max_grad_norm: float, lr: float = 0.1, kind: str = "mlp"):
    """Two clients with the same model and batches: one plain, one with DP-SGD."""
    torch.manual_seed(0)
    x = torch.randn(40, 6) if kind == "mlp" else torch.randn(40, 2, 5, 5)
    in_dim = 6 if kind == "mlp" else 2
    plain_model = LocalEmbedding(in_dim, 4, hidden=8, kind=kind)
    dp_model = LocalEmbedding(in_dim, 4, hidden=8, kind=kind)
    dp_model.load_state_dict(plain_model.state_dict())
    bound = EmbeddingBound(1.0, "none")
    plain = VaflClient(0, x, plain_model, lr=lr, batch_size=8, bound=bound, seed=3)
    dp = VaflClient(0, x, dp_model, lr=lr, batch_size=8, bound=bound, seed=3, dp_noise_multiplier=noise,
                    dp_max_grad_norm=max_grad_norm)
    return plain, dp


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_dp_sgd_without_clipping_or_noise_is_the_plain_update(kind):
    plain, dp = _client_pair(noise=1e-12, max_grad_norm=1e6, kind=kind)
    grad = torch.randn(8, 4, generator=torch.Generator().manual_seed(1))
    for _ in range(3):
        a, b = plain.step(), dp.step()
        assert torch.equal(a.indices, b.indices)
        plain.apply(GradReply(0, a.indices, grad, a.version, 1))
        dp.apply(GradReply(0, b.indices, grad, b.version, 1))
    for p, q in zip(plain.model.parameters(), dp.model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-7)
    assert "_module" not in "".join(dp.model.state_dict())  # checkpoints keep the plain names


def test_dp_sgd_clips_every_per_sample_gradient():
    # z ~ 0: the update is lr * mean of clipped per-sample gradients, so its norm is <= lr * C
    lr, clip = 0.1, 1e-3
    _, dp = _client_pair(noise=1e-12, max_grad_norm=clip, lr=lr)
    before = [p.detach().clone() for p in dp.model.parameters()]
    upload = dp.step()
    dp.apply(GradReply(0, upload.indices, 100.0 * torch.ones(8, 4), upload.version, 1))
    change = torch.cat([(p.detach() - b).flatten() for p, b in zip(dp.model.parameters(), before)])
    assert 0 < change.norm() <= lr * clip * (1 + 1e-5)


def test_dp_sgd_noise_is_seeded():
    runs = []
    for _ in range(2):
        _, dp = _client_pair(noise=1.0, max_grad_norm=1.0)
        upload = dp.step()
        dp.apply(GradReply(0, upload.indices, torch.ones(8, 4), upload.version, 1))
        runs.append(torch.cat([p.detach().flatten() for p in dp.model.parameters()]))
    assert torch.equal(runs[0], runs[1])


def test_parameter_and_combined_epsilon_equal_opacus():
    from opacus.accountants import RDPAccountant

    torch.manual_seed(0)
    x = torch.randn(50, 6)
    client = VaflClient(0, x, create_model("tiny", in_dims=[6], classes=3).locals[0], batch_size=5, sigma=2.0,
                        bound=EmbeddingBound(1.0, "clip"), dp_noise_multiplier=1.3, dp_max_grad_norm=0.5)
    client.release("train")
    for _ in range(30):
        upload = client.step()
        client.apply(GradReply(0, upload.indices, torch.randn(5, 4), upload.version, 1))
    reference = RDPAccountant()
    for _ in range(30):
        reference.step(noise_multiplier=1.3, sample_rate=0.1)
    assert client.epsilon_params(1e-5) == pytest.approx(reference.get_epsilon(1e-5), rel=1e-12)
    direct = opacus_epsilon_composed([(1.0, 1.0, 1), (1.0, 0.1, 30), (1.3, 0.1, 30)], 1e-5)
    combined = client.epsilon_combined(1e-5)
    assert combined == pytest.approx(direct, rel=1e-12)
    assert combined > max(client.epsilon(1e-5), client.epsilon_params(1e-5))
    # without either noise source the combined guarantee is void
    assert math.isinf(combined_epsilon([[(0.0, 0.1, 1)], [(1.3, 0.1, 1)]], 1e-5))
    plain = VaflClient(0, x, create_model("tiny", in_dims=[6], classes=3).locals[0], batch_size=5, sigma=2.0)
    assert math.isinf(plain.epsilon_params()) and math.isinf(plain.epsilon_combined())


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"noise_multiplier": -1.0, "max_grad_norm": 1.0}, "dp_noise_multiplier"),
    ({"noise_multiplier": 1.0, "max_grad_norm": 0.0}, "dp_max_grad_norm"),
])
def test_bad_dp_sgd_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ClientDPSGD(torch.nn.Linear(2, 2), batch_size=2, num_samples=10, lr=0.1, **kwargs)


def test_federation_with_dp_sgd_trains_and_reports_combined_epsilon(digits_data):
    from paperzoo.vafl.config import FederationConfig
    from paperzoo.vafl.federation import build_federation
    from paperzoo.vafl.simulation import SimRuntime

    config = FederationConfig(seed=0, sigma=0.25, dp_noise_multiplier=0.5)
    history = SimRuntime("exp:1,2,4,8", 600, 0, eval_every=600).run(build_federation(digits_data, config))
    assert history.accuracy[-1] > 0.4  # learns something through both noise sources
    for embed, params, combined in zip(history.epsilon, history.epsilon_params, history.epsilon_combined):
        assert math.isfinite(combined) and combined > max(embed, params)
    with pytest.raises(ValueError, match="dp_noise_multiplier"):
        build_federation(digits_data, FederationConfig(dp_noise_multiplier=-0.5))
