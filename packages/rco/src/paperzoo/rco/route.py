"""The teacher's route (paper section 3.1): the checkpoints ``C_1 ... C_n`` of one teacher run.

A route is a folder of safetensors files (full ``state_dict``, BatchNorm buffers included) plus
``route.json``, which names the teacher preset and lists one record ``(epoch, step, file,
val_acc)`` per checkpoint in training order::

    route/
      route.json
      epoch_0001.safetensors (+ .json sidecar)
      epoch_0002.safetensors
      ...

:class:`paperzoo.rco.callbacks.RouteRecorder` writes it while the teacher trains (``route.json``
is rewritten atomically after each checkpoint file is complete, so an interrupted run leaves a
valid, shorter route). :class:`TeacherRoute` checks the whole route when it is opened (the index
and every checkpoint's header) and reads a checkpoint's tensors only when it is loaded. This
module needs no Lightning.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from paperzoo.core.checkpoint import load_state_dict, load_weights
from paperzoo.core.data import read_json
from paperzoo.core.results import atomic_write_text
from paperzoo.rco.model import create_model

ROUTE_FILE = "route.json"
ROUTE_FORMAT = "paperzoo-rco-route"
LAYOUT = (f"{ROUTE_FILE} plus epoch_NNNN.safetensors checkpoints, as written by "
          f"`paperzoo-rco train-teacher` (RouteRecorder)")
TEST_SPLIT_KEY = "test_split"


@dataclass(frozen=True)
class RouteRecord:
    """One checkpoint on the route: the epoch after which it was taken (1-based), the optimiser
    step, the file name inside the route folder and the validation accuracy at that point."""

    epoch: int
    step: int
    file: str
    val_acc: float | None


def write_route_index(dirpath: str | Path, model_name: str | None, model_overrides: Mapping[str, Any],
                      records: Sequence[RouteRecord], input_shape: Sequence[int] | None,
                      extra: Mapping[str, Any] | None = None, model_class: str | None = None) -> Path:
    """Write ``route.json`` atomically (never half a file). ``model_name`` is the teacher's preset
    (``None`` for a user's own ``nn.Module``, named by ``model_class``); ``extra`` holds free-form
    provenance (the data set, the seed, the fingerprint of the test split)."""
    payload = {
        "format": ROUTE_FORMAT,
        "version": 1,
        "model": {"name": model_name, "overrides": dict(model_overrides), "class": model_class},
        "input_shape": list(input_shape) if input_shape is not None else None,
        "extra": dict(extra or {}),
        "records": [asdict(record) for record in records],
    }
    return atomic_write_text(Path(dirpath) / ROUTE_FILE, json.dumps(payload, indent=2) + "\n")


def _record(entry: Mapping[str, Any]) -> RouteRecord:
    return RouteRecord(int(entry["epoch"]), int(entry["step"]), str(entry["file"]),
                       None if entry["val_acc"] is None else float(entry["val_acc"]))


def read_route_records(dirpath: str | Path) -> list[RouteRecord]:
    """The records ``route.json`` in ``dirpath`` lists, without opening the checkpoints (a route
    still being written, or one of a user's own model, which :class:`TeacherRoute` needs a
    factory for)."""
    index = Path(dirpath) / ROUTE_FILE
    payload = read_json(index, "route index")
    try:
        return [_record(r) for r in payload["records"]]
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{index} is not a valid route index: {error}") from error


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
        payload = read_json(index, "route index")
        try:
            if not isinstance(payload, dict):
                raise ValueError(f"it holds a JSON {type(payload).__name__}, not an object")
            if payload.get("format") != ROUTE_FORMAT:
                raise ValueError(f"format is {payload.get('format')!r}, not {ROUTE_FORMAT!r}")
            self.model_name: str | None = payload["model"]["name"]
            self.model_class: str | None = payload["model"].get("class")
            self.model_overrides: dict[str, Any] = dict(payload["model"]["overrides"])
            self.input_shape: list[int] | None = payload.get("input_shape")
            self.extra: dict[str, Any] = dict(payload.get("extra") or {})
            self.records = [_record(r) for r in payload["records"]]
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise ValueError(f"{index} is not a valid route index: {error}") from error
        if not self.records:
            raise ValueError(f"route {self.dirpath} is empty: {ROUTE_FILE} lists no checkpoints")
        epochs = self.epochs
        if any(b <= a for a, b in zip(epochs, epochs[1:])):
            raise ValueError(f"{index}: epochs are not strictly increasing: {epochs}")
        if self.model_name is None and model_factory is None:
            raise ValueError(f"route {self.dirpath} was recorded from a custom model "
                             f"({self.model_class or 'not a preset'}); open it with "
                             f"TeacherRoute(path, model_factory=...) that builds that model")
        self._model_factory = model_factory
        self._check_checkpoints()

    def _check_checkpoints(self) -> None:
        """Read every checkpoint's header now (not its tensors), so that a missing, corrupt or
        inconsistent intermediate checkpoint is reported before any training, by file name."""
        keys: set[str] | None = None
        for record in self.records:
            path = self.dirpath / record.file
            if not path.is_file():
                raise FileNotFoundError(f"route {self.dirpath}: {ROUTE_FILE} lists {record.file} "
                                        f"(epoch {record.epoch}), which is missing")
            try:
                with safe_open(path, framework="pt") as checkpoint:
                    found = set(checkpoint.keys())
            except (SafetensorError, OSError, ValueError) as error:
                raise ValueError(f"route {self.dirpath}: checkpoint {record.file} (epoch "
                                 f"{record.epoch}) is corrupt or not a safetensors file: {error}") from error
            if keys is None:
                keys = found
            elif found != keys:
                odd = sorted(found ^ keys)[:3]
                raise ValueError(f"route {self.dirpath}: checkpoint {record.file} (epoch "
                                 f"{record.epoch}) holds other tensors than {self.records[0].file} "
                                 f"(first differences: {odd})")

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

    def check_test_split(self, fingerprint: str | None) -> None:
        """Refuse a student whose test split differs from the teacher's (spec section 4: never
        select or report on data the teacher trained on).

        ``fingerprint`` is :func:`paperzoo.rco.data.split_fingerprint` of the student's data. A
        different test split means the teacher's training split may hold student test samples.
        Routes that recorded no fingerprint cannot be checked and pass with a warning.
        """
        recorded = self.extra.get(TEST_SPLIT_KEY)
        if recorded is None or fingerprint is None:
            warnings.warn(f"route {self.dirpath} and the student's data cannot be compared (no "
                          f"test-split fingerprint); make sure the teacher never trained on the "
                          f"student's test split", stacklevel=2)
            return
        if recorded != fingerprint:
            trained_on = {k: v for k, v in self.extra.items() if k in ("data", "seed", "root")}
            raise ValueError(f"the student's test split differs from the one the teacher on route "
                             f"{self.dirpath} was trained beside ({trained_on or 'unknown data'}): "
                             f"the teacher's training split could reach the student's test split. "
                             f"Distil on the same data with the same split seed")

    def state_dict(self, index: int) -> dict[str, torch.Tensor]:
        """The raw tensors of checkpoint ``index`` (read from disk now)."""
        return load_state_dict(self.path(index))

    def load(self, index: int, device: str | torch.device = "cpu") -> nn.Module:
        """Teacher checkpoint ``index``, in eval mode, frozen, on ``device``.

        A corrupt or mismatched file, or one with NaN or infinite weights, raises ``ValueError``
        naming the file (and the first mismatching key and shape).
        """
        model = self.build_model()
        load_weights(model, self.path(index))
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                raise ValueError(f"route {self.dirpath}: checkpoint {self.path(index).name} holds "
                                 f"non-finite values (NaN or inf) in {name}")
        model.eval().requires_grad_(False)
        return model.to(device)
