"""Library-level runs shared by the CLI verbs, ``validate`` and the benchmark: train a localiser,
evaluate it (optionally after a perturbation), predict masks, save and load checkpoints.

Everything takes the user's own ``nn.Module`` (RGB in [0, 1] -> mask logits or TriPINet's dict)
and any data loader of ``{image, mask, valid, label, kind}`` batches.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from paperzoo.core.lightning import make_trainer
from paperzoo.tripinet.module import TriPINetModule, as_outputs, score_batch, summarise_scores


@dataclass
class TrainResult:
    """A trained localiser, its training losses and wall time.

    ``losses`` holds one value per optimiser step: under DDP the mean over the processes of
    their batches' losses (every process records the same list). ``world_size`` is the number of
    training processes and ``global_rank`` this process's rank (0: the one that writes results).
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


class _LossHistory:
    def __init__(self) -> None:
        self.losses: list[float] = []


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
    **module_options: Any,
) -> TrainResult:
    """Train ``net`` for ``steps`` optimiser steps with :class:`TriPINetModule` under Lightning.

    Under DDP (``devices``/``num_nodes`` > 1) Lightning gives each process a ``1/world_size``
    share of ``train_loader``'s images, batched by the loader's own batch size: the batch size
    is per process and every optimiser step averages ``world_size`` batches. Raises when a
    process's share makes no complete batch (the loader drops the last incomplete one)."""
    import lightning as L

    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    L.seed_everything(seed, verbose=False)
    module = TriPINetModule(net, steps=steps, lr=lr, **module_options)
    history = _LossHistory()

    class Record(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            loss = outputs["loss"] if isinstance(outputs, dict) else outputs
            # every process takes part: the mean over processes, not rank 0's batch alone
            loss = trainer.strategy.reduce(loss.detach().float(), reduce_op="mean")
            history.losses.append(float(loss))

    trainer = make_trainer(
        out_dir,
        max_epochs=-1,
        device=device,
        logger=out_dir is not None,
        callbacks=[Record()],
        devices=devices,
        num_nodes=num_nodes,
        strategy=strategy,
        precision=precision,
        progress_bar=progress_bar,
        max_steps=steps,
        deterministic="warn",  # a warning, not an error, where a CUDA op has no deterministic kernel
    )
    started = time.perf_counter()
    trainer.fit(module, train_dataloaders=train_loader)
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
        seconds=time.perf_counter() - started,
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
