"""Lightning defaults: a base ``MethodModule`` with optimisers and schedulers chosen by name,
``make_trainer`` with the project's CPU-friendly, reproducible trainer settings, and
:class:`ResumeCheckpoint`, the per-epoch checkpoint a training verb's ``--resume`` continues from."""

from __future__ import annotations

import logging
import random
import signal
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from paperzoo.core.runtime import progress_enabled, resolve_device

CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"
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
                    ".*Checkpoint directory.*exists and is not empty.*",
                    # a resumed fit writes the earlier rows back (ResumeCheckpoint); --overwrite asked for the rest
                    ".*Experiment logs directory.*exists and is not empty.*"):
        warnings.filterwarnings("ignore", message=pattern)


PRECISIONS = ("64-true", "32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true",
              "transformer-engine")


SPAWNING_STRATEGY_WORDS = ("spawn", "fork", "notebook")


def check_scale(devices: int | str = 1, num_nodes: int = 1, strategy: str = "auto",
                precision: str | None = None) -> None:
    """Refuse device counts, node counts and precisions Lightning would reject late, naming the option.

    Strategies that start their training processes from this one (``ddp_spawn``, ``ddp_fork``,
    ``ddp_notebook``, ``fsdp`` with ``start_method`` spawn) are refused: Lightning hands back
    only the weights (and ``callback_metrics``) to the calling process, so the step count,
    losses, histories and every other result a training function reads from its trainer,
    module or callbacks after ``fit`` would be those of the untrained copy here. Data sets
    sent to the children also go through pickling and shared memory, which modules with
    parametrisations (e.g. a constrained convolution) refuse."""
    if isinstance(devices, str):
        if devices != "auto" and not devices.replace(",", "").isdigit():
            raise ValueError(f"--devices must be a positive count, 'auto' or a list like '0,1', got {devices!r}")
    elif not isinstance(devices, int) or devices < 1:
        raise ValueError(f"--devices must be >= 1, got {devices!r}")
    if not isinstance(num_nodes, int) or num_nodes < 1:
        raise ValueError(f"--num_nodes must be >= 1, got {num_nodes!r}")
    if not strategy:
        raise ValueError("--strategy must name a Lightning strategy (auto, ddp, fsdp, ...)")
    start = strategy if isinstance(strategy, str) else str(getattr(strategy, "_start_method", ""))
    if any(word in start for word in SPAWNING_STRATEGY_WORDS):
        raise ValueError(
            f"--strategy {strategy} is not supported: it trains in processes started from this one "
            "and hands back only the weights, so the steps, losses and histories a training "
            "function returns would be those of an untrained copy. Use --strategy ddp: the "
            "command line is relaunched once per device; from Python, run the script with "
            "strategy='ddp' (Lightning reruns it per device) or under torchrun")
    if precision is not None and str(precision) not in PRECISIONS:
        raise ValueError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")


class StopLaunchedRanksOnError(L.Callback):
    """When rank 0 fails inside ``fit``/``test``/..., kill the ranks Lightning's ``ddp`` launched.

    Lightning kills them only on Ctrl-C; on any other error of rank 0 they would wait in their
    next collective for the process group's timeout (30 minutes by default; gloo on the CPU
    notices the closed connection at once, NCCL on GPUs does not) after rank 0 has exited. A
    failing launched rank is already handled: Lightning's process observer then stops every rank.

    The ranks are killed (SIGKILL: one blocked in a collective would not run a handler), so the
    CLI's temporary ``--out`` of each (:func:`paperzoo.core.runtime.rank_scratch_prefix`) is
    removed here once they have exited (up to 30 s each).
    """

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        from lightning.pytorch.strategies.launchers.subprocess_script import (
            _SubprocessScriptLauncher,
        )

        launcher = getattr(trainer.strategy, "launcher", None)
        if trainer.is_global_zero and isinstance(launcher, _SubprocessScriptLauncher):
            launcher.kill(getattr(signal, "SIGKILL", signal.SIGTERM))
            _remove_scratch_of_killed_ranks(launcher.procs)


