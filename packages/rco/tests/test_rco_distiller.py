"""RCODistiller: stage switching, the anchor in the checkpoint, resume mid-stage, bad plans."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch import nn

from paperzoo.core.lightning import make_trainer
from paperzoo.rco.anchors import GreedySelector
from paperzoo.rco.losses import KDLoss
from paperzoo.rco.model import create_model
from paperzoo.rco.module import KDDistiller, RCODistiller


class AnchorPerEpoch(L.Callback):
    """Records which route position supervised each student epoch."""

    def __init__(self) -> None:
        self.anchors: list[int] = []

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.anchors.append(pl_module.current_anchor)


def _student(name: str = "mlp_student", seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return create_model(name, **overrides)


def _fit(distiller, datamodule, epochs, ckpt_path=None, **trainer_kwargs):
    recorder = AnchorPerEpoch()
    trainer = make_trainer(None, max_epochs=epochs, logger=False, progress_bar=False,
                           callbacks=[recorder], **trainer_kwargs)
    trainer.fit(distiller, datamodule=datamodule, ckpt_path=ckpt_path)
    return trainer, recorder


def test_anchors_switch_at_the_configured_epochs(mlp_route, digits_module):
    distiller = RCODistiller(_student(), mlp_route, anchors=[1, 3, 5], stage_epochs=[2, 1, 1],
                             max_epochs=6)
    trainer, recorder = _fit(distiller, digits_module, 6, limit_train_batches=2, limit_val_batches=1)
    assert distiller.stage_starts() == [0, 2, 3]
    assert recorder.anchors == [1, 1, 3, 5, 5, 5]  # the last stage runs to the end of the budget
    assert trainer.callback_metrics["anchor_epoch"] == mlp_route.epochs[5]
    for name in ("congruence_loss", "val_acc", "kl_to_final", "train_loss"):
        assert torch.isfinite(trainer.callback_metrics[name]), name


def test_default_budget_split_is_equal(mlp_route, digits_module):
    distiller = RCODistiller(_student(), mlp_route, anchors=[1, 3, 5], max_epochs=7)
    _, recorder = _fit(distiller, digits_module, 7, limit_train_batches=1, limit_val_batches=1)
    assert recorder.anchors == [1, 1, 3, 3, 5, 5, 5]


def test_resume_mid_stage_continues_on_the_same_anchor(mlp_route, digits_module, tmp_path):
    def make():
        return RCODistiller(_student(), mlp_route, anchors=[1, 3, 5], stage_epochs=3, max_epochs=9)

    first = make()
    trainer, recorder = _fit(first, digits_module, 4, limit_train_batches=2, limit_val_batches=1)
    assert recorder.anchors == [1, 1, 1, 3]
    checkpoint = tmp_path / "mid.ckpt"
    trainer.save_checkpoint(checkpoint)
    state = torch.load(checkpoint, weights_only=False)
    assert state["rco"]["anchor_history"] == [1, 3]
    assert state["rco"]["anchor_epochs"] == [2, 4]

    resumed = make()
    _, recorder = _fit(resumed, digits_module, 9, ckpt_path=checkpoint,
                       limit_train_batches=2, limit_val_batches=1)
    assert recorder.anchors == [3, 3, 5, 5, 5]  # epochs 5-9: rest of stage 2, then stage 3
    assert resumed.anchor_history == [1, 3, 5]


def test_loaded_checkpoint_restores_the_anchor_before_training(mlp_route):
    distiller = RCODistiller(_student(), mlp_route, anchors=[1, 3, 5], max_epochs=9)
    distiller.on_load_checkpoint({"rco": {"anchor_history": [1, 3]}})
    assert distiller.current_anchor == 3
    with pytest.raises(ValueError, match="not on route"):
        distiller.on_load_checkpoint({"rco": {"anchor_history": [1, 30]}})
    with pytest.raises(ValueError, match="no RCO state"):
        distiller.on_load_checkpoint({})


def test_anchor_runs_in_eval_mode_during_training(mlp_route, digits_module):
    class CheckAnchor(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            anchor = pl_module._load_frozen("anchor", pl_module.current_anchor)
            assert not anchor.training and not any(p.requires_grad for p in anchor.parameters())
            x = batch[0]
            assert torch.equal(anchor(x), anchor(x))  # dropout teacher: deterministic in eval

    distiller = KDDistiller(_student(), mlp_route, max_epochs=1)
    trainer = make_trainer(None, max_epochs=1, logger=False, progress_bar=False,
                           callbacks=[CheckAnchor()], limit_train_batches=2, limit_val_batches=1)
    trainer.fit(distiller, datamodule=digits_module)
    assert distiller.anchor_history == [len(mlp_route) - 1]
    # anchors are not parameters of the system: never optimised, never in its state_dict
    assert all(key.startswith(("student.", "loss_fn.", "val_acc", "test_acc"))
               for key in distiller.state_dict())


def test_kd_is_the_single_last_anchor_and_matches_rco_with_that_anchor(mlp_route, digits_module):
    def run(distiller):
        torch.manual_seed(0)
        _fit(distiller, digits_module, 2, limit_train_batches=3, limit_val_batches=1)
        return torch.cat([p.detach().flatten() for p in distiller.student.parameters()])

    kd = run(KDDistiller(_student(), mlp_route, max_epochs=2))
    rco = run(RCODistiller(_student(), mlp_route, anchors=[len(mlp_route) - 1], max_epochs=2))
    assert torch.equal(kd, rco)
    with pytest.raises(ValueError, match="last checkpoint"):
        KDDistiller(_student(), mlp_route, anchors=[1])


def test_same_seed_gives_identical_students(mlp_route, digits_module):
    def run():
        distiller = RCODistiller(_student(seed=3), mlp_route, anchors=[2, 5], max_epochs=2)
        _fit(distiller, digits_module, 2, limit_train_batches=3, limit_val_batches=1)
        return torch.cat([p.detach().flatten() for p in distiller.student.parameters()])

    assert torch.equal(run(), run())


def test_greedy_selector_drives_the_stages(mlp_route, digits_module):
    selector = GreedySelector(digits_module.val_dataloader(), KDLoss(), max_anchors=3)
    distiller = RCODistiller(_student(), mlp_route, selector=selector, max_epochs=6)
    _, recorder = _fit(distiller, digits_module, 6, limit_train_batches=2, limit_val_batches=1)
    history = distiller.anchor_history
    assert history[-1] == len(mlp_route) - 1 and len(history) <= 3
    assert all(b > a for a, b in zip(history, history[1:]))
    assert recorder.anchors[-1] == len(mlp_route) - 1


def test_hint_loss_regressor_persists_across_stages(cnn_route, digits_module):
    distiller = RCODistiller(_student("cnn_tiny", width=4), cnn_route, anchors=[0, 2], loss="hint",
                             max_epochs=2)
    regressor = distiller.loss_fn.regressor
    before = regressor.weight.detach().clone()
    _, recorder = _fit(distiller, digits_module, 2, limit_train_batches=2, limit_val_batches=1)
    assert recorder.anchors == [0, 2]
    assert distiller.loss_fn.regressor is regressor
    assert not torch.equal(before, regressor.weight.detach())  # trained, never re-initialised
    assert "loss_fn.regressor.weight" in distiller.state_dict()


def test_mimic_loss_and_per_stage_schedule(mlp_route, digits_module):
    distiller = RCODistiller(_student(), mlp_route, anchors=[2, 5], loss="mimic", max_epochs=4,
                             lr_schedule="per_stage", milestones=[1])
    optimizer = distiller.build_optimizer(distiller.optim_parameters())
    distiller.trainer = None
    scheduler = distiller.build_scheduler(optimizer)
    lrs = []
    for _ in range(4):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs == pytest.approx([0.05, 0.005, 0.05, 0.005])  # restarts at the stage start
    _fit(distiller, digits_module, 4, limit_train_batches=1, limit_val_batches=1)


def test_bad_distiller_configurations(mlp_route, digits_module):
    with pytest.raises(ValueError, match="exactly one of anchors"):
        RCODistiller(_student(), mlp_route)
    with pytest.raises(ValueError, match="not on the route"):
        RCODistiller(_student(), mlp_route, anchors=[2, 6])
    with pytest.raises(ValueError, match="unknown loss"):
        RCODistiller(_student(), mlp_route, anchors=[5], loss="soft")
    with pytest.raises(ValueError, match="lr_schedule"):
        RCODistiller(_student(), mlp_route, anchors=[5], lr_schedule="cyclic")
    with pytest.raises(ValueError, match="predicts 20 classes"):
        RCODistiller(_student(num_classes=20), mlp_route, anchors=[5])
    with pytest.raises(ValueError, match=r"predict 10 classes, but the data has 4 \(labels 0\.\.3\)"):
        RCODistiller(_student(), mlp_route, anchors=[5], num_classes=4)
    with pytest.raises(ValueError, match="tau"):
        RCODistiller(_student(), mlp_route, anchors=[5], tau=0.0)
    too_many = RCODistiller(_student(), mlp_route, anchors=[1, 3, 5], max_epochs=2)
    with pytest.raises(ValueError, match="zero-length"):
        too_many.stage_starts()
    overlong = RCODistiller(_student(), mlp_route, anchors=[1, 3, 5], stage_epochs=2, max_epochs=4)
    with pytest.raises(ValueError, match="budget"):
        overlong.stage_starts()
    wrong_count = RCODistiller(_student(), mlp_route, anchors=[1, 5], stage_epochs=[1, 1, 1],
                               max_epochs=4)
    with pytest.raises(ValueError, match="lists 3 stages"):
        wrong_count.stage_starts()


def test_greedy_selector_uses_the_distillers_hint_loss(cnn_route, digits_module):
    selector = GreedySelector(digits_module.val_dataloader(), max_anchors=2)
    distiller = RCODistiller(_student("cnn_tiny", width=4), cnn_route, selector=selector,
                             loss="hint", max_epochs=2)
    assert selector.loss is distiller.loss_fn
    _fit(distiller, digits_module, 2, limit_train_batches=1, limit_val_batches=1)
    assert distiller.anchor_history[-1] == len(cnn_route) - 1


class LearningRatePerEpoch(L.Callback):
    def __init__(self) -> None:
        self.lrs: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])


def _per_stage_lrs(distiller, epochs):
    optimizer = distiller.build_optimizer(distiller.optim_parameters())
    scheduler = distiller.build_scheduler(optimizer)
    lrs = []
    for _ in range(epochs):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_per_stage_milestones_are_scaled_so_the_lr_drops_inside_every_stage(mlp_route):
    """The recipe's x0.1 at epochs 30 and 45 of 60 becomes offsets 7 and 11 of each 15-epoch
    stage (unscaled, a 15-epoch stage never reached milestone 30 and never decayed)."""
    distiller = RCODistiller(_student(), mlp_route, anchors=[0, 2, 4, 5], lr_schedule="per_stage",
                             milestones=(30, 45), max_epochs=60)
    assert distiller.stage_milestones(15) == [7, 11]
    lrs = _per_stage_lrs(distiller, 60)
    for start in (0, 15, 30, 45):
        stage = lrs[start:start + 15]
        assert stage == pytest.approx([0.05] * 7 + [0.005] * 4 + [0.0005] * 4)


def test_per_stage_lr_drops_inside_every_stage_of_a_fit(mlp_route, digits_module):
    distiller = RCODistiller(_student(), mlp_route, anchors=[1, 3, 5], stage_epochs=[3, 2, 3],
                             lr_schedule="per_stage", milestones=[4, 6], max_epochs=8)
    recorder = LearningRatePerEpoch()
    make_trainer(None, max_epochs=8, logger=False, progress_bar=False, callbacks=[recorder],
                 limit_train_batches=1, limit_val_batches=1).fit(distiller, datamodule=digits_module)
    # milestones 4 and 6 of 8 epochs: offsets 1 and 2 of a 3-epoch stage, 1 of a 2-epoch one
    assert recorder.lrs == pytest.approx([0.05, 0.005, 0.0005, 0.05, 0.005, 0.05, 0.005, 0.0005])


def test_any_module_is_a_student_for_logit_kd(mlp_route, digits_module):
    """Logit KD needs no forward_features and no num_classes attribute."""
    torch.manual_seed(0)
    student = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    distiller = RCODistiller(student, mlp_route, anchors=[2, 5], max_epochs=2)
    trainer, recorder = _fit(distiller, digits_module, 2, limit_train_batches=2, limit_val_batches=1)
    assert recorder.anchors == [2, 5]
    assert torch.isfinite(trainer.callback_metrics["congruence_loss"])


def test_a_teacher_with_the_wrong_output_width_is_refused_on_its_first_batch(tmp_path):
    """A user's 10-logit model on 4-class data: one ValueError naming both counts, not a
    torchmetrics error (validation) or a silently trained 10-class route."""
    import numpy as np

    from paperzoo.rco.data import NpzDataModule
    from paperzoo.rco.module import check_logit_width
    from paperzoo.rco.pipeline import train_teacher

    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 6)).astype(np.float32)
    np.savez(tmp_path / "four.npz", x=x, y=np.arange(80) % 4)
    data = NpzDataModule(tmp_path / "four.npz", batch_size=16)
    wide = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 10))
    message = r"the teacher \(Sequential\) outputs logits of shape \(16, 10\), but the data has 4 classes"
    with pytest.raises(ValueError, match=message):
        train_teacher(data, tmp_path / "route", wide, epochs=1)
    assert not (tmp_path / "route" / "route.json").exists()
    # a preset of another width, from Python: refused before training, naming the override
    with pytest.raises(ValueError, match=r"preset 'mlp_tiny' predicts 10 classes, but the data has 4; "
                                         r"pass model_overrides=\{'num_classes': 4\}"):
        train_teacher(data, tmp_path / "route", "mlp_tiny", {"in_features": 6}, epochs=1)
    assert not (tmp_path / "route" / "route.json").exists()
    with pytest.raises(ValueError, match=r"the student outputs logits of shape \(2,\), but the data has 3"):
        check_logit_width(torch.zeros(2), 3, "the student")
    check_logit_width(torch.zeros(2, 3), 3, "the student")  # the right width passes


def test_hint_loss_on_named_layers_of_plain_modules(mlp_route, digits_module):
    torch.manual_seed(0)
    student = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
    distiller = RCODistiller(student, mlp_route, anchors=[5], loss="hint", student_layer="2",
                             teacher_layer="features.5", max_epochs=1)
    regressor = distiller.loss_fn.regressor
    assert (regressor.in_features, regressor.out_features) == (16, 256)
    x = torch.rand(4, 1, 8, 8)
    teacher = mlp_route.load(5)
    hint = distiller.loss_fn.mimic_term(distiller.loss_fn.student_output(student, x),
                                        distiller.loss_fn.teacher_output(teacher, x))
    expected = 0.5 * (regressor(student[:3](x)) - teacher.features(x)).pow(2).sum(1).mean()
    assert hint.item() == pytest.approx(expected.item(), rel=1e-6)
    _fit(distiller, digits_module, 1, limit_train_batches=2, limit_val_batches=1)


def test_hint_loss_on_a_callable_tap_and_missing_features(mlp_route):
    def tap(model, x):
        hidden = model[:3](x)
        return hidden, model[3](hidden)

    student = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
    distiller = RCODistiller(student, mlp_route, anchors=[5], loss="hint", student_layer=tap,
                             max_epochs=1)
    assert (distiller.loss_fn.regressor.in_features, distiller.loss_fn.regressor.out_features) == (16, 256)
    with pytest.raises(ValueError, match="no forward_features/forward_head: name the feature layer"):
        RCODistiller(student, mlp_route, anchors=[5], loss="hint", max_epochs=1)
    with pytest.raises(ValueError, match="has no layer 'body'"):
        RCODistiller(student, mlp_route, anchors=[5], loss="hint", student_layer="body", max_epochs=1)


def test_the_teacher_split_never_reaches_the_students_test_split(mlp_route):
    from paperzoo.rco.data import DigitsDataModule

    distiller = RCODistiller(_student(), mlp_route, anchors=[5], max_epochs=1)
    trainer = make_trainer(None, max_epochs=1, logger=False, progress_bar=False, limit_train_batches=1)
    with pytest.raises(ValueError, match="test split differs"):  # mlp_route: seed 0's split
        trainer.fit(distiller, datamodule=DigitsDataModule(seed=1))


class CountingSelector(GreedySelector):
    """A greedy selector that records the route position it was asked to move on from."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.asked_from: list[int] = []

    def next_anchor(self, student, current):
        self.asked_from.append(current)
        return super().next_anchor(student, current)


