"""Library-level runs, each on the user's own ``UNet2DModel`` and image tensors: train a DDPM,
backdoor it, detect (stage 1), remove (stage 2: prune + dual-loss fine-tune), evaluate.

Image tensors (training and fine-tune images, the clean batch, targets) are ``(N, C, H, W)`` in
model space [-1, 1]; other values (images in [0, 1] or [0, 255]) are a ValueError naming the
argument and the range found (``check_images``), never clamped or rescaled silently."""

from __future__ import annotations

import copy
import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, RandomSampler, TensorDataset

from paperzoo.core.data import read_json
from paperzoo.diffcleanse.attack import PoisonedData
from paperzoo.diffcleanse.data import check_range
from paperzoo.diffcleanse.detect import DetectionResult, Detector
from paperzoo.diffcleanse.inversion import BBTIConfig, BBTIInverter
from paperzoo.diffcleanse.model import unet_shape
from paperzoo.diffcleanse.prune import PruneReport
from paperzoo.diffcleanse.sampling import BlackBoxSampler, sample
from paperzoo.diffcleanse.triggers import check_trigger

__all__ = [
    "TrainResult",
    "RemovalResult",
    "train_diffusion",
    "backdoor_model",
    "detect_backdoor",
    "remove_backdoor",
    "finetune_dual",
    "evaluate_model",
    "check_images",
]


@dataclass
class TrainResult:
    unet: Any
    losses: list[float]
    seconds: float


@dataclass
class RemovalResult:
    unet: Any
    report: PruneReport | None
    losses: list[float]
    seconds: float
    pruned: Any = None  # the pruned model before the fine-tune (``keep_pruned=True`` only)


def check_images(images: torch.Tensor, unet, name: str = "images") -> torch.Tensor:
    """Refuse images not ``(N >= 2, C, H, W)`` of the model's shape or not in [-1, 1]."""
    if images.dim() != 4 or tuple(images.shape[1:]) != unet_shape(unet):
        raise ValueError(
            f"{name} have shape {tuple(images.shape)}, the model needs (N, {', '.join(map(str, unet_shape(unet)))})"
        )
    if len(images) < 2:
        raise ValueError(f"{name}: need at least 2 images, got {len(images)}")
    return check_range(images, -1.0, 1.0, name, "(model space)")


def _check_counts(**counts: int) -> None:
    for name, value in counts.items():
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value}")


def _training_loader(dataset, steps: int, batch_size: int, seed: int, per_pass: bool) -> DataLoader:
    """``steps`` batches of ``batch_size`` rows drawn with replacement by a sampler seeded with ``seed``.

    One epoch holds every step, unless ``per_pass``: then an epoch is one pass over the data set
    (``len(dataset) // batch_size`` steps, at least 1), so that a resume checkpoint (written at
    the end of every epoch) comes every pass, and the epochs run until ``steps`` steps are taken.
    The sampler draws one index at a time from its generator whatever the epoch's size, so the
    batches are the same either way. Starting an epoch's iterator draws a base seed (unused: no
    workers) from the loader's generator; with one epoch that draw came from torch's global
    generator, which dropout uses, so an epoch per pass gets a generator of its own and the
    caller makes the one draw of the single epoch (:func:`_fit`): the numbers stay those of one
    epoch."""
    epoch_steps = steps if not per_pass else max(1, min(steps, len(dataset) // batch_size))
    sampler = RandomSampler(
        dataset,
        replacement=True,
        num_samples=epoch_steps * batch_size,
        generator=torch.Generator().manual_seed(seed),
    )
    if not per_pass:
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=True)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        drop_last=True,
        generator=torch.Generator().manual_seed(seed),
    )


