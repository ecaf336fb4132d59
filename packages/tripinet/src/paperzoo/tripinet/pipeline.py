"""Library-level runs shared by the CLI verbs, ``validate`` and the benchmark: train a localiser,
evaluate it (optionally after a perturbation), predict masks, save and load checkpoints.

Everything takes the user's own ``nn.Module`` (RGB in [0, 1] -> mask logits or TriPINet's dict)
and any data loader of ``{image, mask, valid, label, kind}`` batches.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import nn

from paperzoo.core.lightning import make_trainer, resume_from
from paperzoo.tripinet.module import TriPINetModule, as_outputs, score_batch, summarise_scores


@dataclass
class TrainResult:
    """A trained localiser, its training losses and wall time.

    ``losses`` holds one value per optimiser step: under DDP the mean over the processes of
    their batches' losses (every process records the same list). ``seconds``: the wall time of
    training (a resumed run: of its interrupted and resumed parts added up). ``world_size`` is
    the number of training processes and ``global_rank`` this process's rank (0: the one that
    writes results).
    """

    net: nn.Module
    module: TriPINetModule
    seconds: float
    losses: list[float] = field(default_factory=list)
    world_size: int = 1
    global_rank: int = 0


@dataclass
class Evaluation:
    """Summary metrics (``f1``, ``auc``, ``image_auc``, ``f1_<kind>``) and the per-batch scores."""

    metrics: dict[str, float]
    batches: list[dict[str, Any]]


class _LossHistory(L.Callback):
    """The loss of every optimiser step (under DDP the mean over the processes: every process
    takes part) and the training seconds of the parts of the run before this ``fit``.

    Both go into a resume checkpoint (:meth:`state_dict`), so a resumed run reports the whole
    run's losses and the time of its training parts added up."""

    def __init__(self) -> None:
        self.losses: list[float] = []
        self.earlier_seconds = 0.0
        self._started: float | None = None

    @property
    def state_key(self) -> str:
        return "TriPINetLossHistory"

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._started = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        loss = trainer.strategy.reduce(loss.detach().float(), reduce_op="mean")
        self.losses.append(float(loss))

    def state_dict(self) -> dict[str, Any]:
        elapsed = 0.0 if self._started is None else time.perf_counter() - self._started
        return {"losses": list(self.losses), "seconds": self.earlier_seconds + elapsed}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.losses = [float(loss) for loss in state_dict["losses"]]
        self.earlier_seconds = float(state_dict["seconds"])


def _train_loaders(trainer: L.Trainer) -> list[tuple[str, Any]]:
    """The training loader(s) of a running fit, named as the core's checkpoint names them."""
    loaders = trainer.train_dataloader
    if loaders is None:
        return []
    if isinstance(loaders, dict):
        return [(f"train_dataloader[{key}]", loader) for key, loader in sorted(loaders.items())]
    if isinstance(loaders, list | tuple):
        return [(f"train_dataloader[{i}]", loader) for i, loader in enumerate(loaders)]
    return [("train_dataloader[0]", loaders)]


def _dataset_generators(dataset: Any, path: str, depth: int = 4) -> dict[str, torch.Generator]:
    """The ``torch.Generator`` objects a data set holds (an augmentation's, a random crop's),
    each once by its shortest attribute path: its attributes, nested data sets
    (``Subset.dataset``, ``ConcatDataset.datasets``) and lists, tuples and dicts of them."""
    from torch.utils.data import Dataset

    found: dict[str, torch.Generator] = {}
    seen: set[int] = set()
    level = [(path, dataset)]
    for _ in range(depth + 1):  # breadth first: the shortest path names a shared object
        children = []
        for where, value in level:
            if id(value) in seen:
                continue
            seen.add(id(value))
            if isinstance(value, torch.Generator):
                found[where] = value
            elif isinstance(value, dict):
                children += [(f"{where}[{k!r}]", v) for k, v in sorted(value.items(), key=str)]
            elif isinstance(value, list | tuple):
                children += [(f"{where}[{i}]", v) for i, v in enumerate(value)]
            elif isinstance(value, Dataset):
                children += [(f"{where}.{name}", v) for name, v in sorted(vars(value).items())]
        kinds = torch.Generator | Dataset | dict | list | tuple
        level = [(where, value) for where, value in children if isinstance(value, kinds)]
    return found


