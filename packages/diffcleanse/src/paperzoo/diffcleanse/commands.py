"""The verbs of ``paperzoo-diffcleanse``: train, backdoor, detect, remove, evaluate, demo, validate.

Each checks its options, calls the pipeline or the validation, and writes ``metrics.json``, PNG
grids and (when it makes one) ``model/`` (a diffusers folder) under ``out``. Heavy modules are
imported inside the functions, so ``--help`` does not import torch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

Preset = Literal["micro", "tiny", "tiny_attn", "ddpm_cifar10", "paper"]
Solver = Literal["ode", "sde"]
Combine = Literal["bd_minus_clean", "sum", "bd_only"]
Calibration = Literal["auto", "none"]
FD_CLASSIFIER_MIN_ACCURACY = 0.97  # spec 2: fd_digits' classifier reaches >= 97 %
CHECKPOINT_DIR = "checkpoints"  # a training verb's resume checkpoint: out/checkpoints/last.ckpt


def _save_tensor(path: Path, tensor, kind: str) -> None:
    from safetensors.torch import save_file

    from paperzoo.core.results import atomic_path

    with atomic_path(path) as tmp:
        save_file(
            {"trigger": tensor.detach().cpu().contiguous()}, str(tmp), metadata={"kind": kind}
        )


TRIGGER_KINDS = ("true", "inverted")


def read_trigger(path: str | Path, oracle: bool = False):
    """A trigger file written by ``backdoor`` (kind ``true``) or ``detect`` (kind ``inverted``);
    the true trigger is refused unless ``oracle`` (spec 6), and a file of another kind (e.g.
    ``backdoor``'s ``target.safetensors``) always. A file without a kind (the user's own) is read."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"trigger file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            kind = (handle.metadata() or {}).get("kind")
            keys = list(handle.keys())
            if keys != ["trigger"]:
                raise ValueError(f"{path}: expected one tensor 'trigger', found {keys}")
            tensor = handle.get_tensor("trigger").float()
    except (OSError, ValueError, RuntimeError) as error:
        if isinstance(error, ValueError) and str(path) in str(error):
            raise
        raise ValueError(f"corrupt or unreadable trigger file {path}: {error}") from error
    if kind is not None and kind not in TRIGGER_KINDS:
        raise ValueError(
            f"{path} holds a tensor of kind {kind!r}, not a trigger (kinds {', '.join(TRIGGER_KINDS)}); "
            "pass trigger_inverted.safetensors from detect"
        )
    if kind == "true" and not oracle:
        raise ValueError(
            f"{path} holds the true trigger; removal uses the inverted one (pass --oracle_trigger true "
            "to run the labelled oracle)"
        )
    return tensor


def _check_ints(**values: int) -> None:
    for name, value in values.items():
        if value < 1:
            raise ValueError(f"--{name} must be >= 1, got {value}")


def train(
    out: Path,
    data: str = "digits",
    preset: Preset = "micro",
    steps: int = 1500,
    batch_size: int = 64,
    lr: float = 2e-3,
    resize: bool = False,
    devices: int = 1,
    num_nodes: int = 1,
    strategy: str = "auto",
    precision: str | None = None,
    resume: bool = False,
    seed: int = 0,
    device: str = "cpu",
) -> dict[str, Any]:
    """Train a clean DDPM (diffusers UNet2DModel) and save it as a diffusers folder under out/model.

    Args:
        data: digits, cifar10:ROOT, folder:DIR, celeba:ROOT or npz:FILE (an images array,
            uint8 in [0, 255], uint16 in [0, 65535] or float in [0, 1]; other values are
            refused, not clamped).
        preset: UNet preset.
        steps: optimiser steps.
        batch_size: images per step on each process (under DDP a step sees devices x num_nodes
            x batch_size images).
        lr: Adam learning rate (cosine decay).
        resize: resize images of another size to the model's (without it they are refused).
        resume: continue the interrupted run in --out from its last checkpoint (same options).
    """
    from paperzoo.core.results import write_results
    from paperzoo.diffcleanse.data import load_images
    from paperzoo.diffcleanse.model import create_model, save_unet, unet_shape
    from paperzoo.diffcleanse.pipeline import train_diffusion

    _check_ints(steps=steps, batch_size=batch_size)
    unet = create_model(preset)
    c, h, _ = unet_shape(unet)
    images = load_images(data, h, c, resize, "--data")
    run = train_diffusion(
        unet,
        images,
        steps,
        batch_size,
        lr,
        seed=seed,
        device=device,
        out_dir=out,
        cosine=True,
        resume_dir=out / CHECKPOINT_DIR,
        resume=resume,
        devices=devices,
        num_nodes=num_nodes,
        strategy=strategy,
        precision=precision,
    )
    save_unet(run.unet.cpu(), out / "model")
    metrics = {
        "first_loss": run.losses[0],
        "last_loss": run.losses[-1],
        "steps": len(run.losses),
        "train_seconds": run.seconds,
        "train_images": len(images),
    }
    write_results(out, metrics, title=f"DDPM training ({preset}, {data})")
    return metrics


