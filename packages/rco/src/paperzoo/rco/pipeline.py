"""The two training runs of RCO as library functions: record a teacher's route, distil a student
along it (paper section 3). Each returns a dataclass.

Shared by the CLI verbs, ``validate`` and the benchmark, so every arm runs the same code. Both
take a preset name or a user's own ``nn.Module``, any Lightning datamodule, and Lightning's scale
options (``devices``, ``num_nodes``, ``strategy``, ``precision``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import nn

from paperzoo.core.lightning import make_trainer, resume_from
from paperzoo.rco.anchors import GreedySelector
from paperzoo.rco.callbacks import EpochHistory, RouteRecorder
from paperzoo.rco.losses import FeatureTap, RouteLoss
from paperzoo.rco.model import create_model, preset_defaults
from paperzoo.rco.module import RCODistiller, TeacherModule
from paperzoo.rco.route import ROUTE_FILE, TeacherRoute


def model_overrides_for(datamodule: L.LightningDataModule, model: str) -> dict[str, Any]:
    """The class count and input size of preset ``model`` for ``datamodule``'s samples."""
    defaults = preset_defaults(model)
    shape = tuple(datamodule.input_shape)
    overrides: dict[str, Any] = {"num_classes": int(datamodule.num_classes)}
    if "in_features" in defaults:
        overrides["in_features"] = int(math.prod(shape))
    elif len(shape) != 3:
        raise ValueError(f"model {model!r} takes images (channels, height, width), but the data "
                         f"samples have shape {shape}; use an mlp_* preset")
    else:
        overrides["in_chans"] = int(shape[0])
    return overrides