def _fit(
    module,
    dataset,
    steps: int,
    batch_size: int,
    seed: int,
    device: str,
    out_dir,
    clip: float | None,
    devices: int | str = 1,
    num_nodes: int = 1,
    strategy: str = "auto",
    precision: str | None = None,
    resume_dir: str | Path | None = None,
    resume: bool = False,
) -> None:
    """Fit ``module`` for ``steps`` steps on batches drawn from ``dataset``.

    ``resume_dir``: write ``resume_dir/last.ckpt`` at the end of every epoch (one pass over the
    data set, :func:`_training_loader`); ``resume``: continue from it (a fresh fit when it does
    not exist yet)."""
    from paperzoo.core.lightning import make_trainer, resume_from

    checkpoint = resume_from(
        resume_dir, resume, required=False, what="the interrupted fit's last.ckpt"
    )
    # max_steps alone ends the fit (max_epochs=-1: no epoch limit). One process takes exactly one
    # pass over the sampler's steps x batch_size draws (with replacement). Under DDP Lightning
    # replaces a RandomSampler by a DistributedSampler over the dataset (each rank 1/world of the
    # images, without replacement): with max_epochs=1 the fit stopped after one such pass, e.g.
    # 899 digits / 64 = 14 of train's 1500 steps on two ranks, short of the cosine decay's and
    # EMA's step count. Further passes (reshuffled per epoch) run until ``steps`` steps are taken.
    trainer = make_trainer(
        out_dir,
        max_epochs=-1,
        device=device,
        max_steps=steps,
        logger=out_dir is not None,
        gradient_clip_val=clip,
        devices=devices,
        num_nodes=num_nodes,
        strategy=strategy,
        precision=precision,
        # deterministic kernels where they exist; where one does not (some CUDA ops), a warning
        deterministic="warn",
        resume_dir=resume_dir,
    )
    # one process with resume checkpoints: an epoch per pass over the data (under DDP the
    # distributed sampler's epochs already are passes)
    per_pass = resume_dir is not None and trainer.world_size == 1
    loader = _training_loader(dataset, steps, batch_size, seed, per_pass)
    if per_pass:
        # the base-seed draw of the single epoch's iterator (see _training_loader); a resumed fit
        # puts the global generator back to the saved state afterwards
        torch.empty((), dtype=torch.int64).random_()
    trainer.fit(module, loader, ckpt_path=checkpoint, weights_only=True)


def train_diffusion(
    unet,
    images: torch.Tensor,
    steps: int = 2000,
    batch_size: int = 64,
    lr: float = 2e-4,
    trigger: torch.Tensor | None = None,
    target: torch.Tensor | None = None,
    poison_rate: float = 0.0,
    solver: str = "ode",
    seed: int = 0,
    device: str = "cpu",
    out_dir: str | Path | None = None,
    cosine: bool = False,
    resume_dir: str | Path | None = None,
    resume: bool = False,
    **scale: Any,
) -> TrainResult:
    """Train ``unet`` in place with the BadDiffusion loss (``poison_rate = 0``: DDPM).

    ``scale`` (``devices``, ``num_nodes``, ``strategy``, ``precision``) goes to Lightning. Under
    DDP every rank takes ``batch_size`` images per step (a step sees ``world x batch_size``) for
    ``steps`` steps, and ``losses`` holds each step's loss averaged over the ranks.
    ``resume_dir``: save the fit's resume checkpoint ``resume_dir/last.ckpt`` after every pass
    over the images; ``resume``: continue the interrupted fit from it (same arguments: the
    result is the uninterrupted fit's, bit for bit, on the same machine and process count); ``losses`` then holds every step's, the interrupted run's too."""
    from paperzoo.diffcleanse.module import BackdoorModule

    _check_counts(steps=steps, batch_size=batch_size)
    check_images(images, unet)
    if trigger is not None:
        check_trigger(trigger, unet_shape(unet))
    data = PoisonedData(images, trigger, target, poison_rate, seed)
    module = BackdoorModule(unet, solver=solver, lr=lr, total_steps=steps, cosine=cosine, seed=seed)
    start = time.perf_counter()
    unet.train()
    _fit(
        module,
        data,
        steps,
        batch_size,
        seed,
        device,
        out_dir,
        1.0,
        **scale,
        resume_dir=resume_dir,
        resume=resume,
    )
    unet.eval()
    return TrainResult(unet, module.losses, time.perf_counter() - start)


def backdoor_model(
    unet,
    images: torch.Tensor,
    trigger: torch.Tensor,
    target: torch.Tensor,
    poison_rate: float = 0.2,
    solver: str = "ode",
    steps: int = 1000,
    batch_size: int = 64,
    lr: float = 2e-4,
    seed: int = 0,
    device: str = "cpu",
    out_dir=None,
    cosine: bool = False,
    resume_dir: str | Path | None = None,
    resume: bool = False,
    **scale: Any,
) -> TrainResult:
    """Fine-tune a clean model into a backdoored one (spec 1.1; lr 2e-4). ``unet`` is copied;
    ``cosine`` decays the learning rate to 0 over ``steps``; ``resume_dir`` and ``resume`` as in
    :func:`train_diffusion`."""
    if not 0.0 <= poison_rate <= 1.0:
        raise ValueError(f"poison_rate must be in [0, 1], got {poison_rate}")
    return train_diffusion(
        copy.deepcopy(unet),
        images,
        steps,
        batch_size,
        lr,
        trigger,
        target,
        poison_rate,
        solver,
        seed,
        device,
        out_dir,
        cosine,
        resume_dir,
        resume,
        **scale,
    )


