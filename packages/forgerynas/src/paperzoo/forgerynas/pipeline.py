"""Library-level runs (what a Python user calls): search an architecture on any frame data,
derive its genotype, retrain any ``nn.Module`` detector and score it (spec section 2).

Data is any :class:`~paperzoo.forgerynas.data.FrameSet` (``__getitem__ -> (image, label, video)``
with ``labels`` and ``video_ids`` tensors), e.g. ``TensorFrames(images, labels)`` on your arrays.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader

from paperzoo.core.registry import fill_preset
from paperzoo.forgerynas.data import BalancedBatchSampler, FrameSet
from paperzoo.forgerynas.metrics import forgery_scores
from paperzoo.forgerynas.search import SearchConfig
from paperzoo.forgerynas.search_space import Genotype
from paperzoo.forgerynas.supernet import (
    CELL_TYPES,
    OperationImportance,
    Supernet,
    derive_from_arrays,
    derive_genotype,
)

__all__ = [
    "SearchConfig",
    "SearchResult",
    "TrainConfig",
    "TrainResult",
    "EvalResult",
    "TRAIN_PRESETS",
    "TRACE_FORMAT",
    "search_architecture",
    "train_detector",
    "evaluate_detector",
    "predict_probs",
    "save_trace",
    "load_trace",
    "derive_from_trace",
    "retrain_lr",
    "warmup_steps",
]

TRACE_FORMAT = "paperzoo-forgerynas-trace/1"
TRAIN_PRESETS = {
    "tiny": dict(epochs=6, batch_size=32, lr=0.05),
    # evaluation length: reconstructed (the training script is not released)
    "paper": dict(epochs=50, batch_size=24, lr=0.025),
}


@dataclass
class TrainConfig:
    """Retraining recipe: SGD (momentum 0.9, wd 3e-4), cosine, clip 5, class-balanced batches.

    ``recalibrate_bn`` (default on): after the last step, BatchNorm running statistics are
    recomputed as the plain average over one pass of the training frames under the final weights
    (``torch.optim.swa_utils.update_bn``). At the tiny recipe's few hundred steps the running
    averages lag the weights; without this a trained HandCNN scored in-domain AUC 0.78 in eval
    mode and 0.96 after recalibration (seed 1, README "Validation").

    ``flips`` (opt-in, off by default): each training frame is flipped left-right and top-bottom,
    each with probability 1/2 (``data.random_flips``), as the official code's data set can
    (``dataAug``); the flips are drawn from a generator seeded with the run's seed. On five
    failing cells of the validation it changed A-test AUC by -0.07 to +0.29 (README
    "Validation"), no systematic gain, so the validated recipe leaves it off.

    ``lr_warmup_epochs`` (opt-in, 0 by default): the learning rate ramps linearly per step up to
    the cosine schedule over that many epochs (fractions allowed; must be below ``epochs``), then
    follows the unchanged cosine (``retrain_lr``; PC-DARTS' ImageNet retraining warms up the
    same way, per epoch). Probed on failing and passing cells of the validation in the README
    ("Why the retraining is unstable"); the validated recipe leaves it off.

    ``restarts`` (opt-in, 0 by default; not in the paper or DARTS): a retraining whose pooled
    validation AUC after epoch ``restart_check_epoch`` is below ``restart_min_val_auc`` is
    stopped there and started again from the same initial weights with another batch order
    (and flip draws), at most ``restarts`` times; the last attempt always runs to the end and is
    the one returned. The decision reads the validation frames only (spec pitfall 3: select on
    val), never a test set. Measured in the README ("Validation-selected restarts"): on the
    validation's cells most failing runs fail again under other draws, and the epoch-2 bar also
    stops runs that would have passed, so the validated recipe leaves it off.
    """

    preset: str = "tiny"
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    optimizer: str = "sgd"
    weight_decay: float = 3e-4
    momentum: float = 0.9
    clip: float = 5.0
    batches_per_epoch: int = 0
    channels_last: bool = True
    recalibrate_bn: bool = True
    flips: bool = False
    lr_warmup_epochs: float = 0.0
    restarts: int = 0
    restart_check_epoch: int = 2
    restart_min_val_auc: float = 0.75

    def __post_init__(self) -> None:
        fill_preset(self, TRAIN_PRESETS)
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"train option {name} must be a positive integer, got {value!r}")
        if self.batch_size % 2:
            raise ValueError(
                f"train option batch_size must be even (class-balanced batches), got {self.batch_size}"
            )
        if self.lr <= 0:
            raise ValueError(f"train option lr must be positive, got {self.lr}")
        if self.batches_per_epoch < 0:
            raise ValueError(
                f"train option batches_per_epoch must be >= 0, got {self.batches_per_epoch}"
            )
        if self.clip < 0 or self.weight_decay < 0:
            raise ValueError("train options clip and weight_decay must be >= 0")
        if not isinstance(self.flips, bool):
            raise ValueError(f"train option flips must be true or false, got {self.flips!r}")
        warmup_steps(self.lr_warmup_epochs, 1, self.epochs)  # type and range, naming the option
        check_restarts(
            self.restarts, self.restart_check_epoch, self.restart_min_val_auc, self.epochs
        )


def check_restarts(
    restarts: int, check_epoch: int, min_val_auc: float, epochs: int, prefix: str = "train option "
) -> None:
    """Types and ranges of the restart options (``TrainConfig``), errors naming the option."""
    if isinstance(restarts, bool) or not isinstance(restarts, int) or restarts < 0:
        raise ValueError(f"{prefix}restarts must be a non-negative integer, got {restarts!r}")
    if isinstance(check_epoch, bool) or not isinstance(check_epoch, int):
        raise ValueError(f"{prefix}restart_check_epoch must be an integer, got {check_epoch!r}")
    if restarts and not 1 <= check_epoch < epochs:
        raise ValueError(
            f"{prefix}restart_check_epoch must be in [1, epochs = {epochs}) so that a restart "
            f"saves epochs, got {check_epoch}"
        )
    if (
        isinstance(min_val_auc, bool)
        or not isinstance(min_val_auc, int | float)
        or not 0 < min_val_auc < 1
    ):
        raise ValueError(f"{prefix}restart_min_val_auc must be in (0, 1), got {min_val_auc!r}")


@dataclass
class SearchResult:
    genotype: Genotype
    genotype_alpha: Genotype
    trace: dict
    supernet: Supernet
    importance: OperationImportance
    pruned: list[tuple[str, int, str]]
    seconds: float
    weight_losses: list[float] = field(default_factory=list)


@dataclass
class TrainResult:
    model: nn.Module
    losses: list[float]
    val_auc: list[float]
    seconds: float
    drop_path: list[float] = field(default_factory=list)  # probability per epoch (if any)
    lr: list[float] = field(default_factory=list)  # learning rate of every training step
    # every attempt of a retraining with restarts: batch-order seed, validation AUC per epoch,
    # whether it was stopped at the check (the last one is the model returned)
    attempts: list[dict] = field(default_factory=list)
    world_size: int = 1  # training processes (DDP); the losses are means over them
    global_rank: int = 0  # this process's rank (0: the one that writes the results)


@dataclass
class EvalResult:
    scores: dict[str, float]
    probs: torch.Tensor
    labels: torch.Tensor
    video_ids: torch.Tensor


def warmup_steps(
    warmup_epochs: float,
    batches_per_epoch: int,
    epochs: int,
    option: str = "train option lr_warmup_epochs",
) -> int:
    """Steps of the linear warm-up: ``ceil(warmup_epochs * batches_per_epoch)``, 0 for none.

    The warm-up must end before the last epoch starts (``0 <= warmup_epochs < epochs``), so that
    the cosine part of the schedule is used at all; errors name ``option``.
    """
    value = warmup_epochs
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{option} must be a number, got {value!r}")
    if not 0 <= value < epochs:
        raise ValueError(f"{option} must be in [0, epochs = {epochs}), got {value!r}")
    return math.ceil(value * batches_per_epoch)


def retrain_lr(step: int, batches_per_epoch: int, epochs: int, peak: float, warmup: int) -> float:
    """Learning rate of weight step ``step`` (0-based) of the retraining.

    Without warm-up it is the cosine stepped per epoch that the retraining uses (DARTS
    ``train.py``): ``peak / 2 * (1 + cos(pi * epoch / epochs))``. With ``warmup`` steps, the
    first ``warmup`` steps run at that rate times ``(step + 1) / warmup``, a linear ramp to the
    schedule, as PC-DARTS' ImageNet retraining (``train_imagenet.py``) scales its scheduled rate
    by ``(epoch + 1) / 5`` in its first 5 epochs (there only for batches above 256); here the ramp
    is per step, because the tiny recipe has only 4-6 epochs. The cosine itself is unchanged
    (not shifted or restarted by the warm-up).
    """
    epoch = step // batches_per_epoch
    rate = 0.5 * peak * (1 + math.cos(math.pi * epoch / epochs))
    return rate * (step + 1) / warmup if step < warmup else rate


# attempt k of a retraining with restarts draws its batch order and flips from seed + k * this
RESTART_SEED_STRIDE = 1000


def _num_batches(data: FrameSet, batch_size: int, fixed: int) -> int:
    return fixed or max(1, len(data) // batch_size)


def _balanced_loader(data, labels, batch_size, num_batches, seed, groups=None) -> DataLoader:
    sampler = BalancedBatchSampler(labels, batch_size, num_batches, seed, groups)
    return DataLoader(data, batch_sampler=sampler, num_workers=0)


def _image_size(data: FrameSet) -> int:
    image = data[0][0]
    if image.ndim != 3 or image.shape[0] != 3 or image.shape[1] != image.shape[2]:
        raise ValueError(
            f"{getattr(data, 'name', 'data')}: frames must be square (3, S, S), got {tuple(image.shape)}"
        )
    return int(image.shape[-1])


def search_architecture(
    weight_data: FrameSet,
    arch_data: FrameSet | Sequence[FrameSet],
    config: SearchConfig | None = None,
    seed: int = 0,
    device: str = "cpu",
    test_domains: Sequence[str] = (),
    out_dir: str | Path | None = None,
    devices: int = 1,
    num_nodes: int = 1,
    strategy: str = "auto",
    precision: str | None = None,
    resume_dir: str | Path | None = None,
    resume: bool = False,
) -> SearchResult:
    """Search cells on ``weight_data`` (weight steps) and ``arch_data`` (architecture steps and
    P; several sets: round-robin batches). Passing the same set for both is in-dataset search; a
    different forgery domain is cross-dataset search, which must not be a reported test domain.

    ``resume_dir``: save ``resume_dir/last.ckpt`` at the end of every search epoch (the core's
    ``ResumeCheckpoint``: weights, architecture parameters, both optimisers, the schedule, the
    random states, and :class:`module.SearchModule`'s importance, performance window, pruned ops
    and trace); ``resume=True`` continues an interrupted search from it, with the same data,
    config and seed, to the result of the search that was never interrupted."""
    from lightning.pytorch.utilities import CombinedLoader

    from paperzoo.core.lightning import make_trainer, resume_from
    from paperzoo.core.runtime import seed_everything
    from paperzoo.forgerynas.module import SearchModule

    config = config or SearchConfig()
    ckpt_path = resume_from(resume_dir, resume, what="the search's checkpoints")
    arch_sets = list(arch_data) if isinstance(arch_data, list | tuple) else [arch_data]
    if not arch_sets:
        raise ValueError("the search needs at least one architecture data set")
    contaminated = [a.name for a in arch_sets if a.name in set(test_domains)]
    if contaminated:
        raise ValueError(
            f"auxiliary domain(s) {contaminated} are reported test domains: the cross-dataset "
            "search would be contaminated (pitfall 4)"
        )
    for data in (weight_data, *arch_sets):
        size = _image_size(data)
        if size != config.size:
            raise ValueError(
                f"{data.name}: frames are {size}x{size} but the search expects size={config.size}"
            )
    seed_everything(seed)
    supernet = config.build_supernet(seed)
    module = SearchModule(supernet, config)
    n = _num_batches(weight_data, config.batch_size, config.batches_per_epoch)
    weight_loader = _balanced_loader(weight_data, weight_data.labels, config.batch_size, n, seed)
    groups = torch.cat([torch.full((len(a),), i) for i, a in enumerate(arch_sets)])
    labels = torch.cat([a.labels for a in arch_sets])
    arch_loader = _balanced_loader(
        ConcatDataset(arch_sets), labels, config.batch_size, n, seed + 1, groups
    )
    loaders = CombinedLoader({"weight": weight_loader, "arch": arch_loader}, mode="max_size_cycle")
    trainer = make_trainer(
        out_dir,
        max_epochs=config.epochs,
        device=device,
        logger=out_dir is not None,
        devices=devices,
        num_nodes=num_nodes,
        strategy=strategy,
        precision=precision,
        deterministic="warn",
        resume_dir=resume_dir,
    )
    if trainer.world_size > 1:
        raise ValueError(
            f"the search runs in one process, not {trainer.world_size}: its operation importance, "
            "performance window and pruning are one state of the bilevel search (spec section 1, "
            "Importance and pruning) "
            "that DDP would keep per process; drop --devices/--num_nodes (train scales)"
        )
    started = time.perf_counter()
    trainer.fit(module, train_dataloaders=loaders, ckpt_path=ckpt_path, weights_only=True)
    seconds = time.perf_counter() - started
    supernet = module.supernet.cpu()
    trace = {
        "format": TRACE_FORMAT,
        "space": supernet.space,
        "steps": supernet.steps,
        "ops": supernet.op_names,
        "lambda_perf": config.lambda_perf,
        "perf_metric": config.perf_metric,
        "weight_data": weight_data.name,
        "arch_data": [a.name for a in arch_sets],
        "epochs": module.trace,
    }
    return SearchResult(
        derive_genotype(supernet, module.importance, "importance"),
        derive_genotype(supernet, module.importance, "alpha"),
        trace,
        supernet,
        module.importance,
        module.pruned,
        seconds,
        module.weight_losses,
    )


def save_trace(trace: dict, path: str | Path) -> Path:
    from paperzoo.core.results import atomic_write_text

    return atomic_write_text(path, json.dumps(trace) + "\n")


def load_trace(path: str | Path) -> dict:
    from paperzoo.core.data import read_json

    path = Path(path)
    trace = read_json(path, "search trace")
    if not isinstance(trace, dict) or trace.get("format") != TRACE_FORMAT:
        raise ValueError(f"{path}: not a search trace (format tag {TRACE_FORMAT!r} missing)")
    if not trace.get("epochs"):
        raise ValueError(f"{path}: the trace records no epoch")
    return trace


def derive_from_trace(trace: dict, by: str = "importance", epoch: int = -1) -> Genotype:
    """The genotype of a search trace's epoch (default: the last), by importance or alpha."""
    if by not in ("importance", "alpha"):
        raise ValueError(f"--derive_by must be importance or alpha, got {by!r}")
    record = trace["epochs"][epoch]
    scores = {
        k: torch.tensor(record[f"{'importance' if by == 'importance' else 'alpha'}_{k}"])
        for k in CELL_TYPES
    }
    edges = {k: torch.tensor(record[f"edges_{k}"]) for k in CELL_TYPES}
    masks = {k: torch.tensor(record[f"mask_{k}"]).bool() for k in CELL_TYPES}
    return derive_from_arrays(trace["space"], trace["steps"], scores, edges, masks, trace["ops"])