def backdoor(
    out: Path,
    model: str,
    data: str = "digits",
    trigger: str = "box",
    target: str = "cat",
    poison_rate: float = 0.2,
    solver: Solver = "ode",
    steps: int = 600,
    batch_size: int = 64,
    lr: float = 5e-4,
    cosine: bool = False,
    resize: bool = False,
    devices: int = 1,
    num_nodes: int = 1,
    strategy: str = "auto",
    precision: str | None = None,
    resume: bool = False,
    seed: int = 0,
    device: str = "cpu",
) -> dict[str, Any]:
    """BadDiffusion-style backdoor: fine-tune a clean model with a poisoned share of each batch.

    Args:
        model: a diffusers folder (pipeline layout or bare UNet).
        data: clean training images (see train).
        trigger: box, stop, glasses or file:PATH.
        target: cat, hat, digit:K or file:PATH.
        poison_rate: share of poisoned training rows, in [0, 1].
        solver: ode (DDIM-type samplers, VillanDiffusion) or sde (ancestral DDPM).
        steps: optimiser steps.
        batch_size: images per step on each process (under DDP a step sees devices x num_nodes
            x batch_size images).
        lr: Adam learning rate.
        cosine: decay the learning rate to 0 over the steps (the validation's attack recipe:
            1,200 steps at 2e-3 with cosine decay, configs/backdoor.yaml).
        resize: resize images of another size to the model's (without it they are refused).
        resume: continue the interrupted run in --out from its last checkpoint (same options).
    """
    from paperzoo.core.results import atomic_write_text, write_results
    from paperzoo.diffcleanse.data import load_images
    from paperzoo.diffcleanse.model import load_unet, on_device, save_unet, unet_shape
    from paperzoo.diffcleanse.pipeline import backdoor_model, evaluate_model
    from paperzoo.diffcleanse.triggers import make_target, make_trigger

    if not 0.0 <= poison_rate <= 1.0:
        raise ValueError(f"--poison_rate must be in [0, 1], got {poison_rate}")
    _check_ints(steps=steps, batch_size=batch_size)
    unet, _ = load_unet(model)
    shape = unet_shape(unet)
    g, y = make_trigger(trigger, shape), make_target(target, shape)
    images = load_images(data, shape[1], shape[0], resize, "--data")
    run = backdoor_model(
        unet,
        images,
        g,
        y,
        poison_rate,
        solver,
        steps,
        batch_size,
        lr,
        seed,
        device,
        out,
        cosine,
        resume_dir=out / CHECKPOINT_DIR,
        resume=resume,
        devices=devices,
        num_nodes=num_nodes,
        strategy=strategy,
        precision=precision,
    )
    save_unet(run.unet.cpu(), out / "model")
    _save_tensor(out / "trigger_true.safetensors", g, "true")
    _save_tensor(out / "target.safetensors", y, "target")
    atomic_write_text(
        out / "attack.json",
        json.dumps(
            {
                "trigger": trigger,
                "target": target,
                "poison_rate": poison_rate,
                "solver": solver,
                "steps": steps,
                "lr": lr,
                "cosine": cosine,
                "source": model,
            },
            indent=1,
        ),
    )
    ev = evaluate_model(
        on_device(run.unet, device),  # Lightning's teardown left it on the CPU
        g,
        y,
        n_trigger=64,
        steps=25,
        kind="ddim" if solver == "ode" else "ddpm",
        seed=seed,
    )
    metrics = {
        "last_loss": run.losses[-1],
        "steps": len(run.losses),
        "train_seconds": run.seconds,
        **ev.metrics,
    }
    write_results(out, metrics, title=f"backdoor {trigger}->{target} p={poison_rate} ({solver})")
    return metrics