def detect_backdoor(
    unet,
    config: BBTIConfig | None = None,
    threshold: float = 0.5,
    n_eval: int = 32,
    kind: str = "ddim",
    scheduler_config: dict | None = None,
    score_initial: bool = False,
) -> DetectionResult:
    """Stage 1 on a black-box sampler of ``unet``: BBTI, then MSCR on fresh noise."""
    config = config or BBTIConfig()
    sampler = BlackBoxSampler(unet, config.sampler_steps, kind, scheduler_config, config.seed)
    return Detector(BBTIInverter(config), threshold, n_eval).detect(sampler, score_initial)


def finetune_dual(
    student,
    teacher,
    images: torch.Tensor,
    steps: int = 200,
    batch_size: int = 64,
    lr: float = 2e-4,
    seed: int = 0,
    device: str = "cpu",
    ema: bool = True,
    out_dir=None,
    distill_weight: float = 1.0,
    resume_dir: str | Path | None = None,
    resume: bool = False,
    **scale: Any,
) -> list[float]:
    """Spec 1.3's fine-tune of ``student`` (in place) on clean ``images`` against the frozen ``teacher``.

    ``distill_weight`` 1 is the spec's dual loss; 0 drops the teacher term (an ablation).
    ``resume_dir``: save the fit's resume checkpoint ``resume_dir/last.ckpt`` after every pass
    over the images; ``resume``: continue the interrupted fit from it (same arguments: the
    result is the uninterrupted fit's, bit for bit, on the same machine and process count); the checkpoint holds the student, the teacher and the EMA, and the
    losses returned are every step's."""
    from paperzoo.diffcleanse.module import DualLossFinetuner

    _check_counts(ft_steps=steps, batch_size=batch_size)
    check_images(images, student, "fine-tune images")
    module = DualLossFinetuner(
        student,
        teacher,
        lr=lr,
        total_steps=steps,
        ema=ema,
        seed=seed,
        distill_weight=distill_weight,
    )
    student.train()
    with warnings.catch_warnings():
        # the frozen teacher is in eval mode on purpose (the student trains); Lightning's
        # "modules in eval mode at the start of training" warning counts the teacher's modules
        warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
        _fit(
            module,
            TensorDataset(images),
            steps,
            batch_size,
            seed,
            device,
            out_dir,
            1.0,
            **scale,
            resume_dir=resume_dir,
            resume=resume,
        )
    student.eval()
    return module.losses


def remove_backdoor(
    unet,
    clean_batch: torch.Tensor,
    ft_images: torch.Tensor,
    pruner=None,
    trigger: torch.Tensor | None = None,
    ft_steps: int = 200,
    batch_size: int = 64,
    lr: float = 2e-4,
    seed: int = 0,
    device: str = "cpu",
    out_dir=None,
    keep_pruned: bool = False,
    resume_dir: str | Path | None = None,
    resume: bool = False,
    **scale: Any,
) -> RemovalResult:
    """Stage 2: prune a copy of ``unet`` with ``pruner`` (None: fine-tune only) using ``trigger``
    (the inverted one), then the dual-loss fine-tune against the original. ``unet`` is unchanged.
    ``keep_pruned`` also returns the pruned model as it was before the fine-tune (``.pruned``).

    ``resume_dir``: the fine-tune's resume checkpoint (:func:`finetune_dual`), and before the
    fine-tune ``resume_dir/removal_inputs.json``: the pruned widths, the pruning report and a
    hash of ``ft_images``. ``resume``: continue the interrupted fine-tune; the pruning is not run
    again (the widths and the report are read back, the weights come from the checkpoint), and
    ``ft_images`` must be the interrupted run's (a ValueError otherwise). ``keep_pruned`` is
    refused then (the weights before the fine-tune are not kept)."""
    from paperzoo.core.lightning import last_checkpoint

    check_images(clean_batch, unet, "clean batch")
    check_images(ft_images, unet, "fine-tune images")
    if trigger is not None:
        check_trigger(trigger, unet_shape(unet), "inverted trigger")
    start = time.perf_counter()
    teacher = copy.deepcopy(unet).eval()
    images_hash = _tensor_hash(ft_images) if resume_dir is not None else None
    record_file = Path(resume_dir) / REMOVAL_INPUTS if resume_dir is not None else None
    if resume and last_checkpoint(resume_dir) is not None and record_file.is_file():
        if keep_pruned:
            raise ValueError(
                "keep_pruned cannot be resumed: the pruned weights before the "
                "fine-tune are not kept (run it without resume)"
            )
        student, report = _pruned_from_record(unet, record_file, images_hash)
    else:
        if pruner is None:
            student, report = copy.deepcopy(unet), None
        else:
            student, report = pruner.prune(unet, clean_batch, trigger)
        if record_file is not None:
            from paperzoo.core.results import atomic_write_text
            from paperzoo.diffcleanse.prune import pruning_plan

            record_file.parent.mkdir(parents=True, exist_ok=True)
            record = {
                "pruning_plan": pruning_plan(student),
                "report": None if report is None else report.to_dict(),
                "fine_tune_images_sha256": images_hash,
            }
            atomic_write_text(record_file, json.dumps(record, indent=1))
    pruned = copy.deepcopy(student).eval() if keep_pruned else None
    losses = finetune_dual(
        student,
        teacher,
        ft_images,
        ft_steps,
        batch_size,
        lr,
        seed,
        device,
        out_dir=out_dir,
        resume_dir=resume_dir,
        resume=resume,
        **scale,
    )
    return RemovalResult(student, report, losses, time.perf_counter() - start, pruned)