def train_detector(
    model: nn.Module,
    train_data: FrameSet,
    val_data: FrameSet | None = None,
    config: TrainConfig | None = None,
    seed: int = 0,
    device: str = "cpu",
    out_dir: str | Path | None = None,
    devices: int = 1,
    num_nodes: int = 1,
    strategy: str = "auto",
    precision: str | None = None,
    rebuild: Callable[[int], nn.Module] | None = None,
    resume_dir: str | Path | None = None,
    resume: bool = False,
) -> TrainResult:
    """Train any two-logit ``nn.Module`` from scratch with cross-entropy on class-balanced batches.

    Under DDP ``config.batch_size`` is the global batch: each process trains on its balanced
    share of every batch (:class:`data.BalancedBatchSampler`), so the steps per epoch and the
    schedules are one process's; every process scores the whole ``val_data``.

    With ``config.restarts`` (needs ``val_data``), an attempt whose validation AUC after epoch
    ``config.restart_check_epoch`` is below ``config.restart_min_val_auc`` is stopped and the
    model trained again under the batch-order seed ``seed + k * RESTART_SEED_STRIDE`` (attempt
    k): from the same initial weights, or, when ``rebuild`` is given, from the fresh network
    ``rebuild(seed + k * RESTART_SEED_STRIDE)`` (new initial weights drawn by the caller's own
    recipe). ``TrainResult.attempts`` records each attempt, and the model, losses, validation
    AUCs and rates returned are those of the last one.

    ``resume_dir``: save a checkpoint at the end of every epoch (the core's ``ResumeCheckpoint``:
    weights, optimiser, schedule, random states incl. the batch sampler's and the flips', and the
    module's loss, validation, drop-path and learning-rate histories), ``resume_dir/last.ckpt``,
    or with ``config.restarts`` one folder per attempt, ``resume_dir/attempt<k>/last.ckpt``.
    ``resume=True`` continues an interrupted training (same model, data, config and seed) to the
    result of the training that was never interrupted: an attempt the restart rule had stopped is
    taken from its checkpoint, the attempt that was running continues from its own, a later one
    starts as it would have (``rebuild`` must then draw its network from the seed alone)."""
    import copy

    from paperzoo.core.lightning import last_checkpoint, make_trainer, resume_from
    from paperzoo.core.runtime import seed_everything
    from paperzoo.forgerynas.module import TrainModule

    config = config or TrainConfig()
    resume_from(
        _attempt_dir(resume_dir, config.restarts, 0), resume, what="the training's checkpoints"
    )
    if config.restarts and val_data is None:
        raise ValueError(
            "train option restarts needs validation frames (the restart decision reads the "
            "validation AUC); pass val_data or set restarts to 0"
        )
    if val_data is not None:
        present = sorted(torch.unique(torch.as_tensor(val_data.labels)).tolist())
        if present != [0, 1]:
            kinds = {0: "reals", 1: "fakes"}
            held = " and ".join(kinds[c] for c in present) or "no frames"
            raise ValueError(
                f"validation frames {getattr(val_data, 'name', 'frames')!r} hold {held} only: "
                "the validation AUC needs reals and fakes"
            )
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    initial = copy.deepcopy(model.state_dict()) if config.restarts and rebuild is None else None
    n = _num_batches(train_data, config.batch_size, config.batches_per_epoch)
    val_loader = (
        DataLoader(val_data, batch_size=256, shuffle=False) if val_data is not None else None
    )
    attempts: list[dict] = []
    started = time.perf_counter()
    for attempt in range(config.restarts + 1):
        last = attempt == config.restarts
        order_seed = seed + attempt * RESTART_SEED_STRIDE
        checkpoints = _attempt_dir(resume_dir, config.restarts, attempt)
        ckpt_path = last_checkpoint(checkpoints) if resume else None
        if ckpt_path is not None:
            saved = _saved_train_state(ckpt_path)
            if saved["stopped"]:  # the restart rule had stopped this attempt before the break
                attempts.append(
                    {"seed": order_seed, "val_auc": list(saved["val_history"]), "stopped": True}
                )
                continue
        if attempt and rebuild is not None:
            model = rebuild(order_seed)
            if config.channels_last:
                model = model.to(memory_format=torch.channels_last)
        elif attempt:
            model.load_state_dict(initial)
        seed_everything(order_seed)
        module = TrainModule(
            model,
            optimizer=config.optimizer,
            lr=config.lr,
            weight_decay=config.weight_decay,
            momentum=config.momentum,
            scheduler="cosine",
            max_epochs=config.epochs,
            channels_last=config.channels_last,
            flip_seed=order_seed if config.flips else None,
        )
        module.lr_warmup_steps = warmup_steps(config.lr_warmup_epochs, n, config.epochs)
        if not last:
            module.stop_below = (config.restart_check_epoch, config.restart_min_val_auc)
        loader = _balanced_loader(train_data, train_data.labels, config.batch_size, n, order_seed)
        trainer = make_trainer(
            out_dir,
            max_epochs=config.epochs,
            device=device,
            logger=out_dir is not None,
            gradient_clip_val=config.clip or None,
            devices=devices,
            num_nodes=num_nodes,
            strategy=strategy,
            precision=precision,
            deterministic="warn",
            limit_val_batches=1.0 if val_loader is not None else 0,
            # the balanced sampler shares each global batch among the DDP processes itself, and
            # every process scores the whole validation set (the restart rule reads one AUC)
            use_distributed_sampler=False,
            resume_dir=checkpoints,
        )
        trainer.fit(
            module,
            train_dataloaders=loader,
            val_dataloaders=val_loader,
            ckpt_path=ckpt_path,
            weights_only=True,
        )
        attempts.append(
            {"seed": order_seed, "val_auc": list(module.val_history), "stopped": module.stopped}
        )
        if not module.stopped:
            break
    model = module.model.to(memory_format=torch.contiguous_format)
    if config.recalibrate_bn:
        recalibrate_batchnorm(model, train_data, config.batch_size, device)
    return TrainResult(
        model,
        module.losses,
        module.val_history,
        time.perf_counter() - started,
        module.drop_path_history,
        module.lr_history,
        attempts,
        world_size=trainer.world_size,
        global_rank=trainer.global_rank,
    )


