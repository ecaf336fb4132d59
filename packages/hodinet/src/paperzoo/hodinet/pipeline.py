"""Library-level runs: train a model on any RGB-D data set, score it, predict maps (spec section 2).

Everything a CLI verb does is reachable here on the user's own ``nn.Module`` (any module with
``forward(rgb, depth) -> {"logits", "side"}``) and data (any dataset of ``(rgb, depth, gt, name)``).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from paperzoo.hodinet.data import make_loader
from paperzoo.hodinet.metrics import MaxEMeasure, MaxFMeasure, SODBatch, quantize, sod_metrics

METRIC_NAMES = ("s", "maxf", "maxe", "mae")


@dataclass
class TrainResult:
    """The trained model, one loss per optimiser step (under DDP the mean over the processes),
    the wall time, the steps taken, the number of training processes and this one's rank."""

    model: nn.Module
    losses: list[float]
    seconds: float
    steps: int
    world_size: int = 1
    global_rank: int = 0


@dataclass
class EvalResult:
    """Scores per group (generated kind or test set) and over all images (``"overall"``)."""

    scores: dict[str, dict[str, float]]
    probs: torch.Tensor | None = None
    curves: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    def flat(self, prefix: str) -> dict[str, float]:
        """``{prefix}_{metric}_{group}``, e.g. ``hodinet_s_camo``."""
        return {f"{prefix}_{m}_{g}": v for g, row in self.scores.items() for m, v in row.items()}


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        if value is None or value <= 0:
            raise ValueError(f"{name} must be positive, got {value}")


def train_sod(model: nn.Module, dataset: Dataset, steps: int = 300, batch_size: int = 16,
              lr: float = 2e-3, clip: float = 0.5, depth_dropout: float = 0.0, seed: int = 0,
              device: str = "cpu", milestones: Sequence[int] = (), out_dir: str | Path | None = None,
              devices: int = 1, num_nodes: int = 1, strategy: str = "auto",
              precision: str | None = None, epochs: int = 0, resume_dir: str | Path | None = None,
              resume: bool = False) -> TrainResult:
    """Train ``model`` for ``steps`` Adam steps on ``dataset`` with the hybrid loss (Lightning).

    The data order follows ``seed`` (same seed -> same batches for every model); ``milestones``
    are *steps* at which the learning rate is multiplied by 0.1; ``clip`` is the gradient-norm clip.
    ``epochs`` > 0 trains that many passes over the data instead of ``steps``, the learning rate
    x0.1 after two thirds of them (the paper's 80 of 120 epochs, spec section 1, Training).

    Under DDP (``devices`` x ``num_nodes`` > 1) Lightning gives each process its share of
    ``dataset``, batched by ``batch_size``: the batch is per process, one step averages
    ``world_size`` batches, and an epoch is one pass over the shares (half the steps of one
    process on two). Raises when a process's share makes no batch.

    ``resume_dir``: save ``resume_dir/last.ckpt`` (weights, optimiser, schedule, loop counters,
    random states, the loss history) at the end of every epoch; ``resume=True`` continues the run
    interrupted there, with the same arguments, and gives the uninterrupted run's weights and
    losses bit for bit (same machine and process count). The generator of the data's
    augmentation is saved when ``dataset`` holds it as its ``generator`` attribute
    (:class:`RGBDSODFolder`).
    """
    from paperzoo.core.lightning import make_trainer, resume_from
    from paperzoo.core.runtime import seed_everything
    from paperzoo.hodinet.module import SODModule

    _check_positive(steps=steps, batch_size=batch_size, lr=lr)
    if clip < 0:
        raise ValueError(f"clip must be >= 0, got {clip}")
    if len(dataset) < 1:
        raise ValueError("the training set is empty")
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    checkpoint = resume_from(resume_dir, resume)
    if epochs and milestones:
        raise ValueError("milestones (steps) apply to a run of steps; with epochs the LR drops "
                         "after two thirds of them")
    seed_everything(seed)
    epoch_milestones = (round(epochs * 2 / 3),) if epochs else ()
    module = SODModule(model, lr=lr, depth_dropout=depth_dropout,
                       scheduler="step" if milestones or epochs else "none",
                       milestones=milestones or epoch_milestones)
    loader = make_loader(dataset, batch_size, shuffle=True, seed=seed, drop_last=True)
    if resume_dir is not None and isinstance(getattr(dataset, "generator", None), torch.Generator):
        module.data_generator = dataset.generator  # saved and restored with the module's generators
    # epochs are counted by Lightning, over each process's share of the data; "warn": the
    # bilinear upsampling backward (side outputs, decoder) has no deterministic CUDA kernel, so a
    # strict check would stop a GPU run at its first step (on the CPU the same kernels run)
    trainer = make_trainer(out_dir, max_epochs=epochs or -1, device=device, deterministic="warn",
                           max_steps=-1 if epochs else steps,
                           gradient_clip_val=clip or None, logger=out_dir is not None,
                           devices=devices, num_nodes=num_nodes, strategy=strategy,
                           resume_dir=resume_dir,
                           **({"precision": precision} if precision else {}))
    if milestones:  # the schedule counts steps, not epochs
        module.configure_optimizers = _step_schedule(module, milestones)
    started = time.perf_counter()
    trainer.fit(module, train_dataloaders=loader, ckpt_path=checkpoint, weights_only=True)
    model.eval()
    if trainer.global_step == 0:
        raise ValueError(f"training made no step: each of the {trainer.world_size} training processes "
                         f"got no batch of {batch_size} from its share of the {len(dataset)} images (the "
                         "last incomplete batch is dropped); use more images or a smaller --batch_size")
    seconds = module.seconds_before_resume + time.perf_counter() - started
    return TrainResult(model, module.loss_history, seconds, int(trainer.global_step),
                       world_size=trainer.world_size, global_rank=trainer.global_rank)


