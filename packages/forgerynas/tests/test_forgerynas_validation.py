"""The validation's bookkeeping: option checks and combining runs over disjoint seeds."""

import numpy as np
import pytest

from paperzoo.forgerynas.validation import ValidationConfig, merge_metrics


def _run(seeds, base=0.9):
    metrics = {
        "probe_auc_A": 0.52,
        "cdc_theta0_max_err": 0.0,
        "seeds": len(seeds),
        "validate_seconds": 10.0,
    }
    for arm, shift in (("cdc_in", 0.0), ("cdc_cross", 0.01), ("cnn", -0.02)):
        for s in seeds:
            metrics[f"in_auc_{arm}_seed{s}"] = base + shift + 0.01 * s
            metrics[f"cross_auc_{arm}_seed{s}"] = 0.7 + shift + 0.02 * s
        metrics[f"in_auc_{arm}"] = -1.0  # stale summaries are recomputed, never copied
        metrics[f"params_{arm}"] = 100.0 * (1 + seeds[0])
    return metrics


def test_merge_recomputes_means_and_std_over_all_seeds():
    merged, rows = merge_metrics([_run([0]), _run([1, 2])])
    values = np.array([0.88, 0.89, 0.90])
    assert merged["in_auc_cnn"] == pytest.approx(values.mean())
    assert merged["in_auc_cnn_std"] == pytest.approx(values.std(ddof=1))
    assert merged["cross_minus_in_search"] == pytest.approx(0.01)
    assert merged["in_auc_min"] == pytest.approx(values.mean())
    assert merged["pass_in_auc"] == 0 and merged["cnn_cross_in_band"] == 1
    assert merged["seeds"] == 3 and merged["validate_seconds"] == 20.0
    assert merged["params_cnn"] == pytest.approx((100 * 1 + 200 * 2) / 3)  # seed-weighted
    assert [r["arm"] for r in rows] == ["cdc_in", "cdc_cross", "cnn"]


def test_merge_refuses_repeated_seeds_and_different_data():
    with pytest.raises(ValueError, match="seed 0"):
        merge_metrics([_run([0]), _run([0])])
    other = _run([1])
    other["probe_auc_A"] = 0.6
    with pytest.raises(ValueError, match="probe_auc_A"):
        merge_metrics([_run([0]), other])
    c8, c12 = _run([0]), _run([1])
    c8["eval_C"], c12["eval_C"] = 8, 12  # two retraining recipes are not one experiment
    with pytest.raises(ValueError, match="eval_C"):
        merge_metrics([c8, c12])
    plain, flipped = _run([0]), _run([1])
    plain["train_flips"], flipped["train_flips"] = 0, 1
    with pytest.raises(ValueError, match="train_flips"):
        merge_metrics([plain, flipped])


def test_first_seed_is_checked():
    with pytest.raises(ValueError, match="first_seed"):
        ValidationConfig(first_seed=-1)
    assert ValidationConfig().eval_layers == 8
    with pytest.raises(ValueError, match="eval_C must be even"):
        ValidationConfig(eval_C=9)
    assert ValidationConfig(eval_C=12).eval_C == 12  # the spec's tiny retraining width


def test_batchnorm_recalibration_sets_the_population_statistics():
    import torch
    from torch import nn

    from paperzoo.forgerynas.data import TensorFrames
    from paperzoo.forgerynas.pipeline import recalibrate_batchnorm

    generator = torch.Generator().manual_seed(0)
    images = torch.rand(10, 3, 4, 4, generator=generator) * torch.tensor([1.0, 2.0, 3.0]).view(
        1, 3, 1, 1
    )
    frames = TensorFrames(images, torch.tensor([0, 1] * 5))
    model = nn.Sequential(nn.BatchNorm2d(3)).eval()
    recalibrate_batchnorm(model, frames, batch_size=10)
    pixels = images.permute(1, 0, 2, 3).reshape(3, -1)
    assert torch.allclose(model[0].running_mean, pixels.mean(1), atol=1e-6)
    assert torch.allclose(model[0].running_var, pixels.var(1, unbiased=True), atol=1e-6)
    assert not model.training  # the mode is kept
    plain = nn.Sequential(nn.Conv2d(3, 3, 1))
    assert recalibrate_batchnorm(plain, frames) is plain


