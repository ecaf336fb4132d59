"""RCODistiller: stage switching, the anchor in the checkpoint, resume mid-stage, bad plans."""

from __future__ import annotations

import lightning as L
import pytest
import torch

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