def _step_schedule(module, milestones: Sequence[int]) -> Callable:
    def configure():
        optimizer = module.build_optimizer(module.optim_parameters())
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(milestones), gamma=0.1)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
    return configure


@torch.no_grad()
def predict_probs(model: nn.Module, rgb: torch.Tensor, depth: torch.Tensor | None,
                  batch_size: int = 32, device: str = "cpu", allow_nonfinite: bool = False) -> torch.Tensor:
    """Saliency probabilities ``(N, 1, H, W)`` for stacked inputs, in batches, on ``device``.

    Non-finite logits raise, unless ``allow_nonfinite`` (a check that records finiteness, such
    as validate's zero-depth check): then the non-finite maps are returned as they are.
    """
    model.eval().to(device)
    outputs = []
    for start in range(0, rgb.shape[0], batch_size):
        r = rgb[start:start + batch_size].to(device)
        d = None if depth is None else depth[start:start + batch_size].to(device)
        logits = model(r, d)["logits"]
        if not allow_nonfinite and not torch.isfinite(logits).all():
            raise ValueError("the model produced non-finite logits")
        outputs.append(torch.sigmoid(logits).cpu())
    return torch.cat(outputs)


def _scores(collection) -> dict[str, float]:
    return {k: float(v) for k, v in collection.compute().items()}


def evaluate_sod(model: nn.Module, dataset: Dataset, device: str = "cpu", batch_size: int = 32,
                 depth_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 groups: Sequence[str] | None = None, keep_probs: bool = False,
                 allow_nonfinite: bool = False) -> EvalResult:
    """Score ``model`` on an in-memory dataset with ``rgb``, ``depth``, ``gt`` tensors (e.g.
    :class:`SyntheticRGBDScenes`): S, max F, max E and MAE per group and overall.

    ``depth_fn`` replaces the depth tensor at test time (shuffling, zeroing: the causal checks);
    ``groups`` defaults to the dataset's ``kinds``. Non-finite maps raise, unless
    ``allow_nonfinite``: then every score is NaN (``null`` in ``metrics.json``; never a number
    computed from NaN maps), no curves, and ``probs`` holds the maps.
    """
    depth = dataset.depth if depth_fn is None else depth_fn(dataset.depth)
    probs = predict_probs(model, dataset.rgb, depth, batch_size, device, allow_nonfinite=allow_nonfinite)
    groups = list(groups if groups is not None else dataset.kinds)
    if not torch.isfinite(probs).all():
        nan = {m: float("nan") for m in METRIC_NAMES}
        return EvalResult({g: dict(nan) for g in [*dict.fromkeys(groups), "overall"]}, probs, {})
    scores, curves = {}, {}
    # each group is scored once; "overall" accumulates the same batches (their scores are kept)
    overall = sod_metrics()
    for group in dict.fromkeys(groups):
        index = [i for i, g in enumerate(groups) if g == group]
        batch = SODBatch(probs[index], dataset.gt[index])
        collection = sod_metrics()
        collection.update(batch)
        overall.update(batch)
        scores[group], curves[group] = _scores(collection), _curves(collection)
    if not groups:  # nothing to score: every score of the empty set is NaN
        overall.update(probs[:0], dataset.gt[:0])
    scores["overall"], curves["overall"] = _scores(overall), _curves(overall)
    return EvalResult(scores, probs if keep_probs else None, curves)