def test_batchnorm_recalibration_runs_without_drop_path():
    """update_bn runs the model in train mode; drop-path must not thin the paths it measures."""
    import torch

    from paperzoo.forgerynas.data import TensorFrames
    from paperzoo.forgerynas.model import CascadedPyramidNet
    from paperzoo.forgerynas.pipeline import recalibrate_batchnorm
    from paperzoo.forgerynas.search_space import random_genotype

    genotype = random_genotype("forgery", 2, 1)
    torch.manual_seed(0)
    dropping = CascadedPyramidNet(genotype, C=4, layers=4, drop_path=0.5).eval()
    plain = CascadedPyramidNet(genotype, C=4, layers=4, drop_path=0.0).eval()
    plain.load_state_dict(dropping.state_dict())
    images = torch.rand(16, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    frames = TensorFrames(images, torch.tensor([0, 1] * 8))
    torch.manual_seed(2)
    recalibrate_batchnorm(dropping, frames, batch_size=8)
    recalibrate_batchnorm(plain, frames, batch_size=8)
    for (name, a), b in zip(dropping.state_dict().items(), plain.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), name
    assert dropping.drop_prob == 0.5 and not dropping.training  # restored, mode kept


def test_drop_path_ramps_linearly_over_the_epochs():
    """DARTS train.py: drop_path_prob * epoch / epochs at the start of each epoch."""
    import torch

    from paperzoo.forgerynas.data import TensorFrames
    from paperzoo.forgerynas.model import CascadedPyramidNet
    from paperzoo.forgerynas.pipeline import TrainConfig, train_detector
    from paperzoo.forgerynas.search_space import random_genotype

    model = CascadedPyramidNet(random_genotype("forgery", 2, 1), C=4, layers=4, drop_path=0.4)
    images = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    frames = TensorFrames(images, torch.tensor([0, 1] * 4))
    config = TrainConfig(epochs=4, batch_size=4, batches_per_epoch=1, recalibrate_bn=False)
    run = train_detector(model, frames, config=config)
    assert run.drop_path == pytest.approx([0.0, 0.1, 0.2, 0.3])
    assert model.set_drop_path_progress(1.0) == pytest.approx(0.4)


def test_learning_rate_warm_up_ramps_linearly_then_follows_the_cosine():
    """``lr_warmup_epochs`` 1.5 over 2 epochs of 4 steps at lr 0.1: ceil(1.5 * 4) = 6 warm-up
    steps, step t < 6 at cosine(epoch) * (t + 1) / 6, where the per-epoch cosine is 0.1 in
    epoch 0 and 0.05 in epoch 1; without warm-up the steps follow the cosine alone."""
    import torch
    from torch import nn

    from paperzoo.forgerynas.data import TensorFrames
    from paperzoo.forgerynas.pipeline import TrainConfig, retrain_lr, train_detector

    images = torch.rand(8, 3, 6, 6, generator=torch.Generator().manual_seed(0))
    frames = TensorFrames(images, torch.tensor([0, 1] * 4))

    def rates(**options):
        model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 6 * 6, 2))
        config = TrainConfig(
            epochs=2, batch_size=4, lr=0.1, batches_per_epoch=4, recalibrate_bn=False, **options
        )
        return train_detector(model, frames, config=config).lr

    warm = rates(lr_warmup_epochs=1.5)
    assert warm[0] == pytest.approx(0.1 / 6)  # step 0
    assert warm[2] == pytest.approx(0.1 * 3 / 6)  # mid warm-up, epoch 0
    assert warm[4] == pytest.approx(0.05 * 5 / 6)  # mid warm-up, epoch 1
    assert warm[5:] == pytest.approx([0.05, 0.05, 0.05])  # after it: the cosine
    assert rates() == pytest.approx([0.1] * 4 + [0.05] * 4)  # default: no warm-up
    assert [retrain_lr(t, 4, 2, 0.1, 0) for t in range(8)] == pytest.approx([0.1] * 4 + [0.05] * 4)
    assert TrainConfig().lr_warmup_epochs == 0  # opt-in
    for bad in (-0.5, 2, 6.0, float("nan"), "1", True):
        with pytest.raises(ValueError, match="lr_warmup_epochs"):
            TrainConfig(epochs=2, lr_warmup_epochs=bad)


