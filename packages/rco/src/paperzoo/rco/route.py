"""The teacher's route (paper section 3.1): the checkpoints ``C_1 ... C_n`` of one teacher run.

A route is a folder of safetensors files (full ``state_dict``, BatchNorm buffers included) plus
``route.json``, which names the teacher preset and lists one record ``(epoch, step, file,
val_acc)`` per checkpoint in training order::

    route/
      route.json
      epoch_0001.safetensors (+ .json sidecar)
      epoch_0002.safetensors
      ...

:class:`RouteRecorder` writes it while the teacher trains (``route.json`` is rewritten atomically
after each checkpoint file is complete, so an interrupted run leaves a valid, shorter route).
:class:`TeacherRoute` reads it lazily: only ``route.json`` at open, a checkpoint when loaded.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import nn

from paperzoo.core.checkpoint import load_state_dict, load_weights, save_weights
from paperzoo.core.results import atomic_write_text
from paperzoo.rco.model import create_model

ROUTE_FILE = "route.json"
ROUTE_FORMAT = "paperzoo-rco-route"
LAYOUT = (f"{ROUTE_FILE} plus epoch_NNNN.safetensors checkpoints, as written by "
          f"`paperzoo-rco train-teacher` (RouteRecorder)")


@dataclass(frozen=True)
class RouteRecord:
    """One checkpoint on the route: the epoch after which it was taken (1-based), the optimiser
    step, the file name inside the route folder and the validation accuracy at that point."""

    epoch: int
    step: int
    file: str
    val_acc: float | None


def write_route_index(dirpath: str | Path, model_name: str, model_overrides: Mapping[str, Any],
                      records: Sequence[RouteRecord], input_shape: Sequence[int] | None,
                      extra: Mapping[str, Any] | None = None) -> Path:
    """Write ``route.json`` atomically (never half a file). ``extra`` holds free-form provenance
    (the data set and seed the teacher was trained on)."""
    payload = {
        "format": ROUTE_FORMAT,
        "version": 1,
        "model": {"name": model_name, "overrides": dict(model_overrides)},
        "input_shape": list(input_shape) if input_shape is not None else None,
        "extra": dict(extra or {}),
        "records": [asdict(record) for record in records],
    }
    return atomic_write_text(Path(dirpath) / ROUTE_FILE, json.dumps(payload, indent=2) + "\n")


class TeacherRoute:
    """An ordered, lazily loaded sequence of teacher checkpoints.

    ``len(route)`` checkpoints, ``route[i]`` the :class:`RouteRecord`, ``route.load(i)`` the
    teacher at that point as an ``nn.Module`` in eval mode with ``requires_grad_(False)``.
    Indices are 0-based positions on the route; ``route.epochs`` maps them to epochs. The last
    checkpoint is *the* teacher for RCO and for the KD baseline alike (spec pitfall 4).

    ``model_factory`` builds the empty teacher; by default the preset named in ``route.json``.
    """

    def __init__(self, dirpath: str | Path,
                 model_factory: Callable[[], nn.Module] | None = None) -> None:
        self.dirpath = Path(dirpath)
        if not self.dirpath.is_dir():
            raise FileNotFoundError(f"route folder {self.dirpath} does not exist; expected {LAYOUT}")
        index = self.dirpath / ROUTE_FILE
        if not index.is_file():
            raise FileNotFoundError(f"route folder {self.dirpath} has no {ROUTE_FILE}; expected {LAYOUT}")
        try:
            payload = json.loads(index.read_text())
            if payload.get("format") != ROUTE_FORMAT:
                raise ValueError(f"format is {payload.get('format')!r}, not {ROUTE_FORMAT!r}")
            self.model_name: str = payload["model"]["name"]
            self.model_overrides: dict[str, Any] = dict(payload["model"]["overrides"])
            self.input_shape: list[int] | None = payload.get("input_shape")
            self.extra: dict[str, Any] = dict(payload.get("extra") or {})
            self.records = [RouteRecord(int(r["epoch"]), int(r["step"]), str(r["file"]),
                                        None if r["val_acc"] is None else float(r["val_acc"]))
                            for r in payload["records"]]
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as error:
            raise ValueError(f"{index} is not a valid route index: {error}") from error
        if not self.records:
            raise ValueError(f"route {self.dirpath} is empty: {ROUTE_FILE} lists no checkpoints")
        epochs = self.epochs
        if any(b <= a for a, b in zip(epochs, epochs[1:])):
            raise ValueError(f"{index}: epochs are not strictly increasing: {epochs}")
        for record in self.records:
            if not (self.dirpath / record.file).is_file():
                raise FileNotFoundError(f"route {self.dirpath}: {ROUTE_FILE} lists {record.file} "
                                        f"(epoch {record.epoch}), which is missing")
        self._model_factory = model_factory

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> RouteRecord:
        return self.records[index]

    def __iter__(self) -> Iterator[RouteRecord]:
        return iter(self.records)

    def __repr__(self) -> str:
        return (f"TeacherRoute({str(self.dirpath)!r}, model={self.model_name!r}, "
                f"checkpoints={len(self)}, epochs={self.epochs[0]}..{self.epochs[-1]})")

    @property
    def epochs(self) -> list[int]:
        return [record.epoch for record in self.records]

    @property
    def val_accs(self) -> list[float | None]:
        return [record.val_acc for record in self.records]

    def index_of_epoch(self, epoch: int) -> int:
        """The route position of the checkpoint taken after ``epoch``."""
        try:
            return self.epochs.index(int(epoch))
        except ValueError:
            raise ValueError(f"epoch {epoch} is not on the route {self.dirpath} "
                             f"(recorded epochs: {self.epochs})") from None

    def _position(self, index: int) -> int:
        if not -len(self) <= index < len(self):
            raise IndexError(f"route index {index} out of range for {len(self)} checkpoints")
        return index % len(self)

    def path(self, index: int) -> Path:
        return self.dirpath / self.records[self._position(index)].file

    def build_model(self) -> nn.Module:
        """A freshly initialised teacher of the route's architecture."""
        if self._model_factory is not None:
            return self._model_factory()
        return create_model(self.model_name, **self.model_overrides)

    def state_dict(self, index: int) -> dict[str, torch.Tensor]:
        """The raw tensors of checkpoint ``index`` (read from disk now)."""
        return load_state_dict(self.path(index))

    def load(self, index: int, device: str | torch.device = "cpu") -> nn.Module:
        """Teacher checkpoint ``index``, in eval mode, frozen, on ``device``.

        A corrupt or mismatched file raises ``ValueError`` naming the file and the first
        mismatching key and shape.
        """
        model = self.build_model()
        load_weights(model, self.path(index))
        model.eval().requires_grad_(False)
        return model.to(device)