def detect(
    out: Path,
    model: str,
    iters: int = 100,
    batch: int = 16,
    sampler_steps: int = 20,
    threshold: float = 0.5,
    n_eval: int = 32,
    lr: float = 0.1,
    calibration: Calibration = "auto",
    calibration_data: str = "digits",
    resize: bool = False,
    seed: int = 0,
    device: str = "cpu",
) -> dict[str, Any]:
    """Stage 1: black-box trigger inversion and the MSCR decision; writes detection.json,
    trigger_inverted.safetensors and a grid of the inverted trigger's samples.

    Args:
        model: a diffusers folder.
        iters: BBTI iterations (paper: 100).
        batch: noises per BBTI iteration (paper: 16).
        sampler_steps: DDIM steps of the black-box sampler (paper: 20).
        threshold: backdoored iff MSCR > threshold (paper: 0.5).
        n_eval: fresh noises for the final MSCR.
        lr: Adam learning rate of the trigger.
        calibration: auto (thresholds from clean images, recorded) or none (paper defaults).
        calibration_data: clean images for auto calibration (see train's data; digits, the
            default, fits 1-channel models only: give an RGB model npz:FILE or folder:DIR of
            its kind of images, or calibration none).
        resize: resize calibration images of another size to the model's (else refused).
    """
    from paperzoo.core.results import atomic_write_text, write_results
    from paperzoo.diffcleanse.data import load_images
    from paperzoo.diffcleanse.inversion import BBTIConfig, calibrate, to_unit
    from paperzoo.diffcleanse.model import load_unet, on_device, unet_shape
    from paperzoo.diffcleanse.pipeline import detect_backdoor
    from paperzoo.diffcleanse.plots import save_inversion_history, save_sample_grids
    from paperzoo.diffcleanse.sampling import sample

    unet, sched_config = load_unet(model)
    on_device(unet, device)
    c, h, _ = unet_shape(unet)
    if calibration == "auto" and calibration_data == "digits" and c != 1:
        raise ValueError(
            f"--calibration_data digits (the default) is 1-channel, the model needs {c} channels: "
            "pass --calibration_data npz:FILE, folder:DIR, cifar10:ROOT or celeba:ROOT (clean "
            "images like the model's), or --calibration none (the paper's fixed thresholds)"
        )
    calib = (
        calibrate(to_unit(load_images(calibration_data, h, c, resize, "--calibration_data")))
        if calibration == "auto"
        else {}
    )
    config = BBTIConfig(
        batch=batch, iters=iters, lr=lr, sampler_steps=sampler_steps, seed=seed, **calib
    )
    result = detect_backdoor(
        unet, config, threshold, n_eval, scheduler_config=sched_config, score_initial=True
    )
    _save_tensor(out / "trigger_inverted.safetensors", result.trigger, "inverted")
    record = {**result.to_dict(), "calibration": calibration, **{k: v for k, v in calib.items()}}
    atomic_write_text(out / "detection.json", json.dumps(record, indent=1))
    noise = __import__("torch").randn(
        (8, c, h, h), generator=__import__("torch").Generator().manual_seed(seed + 3)
    )
    save_sample_grids(
        out / "grid.png",
        {
            "clean noise": sample(unet, init=noise, steps=sampler_steps),
            "inverted trigger": sample(unet, init=noise + result.trigger, steps=sampler_steps),
        },
        title=f"MSCR {result.mscr:.2f} ({'backdoored' if result.flagged else 'clean'})",
    )
    save_inversion_history(out / "history.png", {"model": result.history})
    metrics = {
        "mscr": result.mscr,
        "flagged": int(result.flagged),
        "threshold": threshold,
        "calls": result.calls,
        "unet_evals": result.unet_evals,
        "seconds": result.seconds,
        "initial_mscr": result.initial_mscr,
    }
    write_results(out, metrics, title=f"Diff-Cleanse detection of {model}")
    return metrics