class _DatasetGenerators(L.Callback):
    """Keeps the random state of the training data sets in the resume checkpoint.

    :class:`~paperzoo.core.lightning.ResumeCheckpoint` saves the generators of a training
    loader and of its samplers, not those of its data set: ``ForgeryDataset``'s flips and
    rotations and ``RecordDataset``'s crops (:mod:`paperzoo.tripinet.data`) draw from the data
    set's own ``generator``. Their states are saved with every checkpoint (each rank's under
    several processes: their shares of the images are augmented differently) and put back when
    the resumed training starts, before its first batch is drawn, so the continuation augments
    as the uninterrupted run did. (With loader workers the workers draw from copies of the data
    set: the saved state is then the unused original's, and the workers' draws follow from their
    seeds, as in the uninterrupted run.)"""

    def __init__(self) -> None:
        self._trainer: L.Trainer | None = None
        self._pending: dict[str, torch.Tensor] | None = None

    @property
    def state_key(self) -> str:
        return "TriPINetDatasetGenerators"

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._trainer = trainer

    def _generators(self) -> dict[str, torch.Generator]:
        found: dict[str, torch.Generator] = {}
        for name, loader in _train_loaders(self._trainer):
            found.update(_dataset_generators(getattr(loader, "dataset", None), f"{name}.dataset"))
        return found

    def state_dict(self) -> dict[str, Any]:
        if self._trainer is None:
            return {}
        states = {path: g.get_state() for path, g in self._generators().items()}
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        if self._trainer.world_size > 1 and distributed:
            gathered: list[Any] = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(gathered, states)
            return {"per_rank": gathered}
        return {"per_rank": [states]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        per_rank = state_dict["per_rank"]
        world_size = self._trainer.world_size if self._trainer is not None else 1
        rank = self._trainer.global_rank if self._trainer is not None else 0
        self._pending = per_rank[rank] if len(per_rank) == world_size else None
        if self._pending is None:
            warnings.warn(
                f"resumed on {world_size} process(es) a run saved by {len(per_rank)}: the data "
                "sets' augmentation generators stay as seeded, so the continuation is not "
                "bit-identical to an uninterrupted run",
                stacklevel=2,
            )

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pending, self._pending = self._pending, None
        if pending is None:
            return
        current = self._generators()
        for path, state in pending.items():
            if path in current:
                current[path].set_state(state)
        missing = sorted(set(pending) - set(current))
        if missing:
            warnings.warn(
                f"resumed without the saved state of the data set generator(s) {missing}: the "
                "training data changed, so the continuation differs from the uninterrupted run",
                stacklevel=2,
            )


def train_localizer(
    net: nn.Module,
    train_loader: Iterable,
    steps: int = 400,
    lr: float = 2e-3,
    device: str = "cpu",
    out_dir: str | Path | None = None,
    seed: int = 0,
    devices: int | str = 1,
    num_nodes: int = 1,
    strategy: str = "auto",
    precision: str | None = None,
    progress_bar: bool | None = None,
    resume_dir: str | Path | None = None,
    resume: bool = False,
    **module_options: Any,
) -> TrainResult:
    """Train ``net`` for ``steps`` optimiser steps with :class:`TriPINetModule` under Lightning.

    Under DDP (``devices``/``num_nodes`` > 1) Lightning gives each process a ``1/world_size``
    share of ``train_loader``'s images, batched by the loader's own batch size: the batch size
    is per process and every optimiser step averages ``world_size`` batches. Raises when a
    process's share makes no complete batch (the loader drops the last incomplete one).

    ``resume_dir``: save ``resume_dir/last.ckpt`` at the end of every epoch (one pass over
    ``train_loader``): weights, optimiser, schedule, loop counters, random states (the core's
    :class:`~paperzoo.core.lightning.ResumeCheckpoint`), the loss history and the training data
    set's augmentation generators. ``resume=True`` continues from that checkpoint (call again
    with the same ``net`` architecture, loader and options): the weights, ``losses`` and the CSV
    log equal those of the run that was never interrupted, bit for bit on the same machine and
    number of processes; ``seconds`` adds up the training parts. Without ``resume_dir`` nothing
    is saved."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    checkpoint = resume_from(resume_dir, resume)
    L.seed_everything(seed, verbose=False)
    module = TriPINetModule(net, steps=steps, lr=lr, **module_options)
    history = _LossHistory()
    callbacks: list[L.Callback] = [history]
    if resume_dir is not None:
        callbacks.append(_DatasetGenerators())
    trainer = make_trainer(
        out_dir,
        max_epochs=-1,
        device=device,
        logger=out_dir is not None,
        callbacks=callbacks,
        resume_dir=resume_dir,
        devices=devices,
        num_nodes=num_nodes,
        strategy=strategy,
        precision=precision,
        progress_bar=progress_bar,
        max_steps=steps,
        deterministic="warn",  # a warning, not an error, where a CUDA op has no deterministic kernel
    )
    started = time.perf_counter()
    trainer.fit(module, train_dataloaders=train_loader, ckpt_path=checkpoint, weights_only=True)
    net.eval()
    if trainer.global_step == 0:
        raise ValueError(
            f"training made no step: the training data gave each of the {trainer.world_size} "
            "training processes no batch (a loader that drops the last incomplete batch gives "
            "none when a process's share of the images is smaller than the batch size); use "
            "more training images or a smaller batch size"
        )
    return TrainResult(
        net=net,
        module=module,
        seconds=history.earlier_seconds + time.perf_counter() - started,
        losses=history.losses,
        world_size=trainer.world_size,
        global_rank=trainer.global_rank,
    )


@torch.no_grad()
def evaluate_localizer(
    net: nn.Module,
    loader: Iterable,
    device: str = "cpu",
    perturbation: str = "none",
    threshold: float = 0.5,
) -> Evaluation:
    """Score ``net`` on ``loader`` (optionally after ``perturbation``: ``jpeg:75``, ``resize:0.5``):
    per-image pixel F1 at ``threshold`` and AUC over tampered images, image AUC, F1 per kind."""
    from paperzoo.tripinet.forgery import parse_perturbation, perturb

    parse_perturbation(perturbation)
    net = net.to(device).eval()
    batches = []
    for batch in loader:
        images = batch["image"]
        if perturbation != "none":
            images = perturb(images, perturbation)
        prob = torch.sigmoid(as_outputs(net(images.to(device)))["mask_logits"]).float().cpu()
        batches.append(
            score_batch(
                prob, batch["mask"], batch["valid"], batch["label"], batch["kind"], threshold
            )
        )
    if not batches:
        raise ValueError("the evaluation loader yielded no batch")
    return Evaluation(summarise_scores(batches), batches)


@torch.no_grad()
def evaluate_scores(
    score_fn, loader: Iterable, perturbation: str = "none", threshold: float = 0.5
) -> Evaluation:
    """Like :func:`evaluate_localizer` for a training-free scorer returning probabilities."""
    from paperzoo.tripinet.forgery import perturb

    batches = []
    for batch in loader:
        images = batch["image"] if perturbation == "none" else perturb(batch["image"], perturbation)
        prob = score_fn(images).float().cpu()
        batches.append(
            score_batch(
                prob, batch["mask"], batch["valid"], batch["label"], batch["kind"], threshold
            )
        )
    return Evaluation(summarise_scores(batches), batches)


@torch.no_grad()
def predict_masks(
    net: nn.Module, images: Sequence[torch.Tensor], device: str = "cpu"
) -> list[torch.Tensor]:
    """Tamper probability maps ``(H, W)`` of RGB images ``(3, H, W)`` in [0, 1] of any size:
    each is zero-padded to a multiple of 32 and the padding cropped off again."""
    from paperzoo.tripinet.data import pad_to_multiple

    net = net.to(device).eval()
    maps = []
    for image in images:
        if image.dim() != 3 or image.shape[0] != 3:
            raise ValueError(f"predict_masks takes RGB images (3, H, W), got {tuple(image.shape)}")
        h, w = image.shape[-2:]
        padded, _, _ = pad_to_multiple(image, torch.zeros(1, h, w))
        logits = as_outputs(net(padded[None].to(device)))["mask_logits"]
        maps.append(torch.sigmoid(logits)[0, 0, :h, :w].float().cpu())
    return maps


def save_localizer(
    net: nn.Module,
    path: str | Path,
    preset: str,
    overrides: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Weights as safetensors with the preset and overrides that rebuild the model.

    ``rgb_weights`` (a pretrained file the RGB encoder started from) is not a rebuild option:
    the checkpoint holds every weight, so it is kept as ``rgb_weights_init`` for the record only
    and loading never reads that file again."""
    from paperzoo.core.checkpoint import save_weights

    overrides = dict(overrides)
    initial = overrides.pop("rgb_weights", None)
    meta = {"preset": preset, "overrides": _jsonable(overrides), **(extra or {})}
    if initial is not None:
        meta["rgb_weights_init"] = str(initial)
    return save_weights(net, path, meta=meta)


def load_localizer(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a TriPINet from a checkpoint written by :func:`save_localizer`."""
    from paperzoo.core.checkpoint import load_weights, read_meta
    from paperzoo.tripinet.model import create_model

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    meta = read_meta(path)
    if "preset" not in meta:
        raise ValueError(
            f"{path} has no sidecar {path.name}.json naming its preset; it was not written by "
            "paperzoo-tripinet train"
        )
    overrides = dict(meta.get("overrides", {}))
    overrides.pop("rgb_weights", None)  # older checkpoints: their own weights replace that file's
    net = create_model(meta["preset"], **overrides)
    load_weights(net, path)
    return net.eval(), meta


def _jsonable(overrides: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in overrides.items()}