def _curves(collection) -> dict[str, np.ndarray]:
    return {**{k: v.numpy() for k, v in collection["maxf"].curves().items()},
            **{k: v.numpy() for k, v in collection["maxe"].curves().items()}}


def save_map(prob: torch.Tensor, path: str | Path) -> Path:
    """A probability map ``(1, H, W)`` or ``(H, W)`` as an 8-bit PNG, written atomically."""
    from PIL import Image

    from paperzoo.core.results import atomic_path

    levels = quantize(prob.squeeze()).numpy()
    with atomic_path(path) as tmp:
        Image.fromarray(levels, mode="L").save(tmp, format="PNG")
    return Path(path)


def evaluate_folder(model: nn.Module, folder, device: str = "cpu", batch_size: int = 8,
                    out_dir: str | Path | None = None) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Score ``model`` on an :class:`RGBDSODFolder` at each GT's own resolution; with ``out_dir``
    write ``out_dir/<stem>.png`` maps at GT size. Returns scores and the mean F/E curves."""
    from paperzoo.core.runtime import progress

    collection = sod_metrics()
    loader = make_loader(folder, batch_size, shuffle=False)
    position = 0
    model.eval().to(device)
    for rgb, depth, _, stems in progress(loader, desc=f"test {getattr(folder, 'name', '')}"):
        probs = predict_probs(model, rgb, depth, batch_size, device)
        for prob, stem in zip(probs, stems):
            gt = folder.full_gt(position)
            position += 1
            prob = F.interpolate(prob[None], size=gt.shape[-2:], mode="bilinear", align_corners=False)[0]
            collection.update(prob, gt)
            if out_dir is not None:
                save_map(prob, Path(out_dir) / f"{stem}.png")
    return _scores(collection), _curves(collection)


def predict_map(model: nn.Module, rgb_path: str | Path, depth_path: str | Path,
                invert_depth: bool = False, device: str = "cpu") -> torch.Tensor:
    """The saliency map ``(1, H, W)`` of one RGB-D pair at the RGB image's own size, on the
    pixels as stored (an EXIF orientation tag is not applied; differing tags are warned of)."""
    from paperzoo.core.data import exif_orientation, read_image
    from paperzoo.hodinet.data import normalize_depth, read_depth

    rgb = read_image(rgb_path)
    depth_array = read_depth(depth_path)
    tags = (exif_orientation(rgb_path), exif_orientation(depth_path))
    exif = (f" (EXIF orientations RGB {tags[0]}, depth {tags[1]}; pixels are read as stored)"
            if tags != (1, 1) else "")
    if tuple(depth_array.shape) != tuple(rgb.shape[-2:]):
        raise ValueError(f"RGB {rgb_path} is {rgb.shape[-1]}x{rgb.shape[-2]} but depth {depth_path} "
                         f"is {depth_array.shape[1]}x{depth_array.shape[0]}{exif}")
    if tags[0] != tags[1]:
        warnings.warn(f"RGB {rgb_path} and depth {depth_path} carry different EXIF orientations{exif}: "
                      "check that they align", stacklevel=2)
    depth = normalize_depth(depth_array, invert_depth, str(depth_path))
    size = (model.img_size, model.img_size) if hasattr(model, "img_size") else tuple(rgb.shape[-2:])
    r = F.interpolate(rgb[None], size=size, mode="bilinear", align_corners=False)
    d = F.interpolate(depth[None], size=size, mode="bilinear", align_corners=False)
    prob = predict_probs(model, r, d, 1, device)
    return F.interpolate(prob, size=rgb.shape[-2:], mode="bilinear", align_corners=False)[0]


__all__ = ["TrainResult", "EvalResult", "train_sod", "predict_probs", "evaluate_sod", "evaluate_folder",
           "predict_map", "save_map", "METRIC_NAMES", "MaxFMeasure", "MaxEMeasure"]