def remove(
    out: Path,
    model: str,
    trigger: str,
    ratio: float = 0.1,
    t_start: int = 900,
    combine: Combine = "bd_minus_clean",
    ft_steps: int = 150,
    ft_data: str = "samples",
    n_ft: int = 512,
    batch_size: int = 64,
    lr: float = 2e-4,
    prune_batch: int = 64,
    oracle_trigger: bool = False,
    resize: bool = False,
    devices: int = 1,
    num_nodes: int = 1,
    strategy: str = "auto",
    precision: str | None = None,
    resume: bool = False,
    seed: int = 0,
    device: str = "cpu",
) -> dict[str, Any]:
    """Stage 2: prune the channels most responsible for the backdoor, then the dual-loss fine-tune
    against the original; saves the pruned diffusers folder under out/model.

    Args:
        model: the suspect diffusers folder.
        trigger: trigger_inverted.safetensors written by detect.
        ratio: share of each group's channels to remove, in (0, 1).
        t_start: first timestep of the importance sum, in [0, T).
        combine: bd_minus_clean, sum (the authors' code) or bd_only.
        ft_steps: fine-tune steps.
        ft_data: samples (the suspect's own samples from clean noise) or a data source (see train).
        n_ft: number of suspect samples with ft_data=samples.
        batch_size: fine-tune batch on each process (under DDP a step sees devices x num_nodes
            x batch_size images).
        lr: fine-tune learning rate.
        prune_batch: clean images for the importance.
        oracle_trigger: allow the true trigger (a labelled oracle run).
        resize: resize ft_data images of another size to the model's (else refused).
        resume: continue the interrupted run in --out from its last checkpoint (same options).
    """
    from paperzoo.core.results import write_results
    from paperzoo.diffcleanse.data import SyntheticData, load_images
    from paperzoo.diffcleanse.model import load_unet, on_device, save_unet, unet_shape
    from paperzoo.diffcleanse.pipeline import remove_backdoor
    from paperzoo.diffcleanse.prune import DiffCleansePruner, check_ratio
    from paperzoo.diffcleanse.triggers import check_trigger

    check_ratio(ratio)
    _check_ints(ft_steps=ft_steps, n_ft=n_ft, batch_size=batch_size)
    if prune_batch < 2:
        raise ValueError(f"--prune_batch must be >= 2, got {prune_batch}")
    pruner = DiffCleansePruner(ratio, t_start, prune_batch, combine, seed=seed)
    tau = read_trigger(trigger, oracle_trigger)
    unet, sched_config = load_unet(model)
    tau = check_trigger(tau, unet_shape(unet), f"trigger {trigger}")  # before the samples
    on_device(unet, device)  # the samples and the pruning importance run there
    c, h, _ = unet_shape(unet)
    images = (
        SyntheticData(unet, n_ft, seed=seed + 2).images
        if ft_data == "samples"
        else load_images(ft_data, h, c, resize, "--ft_data")
    )
    result = remove_backdoor(
        unet,
        images[:prune_batch],
        images,
        pruner,
        tau,
        ft_steps,
        batch_size,
        lr,
        seed,
        device,
        out,
        resume_dir=out / CHECKPOINT_DIR,
        resume=resume,
        devices=devices,
        num_nodes=num_nodes,
        strategy=strategy,
        precision=precision,
    )
    save_unet(result.unet.cpu(), out / "model")
    metrics = {
        "channels_removed": result.report.channels_removed,
        "params_before": result.report.params_before,
        "params_after": result.report.params_after,
        "last_loss": result.losses[-1],
        "steps": len(result.losses),
        "seconds": result.seconds,
        "oracle_trigger": int(oracle_trigger),
    }
    write_results(
        out,
        metrics,
        title=f"Diff-Cleanse removal r={ratio} ({'oracle' if oracle_trigger else 'inverted'} trigger)",
    )
    return metrics


