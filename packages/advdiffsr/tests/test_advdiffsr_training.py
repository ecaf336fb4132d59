"""Self-supervised training: the losses fall, no HR reaches training, the README example runs,
the RWAE's samples are consistent and a collapsed ensemble fails loudly."""

from __future__ import annotations

import shutil

import lightning as L
import numpy as np
import pytest
import torch

from paperzoo.advdiffsr import metrics as M
from paperzoo.advdiffsr.data import LRSequences, load_lr, simulate_split
from paperzoo.advdiffsr.operators import bicubic_periodic
from paperzoo.advdiffsr.pipeline import (
    TrainConfig,
    one_standard_error_choice,
    select_lambda,
    super_resolve,
    train_sr,
)
from paperzoo.advdiffsr.simulator import cellular_velocity
from paperzoo.advdiffsr.uncertainty import SpreadCollapseError, check_spread, sample_ensemble


@pytest.fixture(scope="module")
def train_with_truth():
    u = cellular_velocity(32)
    truth, lr = simulate_split(4, 32, 4, 12, 0.025, 0.005, u, 0.0, seed=3)
    return LRSequences(lr, u[None].float(), 0.005, 0.025, 4), truth


def test_tiny_run_lowers_the_pde_loss_and_beats_bicubic(train_with_truth):
    data, truth = train_with_truth
    result = train_sr(data, TrainConfig(preset="tiny", steps=60, window=8, batch_size=2, lr=3e-3))
    first = np.mean([h["loss_pde"] for h in result.history[6:12]])
    last = np.mean([h["loss_pde"] for h in result.history[-6:]])
    assert last < 0.8 * first
    pred = super_resolve(result.model, data)
    assert M.rel_l2(pred, truth) < M.rel_l2(bicubic_periodic(data.lr, 4), truth)
    assert M.lr_consistency(pred, data.lr, 4) < 1e-5