def default_milestones(epochs: int) -> list[int]:
    """The validation recipe's x0.1 steps at 1/2 and 3/4 of the run (30 and 45 of 60 epochs)."""
    return sorted({max(1, epochs // 2), max(1, 3 * epochs // 4)})


@dataclass
class TeacherResult:
    """``route`` is ``None`` only on a DDP rank other than 0 whose route folder is not rank
    0's (the CLI's extra ranks): only rank 0 writes the route."""

    route: TeacherRoute | None
    test_acc: float
    val_acc: float
    module: TeacherModule = field(repr=False)


def train_teacher(datamodule: L.LightningDataModule, route_dir: str | Path,
                  model: str | nn.Module = "mlp_teacher",
                  model_overrides: dict[str, Any] | None = None, epochs: int = 60,
                  every_n_epochs: int = 1, lr: float = 0.05, weight_decay: float = 5e-4,
                  milestones: Sequence[int] | None = None, device: str = "cpu",
                  log_dir: str | Path | None = None, extra: dict[str, Any] | None = None,
                  overwrite: bool = False, devices: int | str = 1, num_nodes: int = 1,
                  strategy: str = "auto", precision: str | None = None,
                  seed: int | None = None, resume_dir: str | Path | None = None,
                  resume: bool = False) -> TeacherResult:
    """Train the teacher once with cross-entropy and record its route (paper section 3.1).

    ``model`` is a preset name (built with ``model_overrides``) or the user's own module. The
    route of an own module is opened with ``TeacherRoute(path, model_factory=...)``; the returned
    route already has a factory (a copy of the module as it was before training). ``seed``
    seeds Python's, NumPy's and torch's global generators first (a preset's initial weights,
    dropout, unseeded shuffles), so two calls with one seed record the same route; ``None``
    (default) leaves them as the caller set them (the CLI seeds them with ``--seed``).

    ``resume_dir``: save ``resume_dir/last.ckpt`` (the whole training state, the route's records
    included) after every epoch; ``resume=True`` continues the run interrupted there, extending
    its route in ``route_dir``, and gives the route and weights of the run never interrupted.
    """
    checkpoint = resume_from(resume_dir, resume)
    if seed is not None:
        from paperzoo.core.runtime import seed_everything

        seed_everything(seed)
    factory = None
    if isinstance(model, nn.Module):
        blueprint = copy.deepcopy(model)

        def factory() -> nn.Module:
            return copy.deepcopy(blueprint)

        teacher = TeacherModule(None, model=model, num_classes=getattr(datamodule, "num_classes", None),
                                **_sgd(lr, weight_decay, epochs, milestones))
    else:
        teacher = TeacherModule(model, model_overrides, **_sgd(lr, weight_decay, epochs, milestones))
        classes = getattr(datamodule, "num_classes", None)
        if classes is not None and teacher.num_classes != classes:
            raise ValueError(f"the teacher preset {model!r} predicts {teacher.num_classes} classes, but the "
                             f"data has {classes}; pass model_overrides={{'num_classes': {classes}}}")
    recorder = RouteRecorder(route_dir, every_n_epochs=every_n_epochs, overwrite=overwrite, extra=extra,
                             resume=resume)
    # deterministic="warn": some backward kernels (adaptive pooling, interpolation) have no
    # deterministic CUDA version; a warning there instead of an error, the same CPU kernels
    trainer = make_trainer(log_dir, max_epochs=epochs, device=device, logger=log_dir is not None,
                           deterministic="warn", callbacks=[recorder], progress_bar=False, devices=devices,
                           num_nodes=num_nodes, strategy=strategy, precision=precision,
                           resume_dir=resume_dir)
    trainer.fit(teacher, datamodule=datamodule, ckpt_path=checkpoint, weights_only=True)
    (tested,) = trainer.test(teacher, datamodule=datamodule, verbose=False)
    trainer.strategy.barrier()  # rank 0 has written the whole route before any rank opens it
    # Under DDP only global rank 0 writes the route. Another rank opens it when it shares rank
    # 0's folder (a script relaunched by ``ddp`` with one path); one with a folder of its own
    # (the CLI runs every extra rank with a temporary --out) has no route to open.
    written = trainer.is_global_zero or (Path(route_dir) / ROUTE_FILE).is_file()
    route = TeacherRoute(route_dir, model_factory=factory) if written else None
    if route is not None:
        val_acc = route.val_accs[-1]
    else:
        val_acc = recorder.records[-1].val_acc if recorder.records else None
    return TeacherResult(route, float(tested["test_acc"]), float(val_acc or 0.0), teacher)


def _sgd(lr: float, weight_decay: float, epochs: int, milestones: Sequence[int] | None) -> dict[str, Any]:
    """The spec's optimiser: SGD (momentum 0.9) with x0.1 steps at ``milestones``."""
    return {"optimizer": "sgd", "lr": lr, "weight_decay": weight_decay, "scheduler": "step",
            "max_epochs": epochs,
            "milestones": default_milestones(epochs) if milestones is None else milestones}


@dataclass
class StudentResult:
    test_acc: float
    test_kl_to_final: float
    anchors: list[int]
    anchor_epochs: list[int]
    history: list[dict[str, float]]
    module: RCODistiller = field(repr=False)


def distill_student(datamodule: L.LightningDataModule, route: TeacherRoute,
                    student: str | nn.Module = "mlp_student",
                    student_overrides: dict[str, Any] | None = None,
                    anchors: Sequence[int] | None = None, selector: GreedySelector | None = None,
                    loss: str | RouteLoss = "kd", tau: float = 4.0, alpha: float = 0.9,
                    mimic_weight: float = 1.0, student_layer: FeatureTap = None,
                    teacher_layer: FeatureTap = None, epochs: int = 60,
                    stage_epochs: int | Sequence[int] | None = None,
                    lr_schedule: str = "global", lr: float = 0.05, weight_decay: float = 5e-4,
                    milestones: Sequence[int] | None = None, device: str = "cpu",
                    log_dir: str | Path | None = None, seed: int = 0,
                    callbacks: Sequence[L.Callback] = (), devices: int | str = 1,
                    num_nodes: int = 1, strategy: str = "auto",
                    precision: str | None = None, resume_dir: str | Path | None = None,
                    resume: bool = False) -> StudentResult:
    """Train one student along ``route`` (``anchors`` or ``selector``) and test it.

    A preset ``student`` is initialised from ``seed`` so that every arm of a comparison starts
    from the same weights (spec pitfall 5: equal budgets, same schedule, same batches); a user's
    own module is trained as given, in place. The datamodule's test split must be the one the
    route's teacher was trained beside (checked before training).

    ``resume_dir``: save ``resume_dir/last.ckpt`` (the whole training state: anchors chosen,
    epoch history) after every epoch; ``resume=True`` continues the run interrupted there and
    gives the student and history of the run never interrupted (same arguments, same data).
    """
    checkpoint = resume_from(resume_dir, resume)
    torch.manual_seed(seed)
    network = student if isinstance(student, nn.Module) else create_model(student, **(student_overrides or {}))
    distiller = RCODistiller(network, route, anchors=anchors, selector=selector, loss=loss, tau=tau,
                             alpha=alpha, mimic_weight=mimic_weight, student_layer=student_layer,
                             teacher_layer=teacher_layer, stage_epochs=stage_epochs,
                             lr_schedule=lr_schedule, num_classes=getattr(datamodule, "num_classes", None),
                             **_sgd(lr, weight_decay, epochs, milestones))
    history = EpochHistory(["val_acc", "kl_to_final", "congruence_loss", "anchor_epoch"])
    # deterministic="warn": the hint loss's adaptive pooling has no deterministic CUDA backward
    trainer = make_trainer(log_dir, max_epochs=epochs, device=device, logger=log_dir is not None,
                           deterministic="warn", callbacks=[history, *callbacks], progress_bar=False,
                           devices=devices, num_nodes=num_nodes, strategy=strategy, precision=precision,
                           resume_dir=resume_dir)
    trainer.fit(distiller, datamodule=datamodule, ckpt_path=checkpoint,
                weights_only=True)
    (tested,) = trainer.test(distiller, datamodule=datamodule, verbose=False)
    chosen = list(distiller.anchor_history)
    return StudentResult(float(tested["test_acc"]), float(tested["test_kl_to_final"]), chosen,
                         [route.epochs[a] for a in chosen], history.rows, distiller)