def _remove_scratch_of_killed_ranks(procs: Sequence, timeout_s: float = 30.0) -> None:
    """Remove the temporary ``--out`` folders of the ranks this process launched and killed."""
    import os
    import shutil
    import subprocess
    import tempfile

    from paperzoo.core.runtime import rank_scratch_prefix

    for proc in procs:
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return  # still running: its folder is in use
    for folder in Path(tempfile.gettempdir()).glob(rank_scratch_prefix("*", os.getpid()) + "*"):
        shutil.rmtree(folder, ignore_errors=True)


def make_trainer(
    out_dir: str | Path | None = None,
    max_epochs: int = 10,
    device: str = "auto",
    deterministic: bool | str = True,
    progress_bar: bool | None = None,
    logger: bool = True,
    checkpoint: bool = False,
    callbacks: Sequence[L.Callback] = (),
    resume_dir: str | Path | None = None,
    devices: int | str = 1,
    num_nodes: int = 1,
    strategy: str = "auto",
    precision: str | None = None,
    **overrides: Any,
) -> L.Trainer:
    """A ``lightning.Trainer`` with the project's defaults.

    ``device`` picks the accelerator (``cuda`` -> GPU); ``devices``, ``num_nodes``, ``strategy``
    (``ddp``, ``fsdp``, ...; not the spawning ones, :func:`check_scale`) and ``precision`` (``bf16-mixed``, ...) go to Lightning
    unchanged, so one method runs on several GPUs or nodes (or several CPU processes with gloo:
    ``device="cpu", devices=2, strategy="ddp"``). Deterministic algorithms when asked (``"warn"``:
where an operation has no deterministic CUDA kernel, a warning instead of an error); progress bar
    on a terminal, off under CI; CSV logs (and checkpoints, when ``checkpoint``) under ``out_dir``;
    no sanity-check pass and no model summary. ``overrides`` go to the Trainer unchanged. Under
    ``ddp`` a failure of rank 0 stops the ranks it launched (:class:`StopLaunchedRanksOnError`).
    ``resume_dir``: save ``resume_dir/last.ckpt`` at the end of every training epoch
    (:class:`ResumeCheckpoint`), so that ``trainer.fit(..., ckpt_path=resume_checkpoint(resume_dir),
    weights_only=True)`` continues an interrupted run exactly.
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
        enable_checkpointing=checkpoint or resume_dir is not None,
        num_sanity_val_steps=0,
        callbacks=[*callbacks, StopLaunchedRanksOnError(),
                   *([ResumeCheckpoint(resume_dir, previous_log=_read_csv_log(out_dir) if logger else None)]
                     if resume_dir is not None else [])],
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


CSV_LOG = Path("logs") / "metrics.csv"  # where make_trainer's CSVLogger writes


def _read_csv_log(out_dir: str | Path | None) -> list[dict[str, str]] | None:
    """The rows of an earlier run's ``logs/metrics.csv``, read before Lightning's CSV logger
    deletes the file, for :class:`ResumeCheckpoint` to write back the ones before its checkpoint."""
    import csv

    if out_dir is None or not (Path(out_dir) / CSV_LOG).is_file():
        return None
    with open(Path(out_dir) / CSV_LOG, newline="") as file:
        return list(csv.DictReader(file))


def _zero_counters(counters: dict[str, Any]) -> None:
    for key, value in counters.items():
        if isinstance(value, dict):
            _zero_counters(value)
        else:
            counters[key] = 0


def _generators(root: Any, prefix: str, depth: int = 4) -> dict[str, torch.Generator]:
    """The ``torch.Generator`` objects reachable from a DataLoader through its samplers (every
    attribute that is a generator, a sampler or a batch sampler, nested), by the attribute path
    that finds them again after a restart."""
    from torch.utils.data import DataLoader, Sampler

    if isinstance(root, torch.Generator):
        return {prefix: root}
    if depth < 0 or not isinstance(root, DataLoader | Sampler):
        return {}
    found: dict[str, torch.Generator] = {}
    for name, child in sorted(vars(root).items()):
        if child is not root and isinstance(child, torch.Generator | DataLoader | Sampler):
            found.update(_generators(child, f"{prefix}.{name}", depth - 1))
    return found


def _module_generators(owner: Any, prefix: str) -> dict[str, torch.Generator]:
    """``torch.Generator`` attributes held directly by a LightningModule or a DataModule."""
    if owner is None:
        return {}
    return {f"{prefix}.{name}": value for name, value in sorted(vars(owner).items())
            if isinstance(value, torch.Generator)}


def _training_generators(trainer: L.Trainer) -> dict[str, torch.Generator]:
    found = _module_generators(trainer.lightning_module, "module")
    found.update(_module_generators(trainer.datamodule, "datamodule"))
    loaders = trainer.train_dataloader
    if loaders is None:
        return found
    if isinstance(loaders, dict):
        items = sorted(loaders.items())
    elif isinstance(loaders, list | tuple):
        items = list(enumerate(loaders))
    else:
        items = [(0, loaders)]
    for key, loader in items:
        found.update(_generators(loader, f"train_dataloader[{key}]"))
    return found


def _random_states(trainer: L.Trainer) -> dict[str, Any]:
    """Every random state the rest of a run draws from, in types ``torch.load(weights_only=True)``
    reads: Python's, NumPy's and torch's global generators (CUDA ones when in use) and the
    generators of the training loaders (a shuffling sampler's) and of the module."""
    name, keys, position, has_gauss, cached = np.random.get_state()  # noqa: NPY002 (the global state seed_everything seeds)
    return {
        "python": random.getstate(),
        "numpy": [str(name), torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(position),
                  int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        "generators": {path: g.get_state() for path, g in _training_generators(trainer).items()
                       if g.device.type == "cpu"},
    }


def _restore_global_random_states(states: dict[str, Any]) -> None:
    """Put back the global generators :func:`_random_states` saved."""
    random.setstate(_as_tuple(states["python"]))
    name, keys, position, has_gauss, cached = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, cached))  # noqa: NPY002
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["cuda"])