def _attempt_dir(resume_dir: str | Path | None, restarts: int, attempt: int) -> Path | None:
    """Checkpoint folder of one retraining attempt: ``resume_dir`` itself without restarts (one
    fit), ``resume_dir/attempt<k>`` with them; ``None`` without ``resume_dir``."""
    if resume_dir is None:
        return None
    return Path(resume_dir) / f"attempt{attempt}" if restarts else Path(resume_dir)


def _saved_train_state(path: Path) -> dict:
    """The :class:`module.TrainModule` state a retraining checkpoint holds (histories, stopped)."""
    from paperzoo.forgerynas.module import TRAIN_STATE

    return torch.load(path, map_location="cpu", weights_only=True)[TRAIN_STATE]


def recalibrate_batchnorm(
    model: nn.Module, data: FrameSet, batch_size: int = 64, device: str = "cpu"
) -> nn.Module:
    """Recompute every BatchNorm's running mean and variance as the average over one pass of
    ``data`` (frames, in order) under the current weights; a model without BatchNorm is returned
    unchanged. The model keeps its train/eval mode.

    ``update_bn`` runs the model in train mode, which would also switch drop-path on: the
    statistics would then describe randomly thinned paths that evaluation never sees. Drop-path
    (any submodule's ``drop_prob``) is therefore set to 0 for the pass and restored after it."""
    from torch.optim.swa_utils import update_bn

    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return model
    dropping = [m for m in model.modules() if isinstance(getattr(m, "drop_prob", None), float)]
    saved = [m.drop_prob for m in dropping]
    loader = DataLoader(data, batch_size=batch_size, shuffle=False)
    try:
        for m in dropping:
            m.drop_prob = 0.0
        update_bn(loader, model.to(device), device=torch.device(device))
    finally:
        for m, prob in zip(dropping, saved, strict=True):
            m.drop_prob = prob
    return model