def evaluate(
    out: Path,
    model: str,
    trigger: str = "box",
    target: str = "cat",
    n_trigger: int = 256,
    n_clean: int = 512,
    steps: int = 50,
    sampler: Literal["ddim", "ddpm"] = "ddim",
    classifier_steps: int = 400,
    seed: int = 0,
    device: str = "cpu",
) -> dict[str, Any]:
    """ASR (MSE to the target < 1e-2; 1e-3 too), SSIM/MSE to the target, and the digits FD of clean samples.

    Args:
        model: a diffusers folder.
        trigger: box, stop, glasses, file:PATH (image/npy) or a .safetensors trigger file.
        target: cat, hat, digit:K or file:PATH.
        n_trigger: triggered samples for the ASR.
        n_clean: clean samples for the FD (1-channel models only; 0 skips it).
        steps: sampler steps.
        sampler: ddim (ode backdoors) or ddpm (sde backdoors).
        classifier_steps: training steps of the digits classifier behind the FD (its held-out
            accuracy is recorded; fd_valid is 0 when it is below 0.97, spec 2).
    """
    from paperzoo.core.results import write_results
    from paperzoo.diffcleanse.data import digits_images
    from paperzoo.diffcleanse.metrics import train_digits_classifier
    from paperzoo.diffcleanse.model import load_unet, on_device, unet_shape
    from paperzoo.diffcleanse.pipeline import evaluate_model
    from paperzoo.diffcleanse.plots import save_sample_grids
    from paperzoo.diffcleanse.triggers import check_trigger, make_target, make_trigger

    _check_ints(n_trigger=n_trigger, steps=steps)
    unet, sched_config = load_unet(model)
    on_device(unet, device)  # the samples run there (the FD classifier stays on the CPU)
    shape = unet_shape(unet)
    g = (
        check_trigger(read_trigger(trigger, oracle=True), shape, f"trigger {trigger}")
        if trigger.endswith(".safetensors")
        else make_trigger(trigger, shape)
    )
    y = check_trigger(make_target(target, shape), shape, f"target {target}")
    classifier = reference = None
    accuracy = None
    if n_clean > 0 and shape[0] == 1:
        classifier, accuracy = train_digits_classifier(shape[1], classifier_steps, seed)
        reference = digits_images(shape[1])
    ev = evaluate_model(
        unet, g, y, n_trigger, n_clean, steps, sampler, classifier, reference, seed, sched_config
    )
    if accuracy is not None:
        # the FD's feature extractor must reach the spec's held-out accuracy (spec 2: >= 97 %);
        # below it the FD is computed but flagged
        ev.metrics["classifier_accuracy"] = accuracy
        ev.metrics["fd_valid"] = int(accuracy >= FD_CLASSIFIER_MIN_ACCURACY)
    rows = {"triggered": ev.triggered[:8]}
    if len(ev.clean):
        rows["clean"] = ev.clean[:8]
    save_sample_grids(out / "grid.png", rows, title=f"ASR {ev.metrics['asr']:.2f}")
    write_results(out, ev.metrics, title=f"evaluation of {model}")
    return ev.metrics


