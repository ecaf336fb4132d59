"""Lightning defaults: a base ``MethodModule`` with optimisers and schedulers chosen by name,
and ``make_trainer`` with the project's CPU-friendly, reproducible trainer settings."""

from __future__ import annotations

import logging
import signal
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch

from paperzoo.core.runtime import progress_enabled, resolve_device

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("none", "cosine", "step")


class MethodModule(L.LightningModule):
    """Base of every method's system: optimiser and LR schedule by string option.

    Subclasses pass their own typed arguments plus these to ``super().__init__`` and list
    module-valued arguments in ``hparams_ignore`` so they are not written to ``hparams.yaml``.
    ``optim_parameters()`` chooses what is optimised (all trainable parameters by default).
    """

    hparams_ignore: Sequence[str] = ()

    def __init__(
        self,
        optimizer: str = "adam",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        momentum: float = 0.9,
        scheduler: str = "none",
        milestones: Sequence[int] = (),
        gamma: float = 0.1,
        max_epochs: int | None = None,
    ) -> None:
        super().__init__()
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {optimizer!r}; choose from {', '.join(OPTIMIZERS)}")
        if scheduler not in SCHEDULERS:
            raise ValueError(f"unknown scheduler {scheduler!r}; choose from {', '.join(SCHEDULERS)}")
        if lr <= 0:
            raise ValueError(f"lr must be positive, got {lr}")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        self.save_hyperparameters(ignore=list(self.hparams_ignore))
        self.optimizer_name = optimizer
        self.lr = lr
        self.weight_decay = weight_decay
        self.momentum = momentum
        self.scheduler_name = scheduler
        self.milestones = list(milestones)
        self.gamma = gamma
        self.schedule_epochs = max_epochs

    def optim_parameters(self) -> Iterable[torch.nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def build_optimizer(self, parameters: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
        parameters = list(parameters)
        if self.optimizer_name == "sgd":
            return torch.optim.SGD(parameters, lr=self.lr, momentum=self.momentum,
                                   weight_decay=self.weight_decay)
        if self.optimizer_name == "adamw":
            return torch.optim.AdamW(parameters, lr=self.lr, weight_decay=self.weight_decay)
        return torch.optim.Adam(parameters, lr=self.lr, weight_decay=self.weight_decay)

    def build_scheduler(self, optimizer: torch.optim.Optimizer):
        if self.scheduler_name == "cosine":
            epochs = self.schedule_epochs or (self.trainer.max_epochs if self._trainer else None)
            if not epochs or epochs < 1:
                raise ValueError("scheduler 'cosine' needs max_epochs (or a trainer with max_epochs)")
            return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
        if self.scheduler_name == "step":
            if not self.milestones:
                raise ValueError("scheduler 'step' needs milestones (epochs where the LR is multiplied by gamma)")
            return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=self.milestones, gamma=self.gamma)
        return None

    def configure_optimizers(self) -> Any:
        optimizer = self.build_optimizer(self.optim_parameters())
        scheduler = self.build_scheduler(optimizer)
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}


def _quiet_lightning() -> None:
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in (".*does not have many workers.*", ".*LeafSpec.*", ".*number of training batches.*",
                    ".*Checkpoint directory.*exists and is not empty.*"):
        warnings.filterwarnings("ignore", message=pattern)


PRECISIONS = ("64-true", "32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true",
              "transformer-engine")


def check_scale(devices: int | str = 1, num_nodes: int = 1, strategy: str = "auto",
                precision: str | None = None) -> None:
    """Refuse device counts, node counts and precisions Lightning would reject late, naming the option."""
    if isinstance(devices, str):
        if devices != "auto" and not devices.replace(",", "").isdigit():
            raise ValueError(f"--devices must be a positive count, 'auto' or a list like '0,1', got {devices!r}")
    elif not isinstance(devices, int) or devices < 1:
        raise ValueError(f"--devices must be >= 1, got {devices!r}")
    if not isinstance(num_nodes, int) or num_nodes < 1:
        raise ValueError(f"--num_nodes must be >= 1, got {num_nodes!r}")
    if not strategy:
        raise ValueError("--strategy must name a Lightning strategy (auto, ddp, ddp_spawn, fsdp, ...)")
    if precision is not None and str(precision) not in PRECISIONS:
        raise ValueError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")


class StopLaunchedRanksOnError(L.Callback):
    """When rank 0 fails inside ``fit``/``test``/..., kill the ranks Lightning's ``ddp`` launched.

    Lightning kills them only on Ctrl-C; on any other error of rank 0 they would wait in their
    next collective for the process group's timeout (30 minutes by default; gloo on the CPU
    notices the closed connection at once, NCCL on GPUs does not) after rank 0 has exited. A
    failing launched rank is already handled: Lightning's process observer then stops every rank.
    """

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        from lightning.pytorch.strategies.launchers.subprocess_script import (
            _SubprocessScriptLauncher,
        )

        launcher = getattr(trainer.strategy, "launcher", None)
        if trainer.is_global_zero and isinstance(launcher, _SubprocessScriptLauncher):
            launcher.kill(getattr(signal, "SIGKILL", signal.SIGTERM))


def make_trainer(
    out_dir: str | Path | None = None,
    max_epochs: int = 10,
    device: str = "auto",
    deterministic: bool | str = True,
    progress_bar: bool | None = None,
    logger: bool = True,
    checkpoint: bool = False,
    callbacks: Sequence[L.Callback] = (),
    devices: int | str = 1,
    num_nodes: int = 1,
    strategy: str = "auto",
    precision: str | None = None,
    **overrides: Any,
) -> L.Trainer:
    """A ``lightning.Trainer`` with the project's defaults.

    ``device`` picks the accelerator (``cuda`` -> GPU); ``devices``, ``num_nodes``, ``strategy``
    (``ddp``, ``ddp_spawn``, ``fsdp``, ...) and ``precision`` (``bf16-mixed``, ...) go to Lightning
    unchanged, so one method runs on several GPUs or nodes (or several CPU processes with gloo:
    ``device="cpu", devices=2, strategy="ddp"``). Deterministic algorithms when asked (``"warn"``:
where an operation has no deterministic CUDA kernel, a warning instead of an error); progress bar
    on a terminal, off under CI; CSV logs (and checkpoints, when ``checkpoint``) under ``out_dir``;
    no sanity-check pass and no model summary. ``overrides`` go to the Trainer unchanged. Under
    ``ddp`` a failure of rank 0 stops the ranks it launched (:class:`StopLaunchedRanksOnError`).
    """
    _quiet_lightning()
    check_scale(devices, num_nodes, strategy, precision)
    accelerator = "gpu" if resolve_device(device) == "cuda" else "cpu"
    settings: dict[str, Any] = dict(
        accelerator=accelerator,
        devices=devices,
        num_nodes=num_nodes,
        strategy=strategy,
        max_epochs=max_epochs,
        deterministic=deterministic,
        enable_progress_bar=progress_enabled() if progress_bar is None else progress_bar,
        enable_model_summary=False,
        enable_checkpointing=checkpoint,
        num_sanity_val_steps=0,
        callbacks=[*callbacks, StopLaunchedRanksOnError()],
        default_root_dir=str(out_dir) if out_dir is not None else None,
        logger=False,
    )
    if precision is not None:
        settings["precision"] = precision
    if logger and out_dir is not None:
        from lightning.pytorch.loggers import CSVLogger

        settings["logger"] = CSVLogger(str(out_dir), name="logs", version="")
    settings.update(overrides)
    return L.Trainer(**settings)