@torch.no_grad()
def predict_probs(model: nn.Module, data: FrameSet, device: str = "cpu", batch_size: int = 256):
    """Fake probabilities, labels and video ids of every frame (eval mode); a model that does
    not return ``(batch, 2)`` logits is refused (``module.check_two_logits``)."""
    from paperzoo.forgerynas.module import check_two_logits

    model = model.to(device).eval()
    probs, labels, videos = [], [], []
    for images, y, v in DataLoader(data, batch_size=batch_size, shuffle=False):
        images = images.to(device)
        probs.append(check_two_logits(model(images), images).softmax(-1)[:, 1].cpu())
        labels.append(y)
        videos.append(v)
    return torch.cat(probs), torch.cat(labels), torch.cat(videos)


def evaluate_detector(
    model: nn.Module,
    data: FrameSet,
    device: str = "cpu",
    batch_size: int = 256,
    level: str = "frame",
) -> EvalResult:
    """AUC, AP, accuracy and EER pooled over the whole set (frame or video level)."""
    probs, labels, videos = predict_probs(model, data, device, batch_size)
    return EvalResult(forgery_scores(probs, labels, videos, level), probs, labels, videos)


def split_halves(data: FrameSet, seed: int = 0) -> tuple[FrameSet, FrameSet]:
    """Two disjoint halves of a set, split by video (source) id so no source is in both, for
    in-dataset search (weights on one half, architecture on the other)."""
    from torch.utils.data import Subset

    videos = torch.unique(data.video_ids)
    order = videos[torch.randperm(len(videos), generator=torch.Generator().manual_seed(seed))]
    first = torch.isin(data.video_ids, order[: len(order) // 2])
    halves = []
    for pick, tag in ((first, "half1"), (~first, "half2")):
        index = torch.nonzero(pick).flatten()
        subset = Subset(data, index.tolist())
        subset.labels, subset.video_ids = data.labels[index], data.video_ids[index]
        subset.name = f"{data.name}-{tag}"
        halves.append(subset)
    return halves[0], halves[1]


DETECTORS = ("tiny", "paper", "hand_cnn", "timm_resnet10t")


def build_detector(
    model: str = "tiny", genotype: str | Genotype | None = None, **overrides
) -> nn.Module:
    """A detector by preset name; ``genotype`` (name, ``random:SEED``, file or Genotype) for the
    genotype nets (``tiny``, ``paper``)."""
    from paperzoo.forgerynas.model import create_model
    from paperzoo.forgerynas.search_space import resolve_genotype

    if model not in DETECTORS:
        raise ValueError(f"unknown detector {model!r}; choose from {', '.join(DETECTORS)}")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if model in ("tiny", "paper"):
        if genotype is not None:
            overrides["genotype"] = resolve_genotype(genotype)
    elif genotype is not None:
        raise ValueError(f"detector {model!r} takes no genotype")
    return create_model(model, **overrides)


def save_detector(
    model: nn.Module,
    path: str | Path,
    name: str,
    overrides: dict | None = None,
    meta: dict | None = None,
) -> Path:
    """Weights (safetensors) plus a sidecar naming the preset, overrides and genotype, and
    ``meta``: what the training saw (the train verb: ``size``, the frame side, and ``split``,
    what decided its data split: ``train_data`` and ``val_data`` as :func:`data.data_source`
    and ``seed``), which ``evaluate`` checks its options against."""
    from paperzoo.core.checkpoint import save_weights

    meta = {**dict(meta or {}), "model": name, "overrides": dict(overrides or {})}
    genotype = getattr(model, "genotype", None)
    if isinstance(genotype, Genotype):
        meta["genotype"] = genotype.to_dict()
    return save_weights(model, path, meta=meta)


def load_detector(path: str | Path, genotype: str | Genotype | None = None) -> nn.Module:
    """A detector saved by :func:`save_detector`; refuses weights trained for another genotype."""
    from paperzoo.core.checkpoint import load_weights, read_meta
    from paperzoo.forgerynas.search_space import resolve_genotype

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    meta = read_meta(path)
    if "model" not in meta:
        raise ValueError(
            f"{path}: no detector name in its sidecar {path.name}.json (save it with the train verb)"
        )
    saved = (
        Genotype.from_dict(meta["genotype"], source=f"{path}.json") if "genotype" in meta else None
    )
    if genotype is not None:
        wanted = resolve_genotype(genotype)
        if saved is None or wanted != saved:
            raise ValueError(
                f"{path}: the weights were trained for another genotype than {genotype!r}"
            )
    model = build_detector(meta["model"], saved, **meta.get("overrides", {}))
    load_weights(model, path)
    return model.eval()