def test_arm_initialisation_depends_on_the_seed_only():
    """An arm's network must not depend on the random state left by the arms run before it."""
    import torch

    from paperzoo.forgerynas.search_space import random_genotype
    from paperzoo.forgerynas.validation import arm_detector

    genotype = random_genotype("forgery", 2, 101)
    torch.manual_seed(5)
    first = arm_detector("tiny", 1, genotype, C=4, layers=4).state_dict()
    torch.rand(1000)  # another arm consumed random numbers
    second = arm_detector("tiny", 1, genotype, C=4, layers=4).state_dict()
    other = arm_detector("tiny", 2, genotype, C=4, layers=4).state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_retraining_flips_the_training_frames_only_with_the_run_seed():
    """TrainModule flips each training batch from a generator seeded with the run's seed;
    ``flips=False`` leaves the frames as they are."""
    import torch
    from torch import nn

    from paperzoo.forgerynas.data import random_flips
    from paperzoo.forgerynas.module import TrainModule
    from paperzoo.forgerynas.pipeline import TrainConfig

    class Recorder(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(3, 2)
            self.seen = []

        def forward(self, x):
            self.seen.append(x.clone())
            return self.linear(x.mean(dim=(2, 3)))

    images = torch.rand(6, 3, 5, 5, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 1] * 3)
    flipped = TrainModule(Recorder(), max_epochs=1, flip_seed=7)
    flipped.training_step((images, labels, labels), 0)
    assert torch.equal(
        flipped.model.seen[0], random_flips(images, torch.Generator().manual_seed(7))
    )
    plain = TrainModule(Recorder(), max_epochs=1)
    plain.training_step((images, labels, labels), 0)
    assert torch.equal(plain.model.seen[0], images)
    assert not TrainConfig().flips and TrainConfig(flips=True).flips  # opt-in
    with pytest.raises(ValueError, match="flips"):
        TrainConfig(flips="yes")


