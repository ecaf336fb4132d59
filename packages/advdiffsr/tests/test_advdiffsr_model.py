"""The networks from the registry: shapes, gradients, the bicubic start, LR consistency,
determinism and the checkpoint round trip."""

from __future__ import annotations

import pytest
import torch

from paperzoo.advdiffsr.model import (
    RWAE,
    ConvGRUCell,
    ConvLSTMCell,
    RecurrentSR,
    create_model,
    fill_hidden,
    list_models,
)
from paperzoo.advdiffsr.operators import bicubic_periodic, block_mean, project_consistent
from paperzoo.advdiffsr.simulator import cellular_velocity
from paperzoo.core import testing


def _inputs(B=2, T=4, n=4, s=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    lr = torch.rand(B, T, n, n, generator=g)
    u = torch.randn(1, 1, 2, n * s, n * s, generator=g)
    return lr, u


def test_registry_lists_presets_and_rejects_unknown_names_and_options():
    assert list_models() == ["paper", "rwae_paper", "rwae_small", "rwae_tiny", "small", "tiny"]
    with pytest.raises(ValueError, match="choose from"):
        create_model("huge")
    with pytest.raises(ValueError, match="takes no"):
        create_model("tiny", width=3)
    model = create_model("tiny", channels=6)  # explicit overrides beat the preset
    assert model.channels == 6
    assert create_model("paper").upsample[0].kernel_size == (3, 3)


@pytest.mark.parametrize("name", ["tiny", "rwae_tiny"])
def test_every_preset_gives_hr_shapes_and_finite_gradients(name):
    model = create_model(name)
    lr, u = _inputs()
    model.set_normalisation(lr, u)
    out = model(lr, u)
    c = out[0] if isinstance(out, tuple) else out
    assert c.shape == (2, 4, 16, 16)
    # zero-initialised last conv: the start is bicubic, made consistent
    if name == "tiny":
        with torch.no_grad():
            model.refine[-1].weight.normal_(0, 0.1)
    testing.check_finite_gradients(model, lr, u)  # the RWAE's latents are outputs too


def test_training_starts_at_consistent_periodic_bicubic():
    model = create_model("tiny")
    lr, u = _inputs()
    model.set_normalisation(lr, u)
    expected = project_consistent(bicubic_periodic(lr, 4), lr, 4, lift="bicubic")
    assert torch.allclose(model(lr, u), expected, atol=1e-5)
    assert torch.allclose(block_mean(model(lr, u), 4), lr, atol=1e-5)
    none = model(lr, u, projection="none")
    assert torch.allclose(none, bicubic_periodic(lr, 4), atol=1e-5)


def test_hidden_cells_are_filled_and_left_unprojected():
    lr, u = _inputs()
    mask = torch.ones_like(lr)
    mask[:, :, 1, 2] = 0
    filled = fill_hidden(lr, mask)
    neighbours = (lr[:, :, 0, 2] + lr[:, :, 2, 2] + lr[:, :, 1, 1] + lr[:, :, 1, 3]) / 4
    assert torch.allclose(
        filled[:, :, 1, 2], neighbours
    )  # hidden in every frame: spatial neighbours
    once = torch.ones_like(lr)
    once[:, 1, 0, 0] = 0
    assert torch.allclose(
        fill_hidden(lr, once)[:, 1, 0, 0], (lr[:, 0, 0, 0] + lr[:, 2, 0, 0]) / 2
    )  # in time
    model = create_model("tiny")
    changed = lr.clone()
    changed[:, :, 1, 2] += 5.0  # a hidden value must not reach the output
    assert torch.allclose(model(lr, u, mask), model(changed, u, mask))


def test_cells_and_lstm_option():
    x = torch.randn(2, 3, 5, 5)
    h, state = ConvGRUCell(3, 4)(x)
    assert h.shape == (2, 4, 5, 5) and state.shape == h.shape
    h, state = ConvLSTMCell(3, 4)(x)
    assert h.shape == (2, 4, 5, 5) and state.shape == (2, 8, 5, 5)
    model = RecurrentSR(scale=4, channels=4, head_channels=2, cell="lstm")
    lr, u = _inputs()
    assert model(lr, u).shape == (2, 4, 16, 16)
    with pytest.raises(ValueError, match="unknown recurrent cell"):
        RecurrentSR(cell="rnn")


def test_rwae_samples_are_lr_consistent_and_seeded():
    model = create_model("rwae_tiny")
    lr, u = _inputs()
    with torch.no_grad():
        model.sr.refine[-1].weight.normal_(0, 0.2)
    a, zq, zp = model(lr, u, mode="prior", generator=torch.Generator().manual_seed(1))
    b, _, _ = model(lr, u, mode="prior", generator=torch.Generator().manual_seed(1))
    c, _, _ = model(lr, u, mode="prior", generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.allclose(block_mean(c, 4), lr, atol=1e-5)
    assert zq.shape == zp.shape == (2, 4, 2, 4, 4)


def test_velocity_and_lr_shapes_are_checked():
    model = create_model("tiny")
    lr, u = _inputs()
    with pytest.raises(ValueError, match="velocity grid"):
        model(lr, u[..., :8, :8])
    with pytest.raises(ValueError, match="velocity must have shape"):
        model(lr, u[0])
    with pytest.raises(ValueError, match=r"lr must have shape \(B, T, n, n\)"):
        model(lr[0], u)
    with pytest.raises(ValueError, match="d_z"):
        RWAE(latent_channels=0)


def test_checkpoint_round_trip_and_determinism(tmp_path):
    torch.manual_seed(0)
    a = create_model("small")
    torch.manual_seed(0)
    b = create_model("small")
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    testing.check_checkpoint_roundtrip(a, tmp_path)
    testing.check_checkpoint_roundtrip(create_model("rwae_tiny"), tmp_path)


def test_corrupt_checkpoint_is_refused(tmp_path):
    from paperzoo.core.checkpoint import load_weights

    path = tmp_path / "model.safetensors"
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="model.safetensors"):
        load_weights(create_model("tiny"), path)


def test_rwae_prior_reads_the_history_of_the_path_it_is_on():
    """Spec "RWAE" and pitfall 7: in training the prior at ``t`` reads the posterior's
    ``z_{t-1}`` (posterior and prior samples share the history); a prior trajectory (inference)
    reads its own previous draw; the first frame starts from ``z_0 = 0``."""
    model = create_model("rwae_tiny")
    lr, u = _inputs(T=5)
    seen = []
    hook = model.prior_cell.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    d = model.latent_channels
    for mode in ("posterior", "prior"):
        seen.clear()
        with torch.no_grad():
            _, z_post, z_prior = model(lr, u, mode=mode, generator=torch.Generator().manual_seed(3))
        path = z_post if mode == "posterior" else z_prior
        assert len(seen) == 5 and torch.equal(seen[0][:, :d], torch.zeros_like(path[:, 0]))
        for t in range(1, 5):
            assert torch.equal(seen[t][:, :d], path[:, t - 1]), (mode, t)
        if mode == "posterior":
            assert not torch.equal(z_post[:, :-1], z_prior[:, :-1])
    hook.remove()


def test_rwae_super_resolve_gives_each_sequence_its_own_draw_whatever_the_batch_size():
    """``super_resolve`` of an RWAE draws one prior trajectory per sequence from a stream seeded by
    ``(seed, sequence index)``: sequences with the same LR get different draws (a generator
    reseeded per batch once gave sequence i and i + batch_size the same noise), the result does
    not depend on ``batch_size``, and ``seed`` chooses the draw."""
    from paperzoo.advdiffsr.data import LRSequences
    from paperzoo.advdiffsr.pipeline import super_resolve

    model = create_model("rwae_tiny")
    with torch.no_grad():  # let the decoder read the latent, so the draw shows in the field
        model.sr.refine[-1].weight.normal_(0, 0.2, generator=torch.Generator().manual_seed(0))
    lr, _ = _inputs(B=1)
    u = 0.5 * cellular_velocity(16)[None].float()  # LRSequences refuses a divergent velocity
    data = LRSequences(lr.repeat(3, 1, 1, 1), u, 0.01, 0.1, 4)  # three copies of one sequence
    one = super_resolve(model, data, batch_size=1)
    two = super_resolve(model, data, batch_size=2)
    torch.testing.assert_close(one, two, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(one[0], one[1]) and not torch.allclose(one[1], one[2])
    assert torch.equal(one, super_resolve(model, data, batch_size=1, seed=0))  # the default
    other = super_resolve(model, data, batch_size=2, seed=1)
    assert torch.equal(other, super_resolve(model, data, batch_size=2, seed=1))
    assert not torch.allclose(one, other)
    assert torch.allclose(block_mean(other, 4), data.lr, atol=1e-5)  # still LR-consistent
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        super_resolve(model, data, seed=-1)


def test_rwae_takes_one_generator_per_batch_row():
    """A list of generators draws each row's noise from its own stream: row k of a batch equals
    the same input run alone with generator k."""
    model = create_model("rwae_tiny", static_channels=2)
    lr, u = _inputs(B=2)
    with torch.no_grad():
        both = model(
            lr, u, mode="prior", generator=[torch.Generator().manual_seed(s) for s in (4, 5)]
        )
        alone = model(lr[1:], u, mode="prior", generator=[torch.Generator().manual_seed(5)])
    for a, b in zip(both, alone):
        torch.testing.assert_close(a[1:], b, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="one generator per batch row"):
        model(lr, u, mode="prior", generator=[torch.Generator()])
