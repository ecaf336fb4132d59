"""The HR-supervised oracle (an upper bound kept off the self-supervised path), the RWAE's static
latent ``z_c``, prediction past ``T`` with its HR-free skill score, and the LR-only calibration
check of the ensemble."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest
import torch

from paperzoo.advdiffsr import metrics as M
from paperzoo.advdiffsr.baselines import projected_bicubic
from paperzoo.advdiffsr.data import LRSequences, load_lr, simulate_split
from paperzoo.advdiffsr.model import create_model, mmd_imq
from paperzoo.advdiffsr.operators import block_mean, nearest_up
from paperzoo.advdiffsr.pipeline import (
    TrainConfig,
    forecast_lr_skill,
    roll_forward,
    super_resolve,
    train_sr,
)
from paperzoo.advdiffsr.simulator import cellular_velocity

SOURCE = Path(__file__).resolve().parents[1] / "src" / "paperzoo" / "advdiffsr"


@pytest.fixture(scope="module")
def data_with_truth():
    u = cellular_velocity(32)
    truth, lr = simulate_split(4, 32, 4, 12, 0.025, 0.005, u, 0.0, seed=5)
    return LRSequences(lr, u[None].float(), 0.005, 0.025, 4), truth


# -- oracle -----------------------------------------------------------------------------------
def test_oracle_regenerates_the_training_hr_and_refuses_another_seed(small_data_dir):
    from paperzoo.advdiffsr.oracle import oracle_training_hr

    train = load_lr(small_data_dir / "train_lr.npz")
    hr = oracle_training_hr(train, seed=0)
    assert hr.shape == (6, 12, 32, 32) and hr.dtype == torch.float64
    assert torch.equal(block_mean(hr, 4).float(), train.lr)
    with pytest.raises(ValueError, match="does not reproduce its LR"):
        oracle_training_hr(train, seed=1)
    assert not (small_data_dir / "train_hr.npz").exists()  # regenerated in memory, never written
    # float rounding (FFT sums depend on the thread count) is the same data set; a real change is not
    from dataclasses import replace

    rounded = train.lr.clone()
    rounded[0, 0, 0, 0] += 1e-9
    assert torch.equal(oracle_training_hr(replace(train, lr=rounded), seed=0), hr)
    changed = train.lr.clone()
    changed[0, 0, 0, 0] += 1e-3 * float(train.lr.abs().max())
    with pytest.raises(ValueError, match="does not reproduce its LR"):
        oracle_training_hr(replace(train, lr=changed), seed=0)


def test_oracle_learns_from_hr_and_stays_lr_consistent(data_with_truth):
    from paperzoo.advdiffsr.oracle import train_oracle

    data, truth = data_with_truth
    result = train_oracle(
        data, truth, TrainConfig(preset="tiny", steps=30, window=8, batch_size=2, lr=3e-3)
    )
    assert len(result.history) == 30 and all("loss_hr" in h for h in result.history)
    pred = super_resolve(result.model, data)
    start = projected_bicubic(data, lift="bicubic")  # the untrained network's output
    assert M.rel_l2(pred, truth) < 0.98 * M.rel_l2(start, truth)
    assert M.lr_consistency(pred, data.lr, 4) < 1e-5
    with pytest.raises(ValueError, match="does not match the training LR"):
        train_oracle(data, truth[:, :5], TrainConfig(preset="tiny", steps=1, window=4))


def test_nothing_on_the_self_supervised_path_imports_the_oracle():
    """Only validation.py (behind ``oracle_hr``) and commands.py (behind ``--oracle``) import
    oracle.py, and only inside a function body."""
    for path in SOURCE.glob("*.py"):
        tree = ast.parse(path.read_text())
        top_level = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "paperzoo.advdiffsr.oracle":
                assert path.name in {"validation.py", "commands.py"}, path.name
                assert id(node) not in top_level, f"{path.name} imports oracle at module level"


# -- static latent z_c --------------------------------------------------------------------------
def test_static_latent_shapes_prior_draws_and_off_by_default():
    lr, u = torch.rand(3, 5, 8, 8), cellular_velocity(32)[None].float()
    plain = create_model("rwae_tiny")
    assert plain.static_channels == 0 and plain.static_head is None
    model = create_model("rwae_tiny", static_channels=8)
    assert model.sr.upsample[0].in_channels == plain.sr.upsample[0].in_channels + 8
    c, z_post, z_prior, zc_post, zc_prior = model(
        lr, u, return_static=True, generator=torch.Generator().manual_seed(0)
    )
    assert c.shape == (3, 5, 32, 32) and zc_post.shape == zc_prior.shape == (3, 8)
    assert plain(lr, u, return_static=True)[3].shape == (3, 0)

    def prior_sample(seed):
        return model(lr, u, mode="prior", generator=torch.Generator().manual_seed(seed))[0]

    assert torch.equal(prior_sample(1), prior_sample(1))
    with torch.no_grad():  # make the head read z_c so that the draw shows in the field
        model.sr.refine[-1].weight.normal_(0, 0.1, generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(prior_sample(1), prior_sample(2))
    with pytest.raises(ValueError, match="static_channels"):
        create_model("rwae_tiny", static_channels=-1)


def test_static_latent_enters_the_mmd_and_gets_gradients(data_with_truth):
    from paperzoo.advdiffsr.module import RWAEModule

    data, _ = data_with_truth
    model = create_model("rwae_tiny", static_channels=4)
    model.set_normalisation(data.lr, data.u)
    system = RWAEModule(model, data.u, data.kappa, data.dt_obs, 4, mmd_samples=32, steps=10)
    batch = {
        "lr": data.lr[:, :6],
        "mask": torch.ones_like(data.lr[:, :6]),
        "seq": torch.arange(4),
        "t0": torch.zeros(4, dtype=torch.long),
    }
    losses = system.losses(batch)
    assert "mmd_static" in losses and torch.isfinite(losses["mmd_static"])
    losses["mmd"].backward()
    assert (
        model.static_head.weight.grad is not None and model.static_head.weight.grad.abs().sum() > 0
    )
    with pytest.raises(ValueError, match="needs arm 'rwae'"):
        TrainConfig(static_latent=8)


def test_mmd_of_a_static_latent_sees_a_shift():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(64, 8, generator=g), torch.randn(64, 8, generator=g)
    assert abs(float(mmd_imq(a, b))) < 0.05 < float(mmd_imq(a + 2, b))


# -- prediction past T ----------------------------------------------------------------------------
def test_roll_forward_of_the_truth_predicts_the_future_lr():
    u = cellular_velocity(32)
    truth, lr = simulate_split(2, 32, 4, 14, 0.025, 0.005, u, 0.0, seed=9)
    past = LRSequences(lr[:, :10], u[None].float(), 0.005, 0.025, 4)
    future = LRSequences(lr[:, 10:], u[None].float(), 0.005, 0.025, 4)
    predicted = roll_forward(truth[:, 9], past.u[:, -1], past.kappa, past.dt_obs, 4)
    skill = forecast_lr_skill(predicted, future, past.lr[:, -1])
    assert skill["forecast_lr_rel_error"] < 1e-5 and skill["forecast_skill"] > 0.999
    assert skill["forecast_leads"] == 4 and len(skill["per_lead"]) == 4
    assert skill["persistence_lr_rel_error"] > 0.01
    persistence = forecast_lr_skill(
        nearest_up(past.lr[:, -1:], 4).expand(2, 4, 32, 32), future, past.lr[:, -1]
    )
    assert persistence["forecast_skill"] == pytest.approx(
        0.0, abs=1e-9
    )  # the forecast is persistence itself
    with pytest.raises(ValueError, match="does not match the forecast"):
        forecast_lr_skill(predicted[:1], future, past.lr[:, -1])


def test_ensemble_forecast_rolls_every_member_with_its_own_velocity():
    from paperzoo.advdiffsr.simulator import uniform_velocity
    from paperzoo.advdiffsr.uncertainty import ensemble_forecast

    # two sequences with different velocities: members are flattened member-major, so the
    # velocity must be tiled the same way or member 1 would be advected with the wrong field
    u = torch.cat([cellular_velocity(32), uniform_velocity(32, 0.7, -0.4)])
    truth = torch.stack(
        [
            simulate_split(1, 32, 4, 6, 0.025, 0.005, u[b : b + 1], 0.0, seed=b)[0][0]
            for b in range(2)
        ]
    )
    lr = block_mean(truth, 4).float()
    data = LRSequences(lr, u[:, None].float(), 0.005, 0.025, 4)
    g = torch.Generator().manual_seed(0)
    members = torch.stack(
        [truth.float(), truth.float() + 0.1 * torch.randn(2, 6, 32, 32, generator=g)]
    )
    rolled = ensemble_forecast(members, data, 3)
    assert rolled.shape == (2, 2, 3, 32, 32)
    for k in range(2):
        for b in range(2):
            alone = roll_forward(members[k, b, -1][None], u[b][None], 0.005, 0.025, 3)[0]
            assert torch.allclose(rolled[k, b], alone, atol=1e-6)
    # the truth as a member continues the true trajectory: simulate 3 more frames directly
    longer = simulate_split(1, 32, 4, 9, 0.025, 0.005, u[:1], 0.0, seed=0)[0][0]
    assert torch.allclose(rolled[0, 0], longer[6:].float(), atol=1e-4)
    with pytest.raises(ValueError, match="does not match"):
        ensemble_forecast(members[:, :1], data, 3)
    with pytest.raises(ValueError, match="positive integer"):
        ensemble_forecast(members, data, 0)


def test_training_asks_for_deterministic_kernels_with_a_warning_only(data_with_truth):
    """The hard projection's bicubic lift is differentiated; its backward has no deterministic
    CUDA kernel, so a strict ``deterministic=True`` would stop every GPU training at the first
    step. The trainer runs with ``deterministic="warn"`` (the same CPU kernels)."""
    data, _ = data_with_truth
    torch.use_deterministic_algorithms(False)
    try:
        train_sr(data, TrainConfig(preset="tiny", steps=1, window=8))
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()
    finally:
        torch.use_deterministic_algorithms(False)


def test_forecast_of_a_trained_model(data_with_truth):
    from paperzoo.advdiffsr.pipeline import forecast

    data, _ = data_with_truth
    model = train_sr(data, TrainConfig(preset="tiny", steps=1, window=8)).model
    sr, predicted = forecast(model, data, 3)
    assert sr.shape == (4, 12, 32, 32) and predicted.shape == (4, 3, 32, 32)
    with pytest.raises(ValueError, match="positive integer"):
        forecast(model, data, 0)


# -- calibration on LR hold-out ---------------------------------------------------------------------
def test_holdout_calibration_is_computed_from_lr_only(data_with_truth):
    from paperzoo.advdiffsr.uncertainty import holdout_calibration

    data, _ = data_with_truth
    model = create_model("rwae_tiny")
    model.set_normalisation(data.lr, data.u)
    with torch.no_grad():
        model.sr.refine[-1].weight.normal_(0, 0.1, generator=torch.Generator().manual_seed(0))
    scores = holdout_calibration(model, data, fraction=0.2, samples=4)
    assert 0 <= scores["holdout_coverage_50"] <= scores["holdout_coverage_90"] <= 1
    assert scores["holdout_crps"] > 0 and scores["holdout_spread_skill_ratio"] > 0
    with pytest.raises(ValueError, match="fraction"):
        holdout_calibration(model, data, fraction=0.0)


# -- why an ensemble is narrow: latent diagnostics (LR only) ----------------------------------------
def test_latent_diagnostics_see_a_decoder_that_ignores_z(data_with_truth):
    from paperzoo.advdiffsr.uncertainty import latent_diagnostics

    data, _ = data_with_truth
    model = create_model("rwae_tiny")
    model.set_normalisation(data.lr, data.u)
    with torch.no_grad():
        model.sr.refine[-1].weight.normal_(0, 0.1, generator=torch.Generator().manual_seed(0))
    used = latent_diagnostics(model, data, samples=2)
    assert set(used) == {
        "posterior_std",
        "prior_std",
        "posterior_mean_std",
        "latent_pde_gain",
        "member_pde_ratio",
    }
    assert used["posterior_std"] > 0 and used["prior_std"] > 0 and used["posterior_mean_std"] > 0
    assert used["latent_pde_gain"] != 0 and used["member_pde_ratio"] > 0
    core = model.sr.core_channels
    with torch.no_grad():  # cut z out of the head: the latent can no longer change the field
        model.sr.upsample[0].weight[:, core:] = 0
    ignored = latent_diagnostics(model, data, samples=2)
    assert ignored["latent_pde_gain"] == pytest.approx(0.0, abs=1e-6)
    assert ignored["member_pde_ratio"] == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match="needs an RWAE"):
        latent_diagnostics(create_model("tiny"), data)
    static = create_model("rwae_tiny", static_channels=3)  # the decoder reads [z_t, z_c]
    static.set_normalisation(data.lr, data.u)
    with torch.no_grad():
        static.sr.refine[-1].weight.normal_(0, 0.1, generator=torch.Generator().manual_seed(0))
    diagnosed = latent_diagnostics(static, data, samples=1)
    assert all(math.isfinite(v) for v in diagnosed.values()) and diagnosed["latent_pde_gain"] != 0


def test_mmd_bandwidth_unit_or_from_the_prior_samples(data_with_truth):
    from paperzoo.advdiffsr.module import RWAEModule

    data, _ = data_with_truth
    g = torch.Generator().manual_seed(3)
    z_post = torch.randn(2, 3, 2, 4, 4, generator=g)  # 32 vectors a frame: all of them are used
    z_prior = 0.3 * torch.randn(2, 3, 2, 4, 4, generator=g)

    def frames(z):
        return [z[:, t].permute(0, 2, 3, 1).reshape(-1, 2) for t in range(3)]

    for bandwidth in ("unit", "prior"):
        system = RWAEModule(
            create_model("rwae_tiny"),
            data.u,
            data.kappa,
            data.dt_obs,
            4,
            mmd_samples=64,
            mmd_bandwidth=bandwidth,
            steps=10,
        )
        expected = (
            sum(
                mmd_imq(a, b, sigma2=1.0 if bandwidth == "unit" else float(b.var(0).mean()))
                for a, b in zip(frames(z_post), frames(z_prior))
            )
            / 3
        )
        assert float(system.mmd_loss(z_post, z_prior)) == pytest.approx(float(expected), rel=1e-5)
    assert system.bandwidth(z_prior[:, 0].reshape(-1, 2)) == pytest.approx(
        float(z_prior[:, 0].reshape(-1, 2).var(0).mean())
    )
    with pytest.raises(ValueError, match="mmd_bandwidth"):
        RWAEModule(create_model("rwae_tiny"), data.u, 0.005, 0.025, 4, mmd_bandwidth="median")
    with pytest.raises(ValueError, match="mmd_bandwidth"):
        TrainConfig(arm="rwae", mmd_bandwidth="median")