def _restart_frames(n: int = 16, size: int = 6, seed: int = 0):
    import torch

    from paperzoo.forgerynas.data import TensorFrames

    images = torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))
    return TensorFrames(images, torch.tensor([0, 1] * (n // 2)))


def _linear_model(seed: int = 0):
    import torch
    from torch import nn

    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 6 * 6, 2))


def test_a_one_class_validation_set_is_refused_not_scored_auc_0():
    """torchmetrics scores AUC 0 (with a warning) on one class: the validation AUC used to read
    0.0 every epoch and the restart rule restarted on it."""
    import torch

    from paperzoo.forgerynas.data import TensorFrames
    from paperzoo.forgerynas.pipeline import TrainConfig, train_detector

    fakes = TensorFrames(torch.rand(8, 3, 6, 6), torch.ones(8, dtype=torch.long), name="A-val")
    config = TrainConfig(epochs=1, batch_size=4, batches_per_epoch=1, recalibrate_bn=False)
    with pytest.raises(ValueError, match="validation frames 'A-val' hold fakes only"):
        train_detector(_linear_model(), _restart_frames(), fakes, config)


def test_restart_rule_restarts_below_the_threshold_from_the_same_initial_weights():
    """An attempt whose validation AUC after the check epoch is below the threshold stops there
    and the next attempt starts from the same initial weights under the batch-order seed
    seed + k * RESTART_SEED_STRIDE; the last attempt always runs to the end. With the threshold
    just above AUC 1 nothing can pass, so every attempt but the last stops after epoch 1."""
    import torch

    from paperzoo.forgerynas.pipeline import RESTART_SEED_STRIDE, TrainConfig, train_detector

    train, val = _restart_frames(seed=0), _restart_frames(seed=1)
    base = dict(epochs=3, batch_size=4, lr=0.1, batches_per_epoch=2, recalibrate_bn=False)
    config = TrainConfig(**base, restarts=2, restart_check_epoch=1, restart_min_val_auc=0.999999)
    run = train_detector(_linear_model(), train, val, config, seed=7)
    assert [a["seed"] for a in run.attempts] == [
        7,
        7 + RESTART_SEED_STRIDE,
        7 + 2 * RESTART_SEED_STRIDE,
    ]
    assert [len(a["val_auc"]) for a in run.attempts] == [1, 1, 3]
    assert [a["stopped"] for a in run.attempts] == [True, True, False]
    assert len(run.val_auc) == 3 and len(run.losses) == 6  # the last attempt's history

    # the last attempt is the plain retraining from the initial weights under its own seed
    plain = TrainConfig(**base)
    alone = train_detector(_linear_model(), train, val, plain, seed=7 + 2 * RESTART_SEED_STRIDE)
    for a, b in zip(
        run.model.state_dict().values(), alone.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)
    assert run.val_auc == alone.val_auc

    # an attempt at or above the threshold is kept: no restart, the same as no rule at all
    keep = TrainConfig(**base, restarts=2, restart_check_epoch=1, restart_min_val_auc=1e-9)
    kept = train_detector(_linear_model(), train, val, keep, seed=7)
    same = train_detector(_linear_model(), train, val, plain, seed=7)
    assert [a["stopped"] for a in kept.attempts] == [False]
    for a, b in zip(
        kept.model.state_dict().values(), same.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)
    assert same.attempts == [{"seed": 7, "val_auc": same.val_auc, "stopped": False}]


def test_restart_options_are_checked_and_need_validation_frames():
    from paperzoo.forgerynas.pipeline import TrainConfig, train_detector
    from paperzoo.forgerynas.validation import ValidationConfig

    assert TrainConfig().restarts == 0  # opt-in
    for field, bad in (
        ("restarts", -1),
        ("restarts", 1.5),
        ("restarts", True),
        ("restart_min_val_auc", 0),
        ("restart_min_val_auc", 1.0),
        ("restart_min_val_auc", float("nan")),
    ):
        with pytest.raises(ValueError, match=field):
            TrainConfig(epochs=4, **{field: bad})
    for epoch in (0, 4, 5):
        with pytest.raises(ValueError, match="restart_check_epoch"):
            TrainConfig(epochs=4, restarts=1, restart_check_epoch=epoch)
    with pytest.raises(ValueError, match="validate option train_restarts"):
        ValidationConfig(train_restarts=-1)
    with pytest.raises(ValueError, match="validate option train_restart_check_epoch"):
        ValidationConfig(train_restarts=1, train_restart_check_epoch=4)
    config = TrainConfig(
        epochs=2, batch_size=4, batches_per_epoch=1, restarts=1, restart_check_epoch=1
    )
    with pytest.raises(ValueError, match="restarts needs validation frames"):
        train_detector(_linear_model(), _restart_frames(), None, config)


def test_restart_with_rebuild_starts_from_fresh_initial_weights():
    """With ``rebuild``, attempt k trains ``rebuild(seed + k * stride)`` under that seed: the
    last attempt equals a plain retraining of that fresh network."""
    import torch

    from paperzoo.forgerynas.pipeline import RESTART_SEED_STRIDE, TrainConfig, train_detector

    train, val = _restart_frames(seed=0), _restart_frames(seed=1)
    base = dict(epochs=3, batch_size=4, lr=0.1, batches_per_epoch=2, recalibrate_bn=False)
    config = TrainConfig(**base, restarts=1, restart_check_epoch=1, restart_min_val_auc=0.999999)
    built = []

    def rebuild(init_seed):
        built.append(init_seed)
        return _linear_model(init_seed)

    run = train_detector(_linear_model(3), train, val, config, seed=3, rebuild=rebuild)
    assert built == [3 + RESTART_SEED_STRIDE]
    assert [a["stopped"] for a in run.attempts] == [True, False]
    alone = train_detector(
        _linear_model(3 + RESTART_SEED_STRIDE),
        train,
        val,
        TrainConfig(**base),
        seed=3 + RESTART_SEED_STRIDE,
    )
    for a, b in zip(
        run.model.state_dict().values(), alone.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="train_restart_init"):
        from paperzoo.forgerynas.validation import ValidationConfig

        ValidationConfig(train_restarts=1, train_restart_init="yes")


def _fake_arm_job(arm, seed, config, data, device, part=0):
    """Instant stand-in for validation.arm_job: in-domain AUC 0.99 for every arm and seed."""
    return {
        "in_auc": 0.99,
        "cross_auc": 0.7 + 0.01 * seed,
        "params": 10,
        "seconds": 0.0,
        "attempt_val_auc": [[0.9]],
    }


_SMALL = dict(n_train=32, n_val=16, n_test=16, n_b=16, n_c=16, mechanism=False, workers=1)


def test_pass_in_auc_needs_all_six_arms_and_records_the_arms(monkeypatch, tmp_path):
    """An --arms subset whose arms all pass used to give pass_in_auc 1 with no record of the
    arms; a single seed's _std used to read 0.0 (zero spread)."""
    import json
    import math

    from paperzoo.core.results import write_results
    from paperzoo.forgerynas import validation
    from paperzoo.forgerynas.validation import ARMS, run_validation

    monkeypatch.setattr(validation, "arm_job", _fake_arm_job)
    subset = run_validation(ValidationConfig(seeds=2, arms=("cnn", "timm"), **_SMALL)).metrics
    assert subset["in_auc_min"] == pytest.approx(0.99)
    assert subset["pass_in_auc"] == 0 and subset["pass_in_auc_complete"] == 0
    assert subset["arms_run"] == 2 and subset["arm_ran_cnn"] == 1 and subset["arm_ran_timm"] == 1
    assert subset["arm_ran_cdc_in"] == 0 and subset["in_auc_cnn_std"] == 0.0  # two equal seeds
    full = run_validation(ValidationConfig(seeds=1, **_SMALL)).metrics
    assert full["pass_in_auc"] == 1 and full["pass_in_auc_complete"] == 1
    assert full["arms_run"] == 6 and all(full[f"arm_ran_{arm}"] == 1 for arm in ARMS)
    assert math.isnan(full["in_auc_cnn_std"]) and math.isnan(full["cross_auc_timm_std"])
    written = json.loads(write_results(tmp_path, full).read_text())
    assert written["in_auc_cnn_std"] is None and written["seeds"] == 1  # null, not 0


def test_merge_flags_failed_parts_and_incomplete_arms():
    from paperzoo.forgerynas.validation import ARMS

    def full(seeds, failed=0):
        part = {"seeds": len(seeds), "jobs_failed": failed}
        for arm in ARMS:
            for s in seeds:
                part[f"in_auc_{arm}_seed{s}"] = 0.97
                part[f"cross_auc_{arm}_seed{s}"] = 0.7
        return part

    merged, _ = merge_metrics([full([0]), full([1, 2])])
    assert merged["pass_in_auc"] == 1 and merged["pass_in_auc_complete"] == 1
    assert merged["arms_run"] == 6 and merged["merged_parts_with_failed_jobs"] == 0
    # a part whose failed job was not an arm's (every arm has every seed): counted, still complete
    merged, _ = merge_metrics([full([0]), full([1, 2], failed=1)])
    assert merged["pass_in_auc"] == 1 and merged["pass_in_auc_complete"] == 1
    assert merged["merged_parts_with_failed_jobs"] == 1 and merged["jobs_failed"] == 1
    # an arm missing a seed (its job failed in that part) is not complete either
    holed = full([1, 2])
    del holed["in_auc_timm_seed2"], holed["cross_auc_timm_seed2"]
    merged, _ = merge_metrics([full([0]), holed])
    assert merged["pass_in_auc"] == 0 and merged["pass_in_auc_complete"] == 0
    # a subset of the arms; a single seed has no spread (NaN, not 0)
    merged, _ = merge_metrics([_run([0])])
    assert merged["arms_run"] == 3 and merged["arm_ran_timm"] == 0
    assert merged["pass_in_auc_complete"] == 0 and np.isnan(merged["in_auc_cnn_std"])


def test_a_model_without_two_logits_is_refused_naming_its_output_shape():
    """One logit failed with a raw ``IndexError: Target 1 is out of bounds``, three were trained
    and scored silently; the training (training and validation steps) and evaluation entry points
    check the output shape from the first batch on."""
    import torch
    from torch import nn

    from paperzoo.forgerynas.pipeline import TrainConfig, evaluate_detector, train_detector

    frames = _restart_frames(8)
    config = TrainConfig(epochs=1, batch_size=4, batches_per_epoch=1, recalibrate_bn=False)

    def model(logits):
        torch.manual_seed(0)
        return nn.Sequential(nn.Flatten(), nn.Linear(3 * 6 * 6, logits))

    for logits in (1, 3):
        shape = rf"shape \(4, 2\) for a batch of 4 frames; it returned \(4, {logits}\)"
        with pytest.raises(ValueError, match=rf"two logits \(real, fake\) per frame, {shape}"):
            train_detector(model(logits), frames, config=config)
        with pytest.raises(ValueError, match=rf"shape \(8, 2\) .* returned \(8, {logits}\)"):
            evaluate_detector(model(logits), frames)

    class ThreeInEval(nn.Module):  # two logits in training, three in the validation steps
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(3 * 6 * 6, 3)

        def forward(self, x):
            logits = self.linear(x.flatten(1))
            return logits if not self.training else logits[:, :2]

    with pytest.raises(ValueError, match=r"shape \(8, 2\) .* it returned \(8, 3\)"):
        train_detector(ThreeInEval(), frames, frames, config=config)
    flat = nn.Sequential(nn.Flatten(), nn.Linear(3 * 6 * 6, 1), nn.Flatten(0))
    with pytest.raises(ValueError, match=r"returned \(8,\)$"):
        evaluate_detector(flat, frames)
    run = train_detector(model(2), frames, frames, config=config)
    assert set(evaluate_detector(run.model, frames).scores) == {"auc", "ap", "acc", "eer"}
