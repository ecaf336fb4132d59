"""Lightning callbacks of RCO: record the teacher's route, keep each epoch's logged metrics.

:class:`RouteRecorder` writes the folder that :class:`paperzoo.rco.route.TeacherRoute` reads
(paper section 3.1: the checkpoints ``C_1 ... C_n`` of one teacher run).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import lightning as L

from paperzoo.core.checkpoint import save_weights
from paperzoo.rco.data import split_fingerprint
from paperzoo.rco.route import (
    ROUTE_FILE,
    TEST_SPLIT_KEY,
    RouteRecord,
    read_route_records,
    write_route_index,
)


class RouteRecorder(L.Callback):
    """Records the teacher's route: a full checkpoint after every ``every_n_epochs`` epochs
    (and always after the last one, so the route ends at the converged teacher), each with its
    epoch, step and ``val_acc`` (paper section 3.1).

    The LightningModule must hold the teacher as ``.model``; ``.model_name`` /
    ``.model_overrides`` name its preset (``model_name = None`` for a user's own ``nn.Module``,
    whose route is then opened with ``TeacherRoute(path, model_factory=...)``), as
    :class:`paperzoo.rco.module.TeacherModule` does. A folder that already holds a route is
    refused unless ``overwrite``; ``extra`` is stored in ``route.json`` as provenance, with the
    fingerprint of the datamodule's test split added (:func:`paperzoo.rco.data.split_fingerprint`)
    so that a student's test split can be checked against it, and the trainer's ``precision``
    and ``world_size``. Under several processes (DDP) only global rank 0 writes; every rank
    records the same epochs, steps and (synchronised) ``val_acc``. When the run ends, checkpoints of an overwritten earlier route that the
    new ``route.json`` does not list (``epoch_*.safetensors`` past the new run's epochs) are
    removed; they are kept until then, so a run that fails leaves them in place.

    ``resume``: the fit continues an interrupted run from its Lightning checkpoint, whose
    ``RouteRecorder`` state (the records so far, :meth:`state_dict`) must match the route
    already in ``dirpath``; that route is then extended instead of refused.
    """

    def __init__(self, dirpath: str | Path, every_n_epochs: int = 1, overwrite: bool = False,
                 extra: Mapping[str, Any] | None = None, resume: bool = False) -> None:
        super().__init__()
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be >= 1, got {every_n_epochs}")
        self.dirpath = Path(dirpath)
        self.every_n_epochs = int(every_n_epochs)
        self.overwrite = overwrite
        self.resume = resume
        self.extra = dict(extra or {})
        self.records: list[RouteRecord] = []
        self.input_shape: list[int] | None = None
        self._restored = False  # records put back from a checkpoint (load_state_dict)

    @property
    def state_key(self) -> str:
        return "RouteRecorder"

    def state_dict(self) -> dict[str, Any]:
        """The records written so far and the input shape: a resumed run's ``route.json`` lists
        them again, with the same validation accuracies, as the uninterrupted run's does."""
        return {"records": [asdict(record) for record in self.records], "input_shape": self.input_shape}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the records of an interrupted run; its route folder must still list them."""
        records = [RouteRecord(**record) for record in state_dict["records"]]
        on_disk = read_route_records(self.dirpath) if (self.dirpath / ROUTE_FILE).is_file() else []
        # The route is written before the epoch's checkpoint: a run stopped between the two
        # lists one record more than its checkpoint, which the resumed epoch writes again. A run
        # that had recorded nothing yet (every_n_epochs > 1) may find the route it overwrites.
        if records and (on_disk[:len(records)] != records or len(on_disk) > len(records) + 1):
            raise ValueError(f"--resume: the route in {self.dirpath} (epochs "
                             f"{[r.epoch for r in on_disk]}) is not the one the checkpoint recorded "
                             f"(epochs {[r.epoch for r in records]}); it was changed after the run "
                             f"stopped: train the teacher again with --overwrite")
        self.records = records
        self.input_shape = state_dict["input_shape"]
        self._restored = True

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not hasattr(pl_module, "model"):
            raise ValueError("RouteRecorder needs the LightningModule to hold the teacher as .model")
        resuming = self.resume or self._restored
        if (self.dirpath / ROUTE_FILE).exists() and not (self.overwrite or resuming):
            raise FileExistsError(f"{self.dirpath} already holds a route; pass overwrite=True "
                                  f"or choose another folder")
        if TEST_SPLIT_KEY not in self.extra and trainer.datamodule is not None:
            fingerprint = split_fingerprint(trainer.datamodule)
            if fingerprint is not None:  # lets a student's test split be checked against it
                self.extra[TEST_SPLIT_KEY] = fingerprint
        # How the route was trained (``bf16-mixed`` weights differ from ``32-true`` ones; under
        # DDP, ``world_size`` processes shared each global batch), recorded beside the data.
        self.extra["precision"] = str(trainer.precision)
        self.extra["world_size"] = int(trainer.world_size)
        if trainer.is_global_zero:
            self.dirpath.mkdir(parents=True, exist_ok=True)
        if not resuming:
            self.records = []

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if self.input_shape is None:
            inputs = batch[0] if isinstance(batch, list | tuple) else batch
            self.input_shape = [1, *inputs.shape[1:]]

    def _record(self, trainer: L.Trainer, pl_module: L.LightningModule, epoch: int) -> None:
        val_acc = trainer.callback_metrics.get("val_acc")
        record = RouteRecord(epoch=epoch, step=int(trainer.global_step),
                             file=f"epoch_{epoch:04d}.safetensors",
                             val_acc=None if val_acc is None else float(val_acc))
        self.records.append(record)
        if not trainer.is_global_zero:
            return
        save_weights(pl_module.model, self.dirpath / record.file,
                     meta={"epoch": record.epoch, "step": record.step, "val_acc": record.val_acc})
        model = pl_module.model
        write_route_index(self.dirpath, getattr(pl_module, "model_name", None),
                          getattr(pl_module, "model_overrides", {}), self.records, self.input_shape,
                          self.extra, model_class=f"{type(model).__module__}.{type(model).__qualname__}")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        if epoch % self.every_n_epochs == 0 or epoch == trainer.max_epochs:
            self._record(trainer, pl_module, epoch)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = int(trainer.current_epoch)
        if epoch > 0 and (not self.records or self.records[-1].epoch < epoch):
            self._record(trainer, pl_module, epoch)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # at the fit's end, not the training's: a run resumed from its last epoch's checkpoint
        # trains no more (no on_train_end), and still removes what it overwrote
        if trainer.is_global_zero and self.records:
            self._remove_stale_checkpoints()

    def _remove_stale_checkpoints(self) -> None:
        """Deletes ``epoch_*.safetensors`` files (and their ``.json`` sidecars) that the route
        index no longer lists (left by an earlier, longer route that this run overwrote)."""
        listed = {record.file for record in self.records}
        for path in self.dirpath.glob("epoch_*.safetensors"):
            if path.name not in listed:
                path.unlink()
                path.with_name(path.name + ".json").unlink(missing_ok=True)


class EpochHistory(L.Callback):
    """Keeps the logged metrics of every training epoch (after validation) in memory; the rows
    are part of the Lightning checkpoint, so a resumed run's history is the whole run's."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = tuple(names)
        self.rows: list[dict[str, float]] = []

    @property
    def state_key(self) -> str:
        return "EpochHistory"

    def state_dict(self) -> dict[str, Any]:
        return {"rows": [dict(row) for row in self.rows]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = [dict(row) for row in state_dict["rows"]]

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        row = {"epoch": trainer.current_epoch + 1}
        for name in self.names:
            value = trainer.callback_metrics.get(name)
            if value is not None:
                row[name] = float(value)
        self.rows.append(row)