def _restore_generators(trainer: L.Trainer, saved: dict[str, torch.Tensor]) -> list[str]:
    """Put back the loaders' and modules' generators; returns those it could not find."""
    current = _training_generators(trainer)
    missing = []
    for path, state in saved.items():
        if path in current:
            current[path].set_state(state)
        else:
            missing.append(path)
    return missing


def _as_tuple(value: Any) -> Any:
    """``random.setstate`` wants the nested tuples ``getstate`` gave (a checkpoint may hold lists)."""
    return tuple(_as_tuple(v) for v in value) if isinstance(value, list | tuple) else value


class ResumeCheckpoint(ModelCheckpoint):
    """Saves ``dirpath/last.ckpt`` (atomically, Lightning's own writer) at the end of every
    training epoch, with everything an exact continuation needs.

    Lightning's checkpoint holds the weights, the optimiser and LR-scheduler states, the loop
    counters and every callback's ``state_dict``. This callback adds the random states: Python's,
    NumPy's, torch's (and CUDA's), and the ``torch.Generator`` of the training loaders' samplers
    and of the module and datamodule (a shuffling sampler's generator would otherwise restart at
    epoch 0's order), for every rank under several processes. They are put back when training
    starts again, so a run interrupted after any epoch and resumed on the same number of
    processes gives the weights of the run that was never interrupted, bit for bit (on one
    machine; a GPU op without a deterministic kernel breaks that, as it breaks reruns).

    A method whose module keeps state outside its parameters (a loss history, a chosen anchor)
    saves it in ``on_save_checkpoint`` / a callback's ``state_dict``, as Lightning asks.
    """

    def __init__(self, dirpath: str | Path, every_n_epochs: int = 1,
                 previous_log: list[dict[str, str]] | None = None) -> None:
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be >= 1, got {every_n_epochs}")
        super().__init__(dirpath=str(dirpath), save_last=True, save_top_k=0, every_n_epochs=every_n_epochs,
                         save_on_train_epoch_end=True, enable_version_counter=False)
        self._trainer: L.Trainer | None = None
        self._pending_states: dict[str, Any] | None = None
        self._previous_log = previous_log
        self._resumed_step: int | None = None
        self._logged_steps: int | None = None

    @property
    def state_key(self) -> str:
        return "ResumeCheckpoint"

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        self._trainer = trainer

    def state_dict(self) -> dict[str, Any]:
        """Lightning builds the checkpoint on every rank and rank 0 writes it: under several
        processes every rank's random states are gathered, so each gets its own back."""
        state = super().state_dict()
        if self._trainer is None:
            return state
        states = _random_states(self._trainer)
        if self._trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered: list[Any] = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(gathered, states)
            state["random_states_per_rank"] = gathered
        state["random_states"] = states
        return state

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        """A fit bounded by ``max_steps`` (``max_epochs=-1``): Lightning restarts a checkpoint
        written at the end of an epoch as an unfinished epoch and runs one more batch of it.
        The uninterrupted run is at the start of the next epoch: mark the saved epoch completed
        and the next one not begun, as Lightning itself does for a fit bounded by epochs."""
        self._resumed_step = int(checkpoint.get("global_step", 0))
        fit = checkpoint.get("loops", {}).get("fit_loop")
        if not fit:
            return
        self._logged_steps = fit.get("epoch_loop.state_dict", {}).get("_batches_that_stepped")
        if not trainer.fit_loop._iteration_based_training():
            return
        epochs = fit["epoch_progress"]
        if epochs["total"]["processed"] != epochs["total"]["completed"] + 1:
            return
        for part in ("total", "current"):
            epochs[part]["completed"] = epochs[part]["processed"]
        _zero_counters(fit["epoch_loop.batch_progress"]["current"])
        fit["epoch_loop.batch_progress"]["is_last_batch"] = False
        _zero_counters(fit["epoch_loop.scheduler_progress"]["current"])
        for part in fit["epoch_loop.automatic_optimization.optim_progress"]["optimizer"].values():
            _zero_counters(part["current"])

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Keep the saved random states (this rank's) for :meth:`on_train_start`."""
        state = dict(state_dict)
        states = state.pop("random_states", None)
        per_rank = state.pop("random_states_per_rank", None)
        super().load_state_dict(state)
        self._pending_states = None
        if states is None or self._trainer is None:
            return
        world_size = self._trainer.world_size
        if world_size > 1 or per_rank is not None:
            if per_rank is None or len(per_rank) != world_size:
                saved = 1 if per_rank is None else len(per_rank)
                warnings.warn(f"resumed on {world_size} process(es) a run saved by {saved}: the random "
                              "states stay as seeded, so the continuation is not bit-identical to an "
                              "uninterrupted run", stacklevel=2)
                return
            states = per_rank[self._trainer.global_rank]
        self._pending_states = states

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Save ``last.ckpt`` (Lightning calls a checkpoint callback after the module's own
        ``on_train_epoch_end``, so what the module records there is in it), after writing the
        loggers' rows so far to disk, so that a process killed outright loses none of them."""
        if self._should_skip_saving_checkpoint(trainer):
            return
        if (trainer.current_epoch + 1) % self._every_n_epochs == 0:
            for logger in trainer.loggers:  # the rows so far reach the disk with the checkpoint
                logger.save()
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """No save here: the epoch's checkpoint is written once its training part has ended."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Put the random states back, then build the training iterator again.

        Lightning builds the first training iterator before ``on_train_start``, and building one
        draws a base seed (from the loader's generator, or torch's global one): the draw the
        uninterrupted run makes from the saved states at the start of the next epoch. So the
        states go back first and the iterator is built again from them."""
        super().on_train_start(trainer, pl_module)
        states, self._pending_states = self._pending_states, None
        if states is None:
            return
        _restore_global_random_states(states)
        missing = _restore_generators(trainer, states["generators"])
        if missing:
            warnings.warn(f"resumed without the saved state of the generator(s) {missing}: the "
                          "training data or the module changed shape, so the continuation differs "
                          "from the uninterrupted run", stacklevel=2)
        fetcher = getattr(trainer.fit_loop, "_data_fetcher", None)
        if fetcher is not None and getattr(fetcher, "iterator", None) is not None:
            iter(fetcher)


    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Write back the earlier CSV rows here, after the restore and before any new row, also
        when a fit resumed from its final checkpoint trains no more."""
        super().on_fit_start(trainer, pl_module)
        self._write_back_log(trainer)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        """The first batch after a resume logs at the step the uninterrupted run's does: a fit
        bounded by steps restarts with Lightning's logging step one ahead of the saved one."""
        steps, self._logged_steps = self._logged_steps, None
        if steps is not None:
            trainer.fit_loop.epoch_loop._batches_that_stepped = int(steps)

    def _write_back_log(self, trainer: L.Trainer) -> None:
        """Lightning's CSV logger deletes ``logs/metrics.csv`` when a fit starts: a resumed fit
        writes back the earlier run's rows logged before its checkpoint (steps below the
        checkpoint's, which include the epoch-end rows logged just after it was saved), as the
        text they had, so the file ends as the uninterrupted run's does."""
        from lightning.pytorch.loggers import CSVLogger

        rows, self._previous_log = self._previous_log, None
        if not rows or self._resumed_step is None:
            return
        for logger in trainer.loggers:
            if isinstance(logger, CSVLogger) and Path(logger.log_dir).resolve() == (
                    Path(trainer.default_root_dir) / CSV_LOG.parent).resolve():
                for row in rows:
                    step = int(row.get("step") or 0)
                    if step < self._resumed_step:
                        values = {k: v for k, v in row.items() if k != "step" and v not in ("", None)}
                        logger.experiment.log_metrics(values, step=step)


def last_checkpoint(folder: str | Path) -> Path | None:
    """``folder/last.ckpt`` written by :class:`ResumeCheckpoint`, or ``None`` when the run had not
    finished a training epoch there (a later stage of a verb that had not started)."""
    path = Path(folder) / LAST_CHECKPOINT
    return path if path.is_file() else None


def resume_checkpoint(folder: str | Path) -> Path:
    """``folder/last.ckpt`` written by :class:`ResumeCheckpoint`; a clear error when absent."""
    path = last_checkpoint(folder)
    if path is None:
        raise FileNotFoundError(f"--resume: no checkpoint {Path(folder) / LAST_CHECKPOINT} to continue "
                                "from (a run saves it at the end of its first training epoch)")
    return path


def resume_from(resume_dir: str | Path | None, resume: bool, *, required: bool = True,
                what: str = "the interrupted run's last.ckpt") -> Path | None:
    """The checkpoint a training function continues from, checked before any work starts.

    ``None`` when ``resume`` is false. With ``resume`` a missing ``resume_dir`` is a
    ``ValueError`` naming ``what`` the folder holds; ``required=True`` then returns
    ``resume_dir/last.ckpt`` or raises :func:`resume_checkpoint`'s ``FileNotFoundError``, while
    ``required=False`` returns ``None`` when the run had not finished an epoch there (a later stage
    of a verb that starts afresh)."""
    if not resume:
        return None
    if resume_dir is None:
        raise ValueError(f"resume=True needs resume_dir, the folder of {what}")
    return resume_checkpoint(resume_dir) if required else last_checkpoint(resume_dir)