def test_same_seed_same_weights(train_with_truth):
    data, _ = train_with_truth
    config = TrainConfig(preset="tiny", steps=3, window=8, batch_size=2)
    a, b = train_sr(data, config).model, train_sr(data, config).model
    for (ka, va), (_, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(va, vb), ka


class _NoHRInBatches(L.Callback):
    def __init__(self, hr_size: int) -> None:
        self.hr_size, self.batches = hr_size, 0

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        assert set(batch) == {"lr", "mask", "seq", "t0"}, f"unexpected batch keys {sorted(batch)}"
        for value in batch.values():
            assert value.shape[-1] != self.hr_size, "an HR-shaped tensor reached a training batch"
        self.batches += 1


def test_no_training_batch_holds_hr(small_data_dir):
    from paperzoo.advdiffsr.data import train_loader
    from paperzoo.advdiffsr.model import create_model
    from paperzoo.advdiffsr.module import PhysicsSRModule
    from paperzoo.core.lightning import make_trainer

    data = load_lr(small_data_dir / "train_lr.npz")
    watcher = _NoHRInBatches(data.hr_size)
    system = PhysicsSRModule(
        create_model("tiny"), data.u, data.kappa, data.dt_obs, data.scale, steps=4
    )
    trainer = make_trainer(None, max_epochs=10, max_steps=4, logger=False, callbacks=[watcher])
    trainer.fit(system, train_dataloaders=train_loader(data, window=8, batch_size=2))
    assert watcher.batches == 4


def test_nan_hr_files_give_byte_identical_weights_and_selection_opens_only_lr(
    small_data_dir, tmp_path, monkeypatch
):
    from paperzoo.advdiffsr.cli import main

    def run(out):
        assert (
            main(
                [
                    "train",
                    "--data",
                    str(data_dir),
                    "--preset",
                    "tiny",
                    "--steps",
                    "3",
                    "--window",
                    "8",
                    "--lambda_pde",
                    "auto",
                    "--out",
                    str(out),
                ]
            )
            == 0
        )
        return (out / "model.safetensors").read_bytes()

    data_dir = tmp_path / "data"
    shutil.copytree(small_data_dir, data_dir)
    opened = []
    original = np.load
    monkeypatch.setattr(
        np, "load", lambda path, *a, **k: (opened.append(str(path)), original(path, *a, **k))[1]
    )
    before = run(tmp_path / "a")
    assert opened and all(path.endswith("_lr.npz") for path in opened), opened
    for split in ("val", "test"):
        with np.load(data_dir / f"{split}_hr.npz") as archive:
            shape = archive["hr"].shape
        np.savez(data_dir / f"{split}_hr.npz", hr=np.full(shape, np.nan))
    assert run(tmp_path / "b") == before


def test_select_lambda_reports_every_candidate(small_data_dir):
    selection = select_lambda(
        small_data_dir / "train_lr.npz",
        small_data_dir / "val_lr.npz",
        TrainConfig(preset="tiny", steps=2, window=8),
    )
    assert [c["candidate"] for c in selection.candidates] == ["hard", "soft_0.3", "soft_3"]
    assert selection.candidate in {"hard", "soft_0.3", "soft_3"}
    assert selection.config.holdout == 0.0 and all(
        run.config.holdout == 0.1 for run in selection.runs
    )
    assert all(np.isfinite(c["holdout_error"]) for c in selection.candidates)


def test_one_standard_error_rule_hand_values():
    # best is candidate 1 (0.10); its per-sequence errors 0.08, 0.12 -> std 0.02828, SE 0.02
    per_sequence = [
        torch.tensor([0.11, 0.13]),
        torch.tensor([0.08, 0.12]),
        torch.tensor([0.1, 0.1]),
    ]
    chosen, tolerance = one_standard_error_choice([0.115, 0.10, 0.105], per_sequence)
    assert (
        tolerance == pytest.approx(0.02) and chosen == 0
    )  # 0.115 <= 0.12: the preferred one wins the near-tie
    chosen, _ = one_standard_error_choice([0.125, 0.10, 0.105], per_sequence)
    assert (
        chosen == 1
    )  # 0.125 > 0.12: a real difference, so the best (index 1, before index 2) is kept
    chosen, tolerance = one_standard_error_choice(
        [0.2, 0.1], [torch.tensor([0.2]), torch.tensor([0.1])]
    )
    assert (chosen, tolerance) == (1, 0.0)
    with pytest.raises(ValueError, match="per-sequence"):
        one_standard_error_choice([0.1], [])


def test_score_gates_the_pde_residual_on_mid_window_frames(train_with_truth):
    from paperzoo.advdiffsr.pipeline import score

    data, truth = train_with_truth
    pred = bicubic_periodic(data.lr.double(), 4)
    scores = score(pred, truth, data)
    mid = M.pde_residual_rms(pred[:, 8:24], data.u, data.kappa, data.dt_obs, data.lr[:, 8:24])
    every = M.pde_residual_rms(pred, data.u, data.kappa, data.dt_obs, data.lr)
    assert scores["pde_residual"] == pytest.approx(mid) and scores[
        "pde_residual_all"
    ] == pytest.approx(every)
    assert scores["pde_residual"] != pytest.approx(every)


def test_lr_only_warmup_only_in_soft_mode(train_with_truth):
    from paperzoo.advdiffsr.model import create_model
    from paperzoo.advdiffsr.module import PhysicsSRModule

    data, _ = train_with_truth
    model = create_model("tiny", scale=4)
    hard = PhysicsSRModule(model, data.u, data.kappa, data.dt_obs, 4, projection="hard", steps=100)
    soft = PhysicsSRModule(model, data.u, data.kappa, data.dt_obs, 4, projection="none", steps=100)
    assert hard.lr_only_fraction == 0.0 and soft.lr_only_fraction == pytest.approx(0.1)


def test_rwae_samples_are_consistent_and_zero_spread_raises(train_with_truth):
    data, _ = train_with_truth
    result = train_sr(
        data,
        TrainConfig(preset="tiny", arm="rwae", steps=6, window=8, batch_size=2, mmd_samples=64),
    )
    samples = sample_ensemble(result.model, data, samples=3, seed=0)
    assert samples.shape == (3, 4, 12, 32, 32)
    assert float(M.lr_consistency_per_sample(samples, data.lr, 4).max()) < 1e-5
    with pytest.raises(SpreadCollapseError, match="collapsed"):
        check_spread(samples[:1].expand(4, *samples.shape[1:]))
    with pytest.raises(ValueError, match="needs an RWAE"):
        sample_ensemble(train_sr(data, TrainConfig(preset="tiny", steps=1, window=8)).model, data)


def test_bad_training_options():
    with pytest.raises(ValueError, match="unknown arm"):
        TrainConfig(arm="supervised")
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        TrainConfig(steps=0)
    with pytest.raises(ValueError, match="holdout"):
        TrainConfig(holdout=1.5)
    with pytest.raises(ValueError, match="unknown space"):
        TrainConfig(space="fd6")
    assert TrainConfig(arm="nophysics").lambda_pde == 0.0


def test_readme_python_example(small_data_dir):
    # the README's example, on the user's own files
    from paperzoo.advdiffsr import TrainConfig, load_user_data, super_resolve, train_sr

    train = load_user_data(f"npz:{small_data_dir / 'train_lr.npz'}")
    result = train_sr(train, TrainConfig(preset="tiny", steps=5, window=8))
    hr = super_resolve(result.model, load_user_data(f"npz:{small_data_dir / 'test_lr.npz'}"))
    assert hr.shape == (2, 12, 32, 32)


class _IgnoresProjection(torch.nn.Module):
    """An own module that ignores ``projection`` (bicubic-like upsampling plus a conv) and records
    the projection values it is called with."""

    def __init__(self, out_scale: int = 4) -> None:
        super().__init__()
        self.out_scale, self.conv = out_scale, torch.nn.Conv2d(1, 1, 3, padding=1)
        self.seen: set[str] = set()

    def forward(self, lr, u, mask=None, projection=None):
        self.seen.add(projection)
        B, T, n, _ = lr.shape
        x = torch.nn.functional.interpolate(
            lr.reshape(B * T, 1, n, n), scale_factor=self.out_scale, mode="bicubic"
        )
        return (x + self.conv(x)).reshape(B, T, n * self.out_scale, n * self.out_scale)


def test_own_module_that_ignores_the_projection_is_projected_by_the_package(train_with_truth):
    """README "Python": ``D(hr) = lr`` holds for an own module that never projects (the package
    projects its output in training and in ``super_resolve``); the module itself comes back."""
    data, _ = train_with_truth
    mine = _IgnoresProjection()
    with torch.no_grad():
        raw = mine(data.lr, data.u)
    assert M.lr_consistency(raw, data.lr, 4) > 1e-2  # unprojected, it is not LR-consistent
    mine.seen.clear()
    result = train_sr(data, TrainConfig(preset="tiny", steps=2, window=8, batch_size=2), model=mine)
    assert result.model is mine and mine.seen == {"hard"}
    hr = super_resolve(mine, data)
    assert hr.shape == (4, 12, 32, 32)
    assert M.lr_consistency(hr, data.lr, 4) < 1e-5
    # the no-physics arm trains unprojected (soft L_lr) and is projected at inference
    other = _IgnoresProjection()
    config = TrainConfig(preset="tiny", arm="nophysics", steps=2, window=8, batch_size=2)
    train_sr(data, config, model=other)
    assert other.seen == {"none"}
    assert M.lr_consistency(super_resolve(other, data), data.lr, 4) < 1e-5


def test_own_module_projection_wrapper_masks_and_is_idempotent(train_with_truth):
    from paperzoo.advdiffsr.model import ProjectedOwnModel, create_model, with_projection
    from paperzoo.advdiffsr.operators import block_mean, project_consistent

    data, _ = train_with_truth
    package = create_model("tiny")
    assert with_projection(package, 4) is package  # the package's own models are never wrapped
    wrapped = with_projection(_IgnoresProjection(), 4)
    assert isinstance(wrapped, ProjectedOwnModel) and with_projection(wrapped, 4) is wrapped
    lr, u = data.lr[:2, :4], data.u
    mask = torch.ones_like(lr)
    mask[:, :, 1, 2] = 0  # a hidden cell: left out of the projection
    with torch.no_grad():
        raw, out = wrapped.model(lr, u), wrapped(lr, u, mask)
        low, raw_low = block_mean(out, 4), block_mean(raw, 4)
        assert float(((low - lr) * mask).abs().max()) < 1e-5
        torch.testing.assert_close(low[:, :, 1, 2], raw_low[:, :, 1, 2])
        # a module that already projects comes out (up to rounding) unchanged
        projected = project_consistent(raw, lr, 4, "hard", lift="bicubic")
        again = ProjectedOwnModel(lambda *a, **k: projected, 4)(lr, u)
        torch.testing.assert_close(again, projected, rtol=0, atol=1e-6)
        assert torch.equal(wrapped(lr, u, projection="none"), raw)


def test_own_module_with_the_wrong_resolution_fails_on_the_first_batch(train_with_truth):
    data, _ = train_with_truth
    wrong = _IgnoresProjection(out_scale=2)
    config = TrainConfig(preset="tiny", steps=2, window=8, batch_size=2)
    with pytest.raises(
        ValueError,
        match=r"own model _IgnoresProjection returned shape \(2, 8, 16, 16\), expected "
        r"\(2, 8, 32, 32\) = \(B, T, n x scale, n x scale\) with n 8 and scale 4",
    ):
        train_sr(data, config, model=wrong)
    with pytest.raises(ValueError, match=r"returned shape \(4, 12, 16, 16\), expected"):
        super_resolve(wrong, data)