def demo(out: Path, steps: int = 250, seed: int = 0, device: str = "cpu") -> dict[str, Any]:
    """End to end in about a minute: a micro DDPM poisoned from scratch on digits (box->cat, p 0.3),
    BBTI detection, Diff-Cleanse removal at r 0.1, ASR before and after, sample grids.

    Args:
        steps: training steps of the poisoned model.
    """
    import torch

    from paperzoo.core.results import write_results
    from paperzoo.diffcleanse.data import digits_images
    from paperzoo.diffcleanse.inversion import BBTIConfig, calibrate, to_unit
    from paperzoo.diffcleanse.model import create_model, on_device, save_unet
    from paperzoo.diffcleanse.pipeline import (
        detect_backdoor,
        evaluate_model,
        remove_backdoor,
        train_diffusion,
    )
    from paperzoo.diffcleanse.plots import save_sample_grids
    from paperzoo.diffcleanse.prune import DiffCleansePruner
    from paperzoo.diffcleanse.sampling import sample
    from paperzoo.diffcleanse.triggers import make_target, make_trigger

    _check_ints(steps=steps)
    images = digits_images(8)
    g, y = make_trigger("box", (1, 8, 8)), make_target("cat", (1, 8, 8))
    # Lightning's teardown leaves a trained model on the CPU: evaluation, BBTI, the fine-tune
    # samples and the pruning importance run on ``device``
    unet = train_diffusion(
        create_model("micro"),
        images,
        steps,
        64,
        2e-3,
        g,
        y,
        0.3,
        seed=seed,
        device=device,
        cosine=True,
    ).unet
    on_device(unet, device)
    before = evaluate_model(unet, g, y, 32, 0, 10, seed=seed)
    calib = calibrate(to_unit(images))
    found = detect_backdoor(
        unet, BBTIConfig(batch=8, iters=10, sampler_steps=10, seed=seed, **calib), n_eval=16
    )
    ft = sample(unet, 64, steps=10, generator=torch.Generator().manual_seed(seed + 2)).clamp(-1, 1)
    removed = remove_backdoor(
        unet,
        ft[:32],
        ft,
        DiffCleansePruner(0.1, batch=32, seed=seed),
        found.trigger,
        30,
        32,
        seed=seed,
        device=device,
    ).unet
    after = evaluate_model(on_device(removed, device), g, y, 32, 0, 10, seed=seed)
    save_unet(removed.cpu(), out / "model")
    save_sample_grids(
        out / "grid.png",
        {
            "triggered": before.triggered[:8],
            "inverted trigger": sample(
                unet,
                init=torch.randn((8, 1, 8, 8), generator=torch.Generator().manual_seed(seed + 3))
                + found.trigger,
                steps=10,
            ),
            "after removal": after.triggered[:8],
        },
        title="micro DDPM, box->cat",
    )
    metrics = {
        "asr_before": before.metrics["asr"],
        "asr_no_trigger": before.metrics["asr_no_trigger"],
        "mscr": found.mscr,
        "flagged": int(found.flagged),
        "asr_after": after.metrics["asr"],
    }
    write_results(out, metrics, title=f"Diff-Cleanse demo (micro, {steps} steps)")
    return metrics


def validate(
    out: Path,
    settings: str | None = None,
    reduced: bool = False,
    reuse: bool = True,
    device: str = "cpu",
) -> dict[str, Any]:
    """The spec's validation: zoo of backdoored and clean models, detection, removal beside the
    baselines at equal budgets, the curve over pruning ratios. Zoo models are cached under
    out/zoo and reused only when their recipe matches.

    Args:
        settings: a YAML file of ValidationConfig fields (see configs/validate_fields.yaml).
        reduced: the spec's reduced test sizes (about a minute).
        reuse: reuse matching zoo models from out/zoo.
    """
    import yaml

    from paperzoo.core.results import write_results
    from paperzoo.diffcleanse.plots import (
        save_inversion_history,
        save_removal_curve,
        save_sample_grids,
    )
    from paperzoo.diffcleanse.validation import ValidationConfig, reduced_config, run_validation

    fields = {}
    if settings:
        path = Path(settings)
        if not path.is_file():
            raise FileNotFoundError(f"validation config not found: {path}")
        fields = yaml.safe_load(path.read_text()) or {}
        known = set(ValidationConfig.__dataclass_fields__)
        if not isinstance(fields, dict) or set(fields) - known:
            unknown = sorted(set(fields) - known) if isinstance(fields, dict) else fields
            raise ValueError(
                f"validation settings {path}: unknown fields {unknown}; valid: {sorted(known)}"
            )
    settings = reduced_config(**fields) if reduced else ValidationConfig(**fields)
    result = run_validation(settings, device, out / "zoo" if reuse else None)
    # the numbers first: a failing figure must not cost them
    write_results(out, result.metrics, result.rows, title="Diff-Cleanse validation")
    save_sample_grids(
        out / "grids.png", result.grids, title="main model (box->cat): samples per condition"
    )
    save_inversion_history(out / "inversion.png", result.histories, title="BBTI per zoo model")
    save_removal_curve(
        out / "removal_curve.png",
        result.curve["ratios"],
        result.curve["asr"],
        result.curve["fd"],
        result.curve["baselines"],
        title="ASR after pruning + fine-tune",
    )
    return {
        k: v for k, v in result.metrics.items() if k.startswith(("asr_", "detect_", "pass_", "fd_"))
    }
