"""The two training runs of RCO as functions: record a teacher's route, distil a student along it.

Shared by the CLI verbs, ``validate`` and the benchmark, so every arm runs the same code.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch

from paperzoo.core.lightning import make_trainer
from paperzoo.rco.anchors import GreedySelector
from paperzoo.rco.data import (
    CIFAR100DataModule,
    DigitsDataModule,
    HierarchicalGaussianDataModule,
    ImageFolderDataModule,
)
from paperzoo.rco.model import create_model, preset_defaults
from paperzoo.rco.module import RCODistiller, TeacherModule
from paperzoo.rco.route import RouteRecorder, TeacherRoute

DATASETS = ("digits", "gauss", "cifar100", "imagefolder")


def make_datamodule(data: str, seed: int = 0, batch_size: int = 64,
                    root: str | Path | None = None) -> L.LightningDataModule:
    """``digits`` and ``gauss`` are offline; ``cifar100`` and ``imagefolder`` read ``root``."""
    if data == "digits":
        return DigitsDataModule(batch_size=batch_size, seed=seed)
    if data == "gauss":
        return HierarchicalGaussianDataModule(batch_size=batch_size, seed=seed)
    if data in ("cifar100", "imagefolder"):
        if root is None:
            raise ValueError(f"--data {data} needs --root (the data set folder; nothing is downloaded)")
        module = CIFAR100DataModule if data == "cifar100" else ImageFolderDataModule
        return module(root, batch_size=batch_size, seed=seed)
    raise ValueError(f"unknown data {data!r}; choose from {', '.join(DATASETS)}")


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


class EpochHistory(L.Callback):
    """Keeps the logged metrics of every training epoch (after validation) in memory."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = tuple(names)
        self.rows: list[dict[str, float]] = []

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        row = {"epoch": trainer.current_epoch + 1}
        for name in self.names:
            value = trainer.callback_metrics.get(name)
            if value is not None:
                row[name] = float(value)
        self.rows.append(row)


@dataclass
class TeacherResult:
    route: TeacherRoute
    test_acc: float
    val_acc: float
    module: TeacherModule = field(repr=False)


def train_teacher(datamodule: L.LightningDataModule, route_dir: str | Path, model: str = "mlp_teacher",
                  model_overrides: dict[str, Any] | None = None, epochs: int = 60,
                  every_n_epochs: int = 1, lr: float = 0.05, weight_decay: float = 5e-4,
                  milestones: Sequence[int] | None = None, device: str = "cpu",
                  log_dir: str | Path | None = None, extra: dict[str, Any] | None = None,
                  overwrite: bool = False) -> TeacherResult:
    """Train the teacher once with cross-entropy and record its route (paper section 3.1)."""
    teacher = TeacherModule(model, model_overrides, optimizer="sgd", lr=lr, weight_decay=weight_decay,
                            scheduler="step", max_epochs=epochs,
                            milestones=default_milestones(epochs) if milestones is None else milestones)
    recorder = RouteRecorder(route_dir, every_n_epochs=every_n_epochs, overwrite=overwrite, extra=extra)
    trainer = make_trainer(log_dir, max_epochs=epochs, device=device, logger=log_dir is not None,
                           callbacks=[recorder], progress_bar=False)
    trainer.fit(teacher, datamodule=datamodule)
    (tested,) = trainer.test(teacher, datamodule=datamodule, verbose=False)
    route = TeacherRoute(route_dir)
    return TeacherResult(route, float(tested["test_acc"]), float(route.val_accs[-1] or 0.0), teacher)


@dataclass
class StudentResult:
    test_acc: float
    test_kl_to_final: float
    anchors: list[int]
    anchor_epochs: list[int]
    history: list[dict[str, float]]
    module: RCODistiller = field(repr=False)


def distill_student(datamodule: L.LightningDataModule, route: TeacherRoute, student: str = "mlp_student",
                    student_overrides: dict[str, Any] | None = None,
                    anchors: Sequence[int] | None = None, selector: GreedySelector | None = None,
                    loss: str = "kd", tau: float = 4.0, alpha: float = 0.9, mimic_weight: float = 1.0,
                    epochs: int = 60, stage_epochs: int | Sequence[int] | None = None,
                    lr_schedule: str = "global", lr: float = 0.05, weight_decay: float = 5e-4,
                    milestones: Sequence[int] | None = None, device: str = "cpu",
                    log_dir: str | Path | None = None, seed: int = 0,
                    callbacks: Sequence[L.Callback] = ()) -> StudentResult:
    """Train one student along ``route`` (``anchors`` or ``selector``) and test it.

    The student is initialised from ``seed`` so that every arm of a comparison starts from the
    same weights (spec pitfall 5: equal budgets, same schedule, same batches).
    """
    torch.manual_seed(seed)
    network = create_model(student, **(student_overrides or {}))
    distiller = RCODistiller(network, route, anchors=anchors, selector=selector, loss=loss, tau=tau,
                             alpha=alpha, mimic_weight=mimic_weight, stage_epochs=stage_epochs,
                             lr_schedule=lr_schedule, optimizer="sgd", lr=lr,
                             weight_decay=weight_decay, scheduler="step", max_epochs=epochs,
                             milestones=default_milestones(epochs) if milestones is None else milestones)
    history = EpochHistory(["val_acc", "kl_to_final", "congruence_loss", "anchor_epoch"])
    trainer = make_trainer(log_dir, max_epochs=epochs, device=device, logger=log_dir is not None,
                           callbacks=[history, *callbacks], progress_bar=False)
    trainer.fit(distiller, datamodule=datamodule)
    (tested,) = trainer.test(distiller, datamodule=datamodule, verbose=False)
    chosen = list(distiller.anchor_history)
    return StudentResult(float(tested["test_acc"]), float(tested["test_kl_to_final"]), chosen,
                         [route.epochs[a] for a in chosen], history.rows, distiller)