class RouteRecorder(L.Callback):
    """Records the teacher's route: a full checkpoint after every ``every_n_epochs`` epochs
    (and always after the last one, so the route ends at the converged teacher), each with its
    epoch, step and ``val_acc`` (paper section 3.1).

    The LightningModule must hold the teacher as ``.model`` and name its preset in
    ``.model_name`` / ``.model_overrides`` (as :class:`paperzoo.rco.module.TeacherModule` does).
    A folder that already holds a route is refused unless ``overwrite``; ``extra`` is stored in
    ``route.json`` as provenance.
    """

    def __init__(self, dirpath: str | Path, every_n_epochs: int = 1, overwrite: bool = False,
                 extra: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be >= 1, got {every_n_epochs}")
        self.dirpath = Path(dirpath)
        self.every_n_epochs = int(every_n_epochs)
        self.overwrite = overwrite
        self.extra = dict(extra or {})
        self.records: list[RouteRecord] = []
        self.input_shape: list[int] | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for attribute in ("model", "model_name", "model_overrides"):
            if not hasattr(pl_module, attribute):
                raise ValueError(f"RouteRecorder needs the LightningModule to define .{attribute}")
        if (self.dirpath / ROUTE_FILE).exists() and not self.overwrite:
            raise FileExistsError(f"{self.dirpath} already holds a route; pass overwrite=True "
                                  f"or choose another folder")
        self.dirpath.mkdir(parents=True, exist_ok=True)
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
        save_weights(pl_module.model, self.dirpath / record.file,
                     meta={"epoch": record.epoch, "step": record.step, "val_acc": record.val_acc})
        self.records.append(record)
        write_route_index(self.dirpath, pl_module.model_name, pl_module.model_overrides,
                          self.records, self.input_shape, self.extra)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        if epoch % self.every_n_epochs == 0 or epoch == trainer.max_epochs:
            self._record(trainer, pl_module, epoch)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = int(trainer.current_epoch)
        if epoch > 0 and (not self.records or self.records[-1].epoch < epoch):
            self._record(trainer, pl_module, epoch)