REMOVAL_INPUTS = "removal_inputs.json"


def _tensor_hash(tensor: torch.Tensor) -> str:
    """SHA-256 of a tensor's dtype, shape and bytes."""
    import hashlib

    tensor = tensor.detach().cpu().contiguous()
    digest = hashlib.sha256(f"{tensor.dtype} {tuple(tensor.shape)}".encode())
    digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def _pruned_from_record(
    unet, record_file: Path, images_hash: str
) -> tuple[Any, PruneReport | None]:
    """The student of an interrupted removal: a copy of ``unet`` shrunk to the recorded widths
    (its weights are the checkpoint's) and the recorded pruning report; refuses other fine-tune
    images than the interrupted run's."""
    from paperzoo.diffcleanse.prune import apply_pruning_plan

    record = read_json(record_file, "--resume: removal record")
    if record["fine_tune_images_sha256"] != images_hash:
        raise ValueError(
            f"--resume: the fine-tune images differ from those of the interrupted run ({record_file}): "
            "the data changed, or sampling them again did not give the same images; start the "
            "removal again (--overwrite)"
        )
    student = copy.deepcopy(unet)
    apply_pruning_plan(student, record["pruning_plan"], str(record_file))
    saved = record["report"]
    report = (
        None
        if saved is None
        else PruneReport(
            saved["method"],
            saved["ratio"],
            saved["removed"],
            saved["params_before"],
            saved["params_after"],
        )
    )
    return student, report


@dataclass
class Evaluation:
    metrics: dict[str, float]
    triggered: torch.Tensor
    clean: torch.Tensor = field(default_factory=lambda: torch.empty(0))


def evaluate_model(
    unet,
    trigger: torch.Tensor,
    target: torch.Tensor,
    n_trigger: int = 256,
    n_clean: int = 0,
    steps: int = 50,
    kind: str = "ddim",
    classifier=None,
    reference: torch.Tensor | None = None,
    seed: int = 0,
    scheduler_config: dict | None = None,
    thr: float = 1e-2,
) -> Evaluation:
    """ASR with and without the (true) trigger on fixed noise, SSIM/MSE to the target, and (with a
    classifier and reference images) the digits Frechet distance of ``n_clean`` clean samples."""
    from paperzoo.diffcleanse.metrics import asr, fd_digits, mse_to_target, ssim_to_target

    _check_counts(n_trigger=n_trigger, steps=steps)
    shape = unet_shape(unet)
    trigger = check_trigger(trigger, shape)
    target = check_range(
        check_trigger(target, shape, "target"), -1.0, 1.0, "target", "(model space)"
    )
    noise = torch.randn((n_trigger, *shape), generator=torch.Generator().manual_seed(seed + 104729))
    triggered = sample(
        unet,
        init=noise + trigger,
        steps=steps,
        kind=kind,
        scheduler_config=scheduler_config,
        generator=torch.Generator().manual_seed(seed),
    )
    plain = sample(
        unet,
        init=noise,
        steps=steps,
        kind=kind,
        scheduler_config=scheduler_config,
        generator=torch.Generator().manual_seed(seed),
    )
    metrics = {
        "asr": asr(triggered, target, thr),
        "asr_1e3": asr(triggered, target, 1e-3),
        "asr_no_trigger": asr(plain, target, thr),
        "mse_to_target": float(mse_to_target(triggered, target).mean()),
        "ssim_to_target": ssim_to_target(triggered, target),
    }
    clean = torch.empty(0)
    if n_clean > 0:
        clean = sample(
            unet,
            n_clean,
            steps=steps,
            kind=kind,
            scheduler_config=scheduler_config,
            generator=torch.Generator().manual_seed(seed + 1),
        )
        if classifier is not None and reference is not None:
            metrics["fd"] = fd_digits(classifier, clean.clamp(-1, 1), reference)
    return Evaluation(metrics, triggered, clean)