def test_resume_mid_stage_keeps_the_greedy_anchors(mlp_route, digits_module, tmp_path):
    """With a greedy selector the anchors depend on the student when each was chosen: a resumed
    run must take them from the checkpoint, not choose them again with the trained student (which
    may or may not land on the same positions, so the selector's calls are checked too). The
    third anchor is the teacher's (max_anchors=3): the uninterrupted history is reproduced."""
    def make():
        selector = CountingSelector(digits_module.val_dataloader(), KDLoss(), max_anchors=3)
        return RCODistiller(_student(), mlp_route, selector=selector, max_epochs=6)

    whole = make()
    _, uninterrupted = _fit(whole, digits_module, 6, limit_train_batches=2, limit_val_batches=1)
    assert len(whole.anchor_history) == 3 and whole.anchor_history[-1] == len(mlp_route) - 1
    first = make()
    trainer, _ = _fit(first, digits_module, 3, limit_train_batches=2, limit_val_batches=1)
    assert first.anchor_history == whole.anchor_history[:2]  # stages 0 and 1 chosen; stage 1 half done
    checkpoint = tmp_path / "greedy.ckpt"
    trainer.save_checkpoint(checkpoint)

    resumed = make()
    _, recorder = _fit(resumed, digits_module, 6, ckpt_path=checkpoint,
                       limit_train_batches=2, limit_val_batches=1)
    assert resumed.anchor_history == whole.anchor_history
    assert recorder.anchors == uninterrupted.anchors[3:]  # epochs 4-6: rest of stage 1, then stage 2
    assert resumed.selector.asked_from == [whole.anchor_history[1]]  # only the stage-2 choice is new
    assert resumed.selector.chosen == whole.selector.chosen


def test_frozen_teachers_follow_the_students_dtype_under_a_true_precision(mlp_route, digits_module):
    """The anchor and final teachers are not submodules: a ``64-true`` (or ``bf16-true``)
    trainer converts the student only, and an fp32 teacher fed the student's batch failed."""
    distiller = RCODistiller(_student(), mlp_route, anchors=[1, 5], max_epochs=2)
    _, recorder = _fit(distiller, digits_module, 2, precision="64-true", limit_train_batches=2,
                       limit_val_batches=1)
    assert recorder.anchors == [1, 5]
    for slot in ("anchor", "final"):
        assert next(distiller._frozen[slot][1].parameters()).dtype == torch.float64


def test_distillation_asks_for_deterministic_kernels_with_a_warning_only(mlp_route, digits_module):
    """The hint loss's adaptive pooling has no deterministic CUDA backward: a strict
    ``deterministic=True`` would stop a GPU distillation at its first step."""
    from paperzoo.rco.pipeline import distill_student

    torch.use_deterministic_algorithms(False)
    try:
        distill_student(digits_module, mlp_route, "mlp_student", {}, anchors=[5], epochs=1, device="cpu")
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()
    finally:
        torch.use_deterministic_algorithms(False)
