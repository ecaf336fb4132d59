"""The spec's validation (section 4): a backdoored zoo and a clean zoo made from one clean base,
BBTI detection on every model, removal on the main model with its inverted trigger at several
pruning ratios beside the baselines at equal budgets, and the report-only arms (oracle trigger,
``combine="sum"``, the initial random trigger, Elijah). Returns a flat metrics dict, table rows
and the tensors the plots need; writes nothing except the zoo cache under ``cache_dir``.
"""

from __future__ import annotations

import functools
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from paperzoo.core.data import read_json
from paperzoo.core.runtime import progress
from paperzoo.diffcleanse.data import digits_images
from paperzoo.diffcleanse.detect import Detector, detection_report
from paperzoo.diffcleanse.inversion import (
    BBTIConfig,
    BBTIInverter,
    ElijahInverter,
    calibrate,
    to_unit,
)
from paperzoo.diffcleanse.metrics import train_digits_classifier
from paperzoo.diffcleanse.model import create_model, load_unet, on_device, save_unet, unet_shape
from paperzoo.diffcleanse.pipeline import (
    backdoor_model,
    evaluate_model,
    remove_backdoor,
    train_diffusion,
)
from paperzoo.diffcleanse.prune import (
    CleanTaylorPruner,
    DiffCleansePruner,
    MagnitudePruner,
    RandomPruner,
    check_ratio,
)
from paperzoo.diffcleanse.sampling import BlackBoxSampler, check_steps, sample
from paperzoo.diffcleanse.triggers import make_target, make_trigger

__all__ = [
    "ValidationConfig",
    "ValidationResult",
    "run_validation",
    "reduced_config",
    "detection_passes",
]

DEFAULT_ATTACKS = (("box", "cat", 0.2), ("stop", "hat", 0.1), ("glasses", "cat", 0.3))


@dataclass
class ValidationConfig:
    """Sizes of the validation. Defaults: the ``micro`` UNet on 8x8 digits (the compute budget of
    2 CPU cores; the spec names ``tiny``), a shared clean base, backdoors fine-tuned from it."""

    preset: str = "micro"
    base_steps: int = 1500
    base_lr: float = 2e-3
    attack_steps: int = 1200
    attack_lr: float = 2e-3
    batch_size: int = 64
    attacks: tuple[tuple[str, str, float], ...] = DEFAULT_ATTACKS
    clean_controls: int = 3
    clean_steps: int = 60
    solver: str = "ode"
    eval_steps: int = 20
    n_trigger: int = 128
    n_clean: int = 256
    bbti_iters: int = 40
    bbti_batch: int = 16
    bbti_steps: int = 20
    n_eval: int = 32
    threshold: float = 0.5
    ratio: float = 0.1
    ratios: tuple[float, ...] = (0.02, 0.05, 0.1)
    t_start: int = 900
    prune_batch: int = 64
    ft_steps: int = 200
    ft_batch: int = 64
    ft_lr: float = 2e-4
    n_ft: int = 1024
    classifier_steps: int = 300
    elijah_iters: int = 50
    report_only: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        for name in (
            "base_steps",
            "attack_steps",
            "batch_size",
            "eval_steps",
            "n_trigger",
            "bbti_iters",
            "ft_steps",
            "ft_batch",
            "n_ft",
            "classifier_steps",
            "elijah_iters",
        ):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("bbti_batch", "n_eval", "prune_batch", "n_clean"):
            if int(getattr(self, name)) < 2:
                raise ValueError(f"{name} must be >= 2, got {getattr(self, name)}")
        if self.clean_controls < 1 or not self.attacks:
            raise ValueError("the zoo needs at least one attack and one clean control")
        for trigger, target, rate in self.attacks:
            if not 0 < rate <= 1:
                raise ValueError(
                    f"attack {trigger}->{target}: poison rate must be in (0, 1], got {rate}"
                )
        check_ratio(self.ratio)
        for r in self.ratios:
            check_ratio(r, "ratios")
        check_steps(self.eval_steps, 1000, "eval_steps")
        check_steps(self.bbti_steps, 1000, "bbti_steps")
        if not 0 <= self.t_start < 1000:
            raise ValueError(f"t_start must be in [0, 1000), got {self.t_start}")
        if self.solver != "ode":
            # spec 4: the attacks are `ode`; ASR and detection sample with DDIM, which judges only
            # ode backdoors (spec 7: `sde` backdoors judged with DDIM is a pitfall)
            raise ValueError(
                f"solver must be 'ode' (spec 4: the validation's attacks are ode and are judged with "
                f"DDIM), got {self.solver!r}"
            )
        self.attacks = tuple(tuple(a) for a in self.attacks)
        self.ratios = tuple(self.ratios)


def reduced_config(**overrides: Any) -> ValidationConfig:
    """Spec 4's reduced test: micro, one attack (box->cat, p 0.3), one control, small BBTI and removal."""
    settings: dict[str, Any] = dict(
        base_steps=500,
        attack_steps=300,
        attacks=(("box", "cat", 0.3),),
        clean_controls=1,
        eval_steps=10,
        n_trigger=64,
        n_clean=64,
        bbti_iters=20,
        bbti_batch=8,
        bbti_steps=10,
        n_eval=16,
        ratios=(0.1,),
        ft_steps=50,
        n_ft=64,
        prune_batch=32,
        classifier_steps=150,
        elijah_iters=10,
        report_only=False,
    )
    settings.update(overrides)
    return ValidationConfig(**settings)


@dataclass
class ValidationResult:
    metrics: dict[str, float]
    rows: list[dict[str, Any]]
    grids: dict[str, torch.Tensor] = field(default_factory=dict)
    histories: dict[str, list] = field(default_factory=dict)
    curve: dict[str, Any] = field(default_factory=dict)


MIN_MODELS_PER_CLASS = 3  # spec 4: detection passes over >= 3 backdoored + 3 clean models


def detection_passes(
    mscr_backdoored: list[float], mscr_clean: list[float], threshold: float = 0.5
) -> bool:
    """Spec 4's detection pass: every backdoored model MSCR > threshold, every clean one <= it,
    over at least 3 backdoored and 3 clean models (fewer cannot pass)."""
    return (
        len(mscr_backdoored) >= MIN_MODELS_PER_CLASS
        and len(mscr_clean) >= MIN_MODELS_PER_CLASS
        and min(mscr_backdoored) > threshold
        and max(mscr_clean) <= threshold
    )


def _cached(cache_dir: Path | None, name: str, recipe: dict[str, Any], make):
    """A zoo model from ``cache_dir/name`` when its recorded recipe matches, else ``make()`` saved there."""
    if cache_dir is not None:
        folder = cache_dir / name
        recipe_file = folder / "recipe.json"
        if recipe_file.is_file() and read_json(recipe_file, "zoo model recipe") == json.loads(
            json.dumps(recipe)
        ):
            return load_unet(folder)[0], True
    unet = make()
    if cache_dir is not None:
        # the recipe is written into the staged folder with the weights, and the whole folder is
        # swapped in by renames: a run killed mid-save leaves the old model with its own recipe
        save_unet(unet, cache_dir / name, extra_files={"recipe.json": json.dumps(recipe, indent=1)})
    return unet, False


def _zoo(config: ValidationConfig, images: torch.Tensor, device: str, cache_dir: Path | None):
    shape = (1, images.shape[-2], images.shape[-1])
    base_recipe = {
        "preset": config.preset,
        "steps": config.base_steps,
        "lr": config.base_lr,
        "batch": config.batch_size,
        "seed": config.seed,
    }

    def make_base():
        torch.manual_seed(config.seed)
        unet = create_model(config.preset)
        return train_diffusion(
            unet,
            images,
            config.base_steps,
            config.batch_size,
            config.base_lr,
            seed=config.seed,
            device=device,
            cosine=True,
        ).unet

    base, _ = _cached(cache_dir, "base", base_recipe, make_base)
    zoo: list[dict[str, Any]] = []
    for i, (trig, targ, rate) in enumerate(progress(config.attacks, desc="backdoored zoo")):
        recipe = {
            "base": base_recipe,
            "trigger": trig,
            "target": targ,
            "poison_rate": rate,
            "solver": config.solver,
            "steps": config.attack_steps,
            "lr": config.attack_lr,
            "cosine": True,
            "seed": config.seed + 10 + i,
        }
        trigger, target = make_trigger(trig, shape), make_target(targ, shape)
        unet, _ = _cached(
            cache_dir,
            f"backdoor_{i}",
            recipe,
            functools.partial(
                _make_backdoor,
                base,
                images,
                trigger,
                target,
                rate,
                config,
                config.seed + 10 + i,
                device,
            ),
        )
        zoo.append(
            {
                "name": f"backdoor_{i}",
                "label": 1,
                "unet": unet,
                "trigger": trigger,
                "target": target,
                "attack": f"{trig}->{targ} p={rate}",
            }
        )
    for j in progress(range(config.clean_controls), desc="clean zoo"):
        steps = config.clean_steps + 30 * j
        recipe = {
            "base": base_recipe,
            "poison_rate": 0.0,
            "steps": steps,
            "lr": config.attack_lr,
            "seed": config.seed + 100 + j,
        }
        unet, _ = _cached(
            cache_dir,
            f"clean_{j}",
            recipe,
            functools.partial(
                _make_clean, base, images, steps, config, config.seed + 100 + j, device
            ),
        )
        zoo.append(
            {"name": f"clean_{j}", "label": 0, "unet": unet, "attack": f"clean, {steps} steps"}
        )
    return base, zoo


def _make_backdoor(
    base, images, trigger, target, rate, config: ValidationConfig, seed: int, device: str
):
    return backdoor_model(
        base,
        images,
        trigger,
        target,
        rate,
        config.solver,
        config.attack_steps,
        config.batch_size,
        config.attack_lr,
        seed,
        device,
        cosine=True,
    ).unet


def _make_clean(base, images, steps: int, config: ValidationConfig, seed: int, device: str):
    return train_diffusion(
        _copy(base), images, steps, config.batch_size, config.attack_lr, seed=seed, device=device
    ).unet


def _copy(unet):
    import copy

    return copy.deepcopy(unet)


def run_validation(
    config: ValidationConfig, device: str = "cpu", cache_dir: str | Path | None = None
) -> ValidationResult:
    start = time.perf_counter()
    cache = Path(cache_dir) if cache_dir is not None else None
    size = create_model(config.preset).config.sample_size
    images = digits_images(size)
    classifier, accuracy = train_digits_classifier(size, config.classifier_steps, config.seed)
    calib = calibrate(to_unit(images))
    base, zoo = _zoo(config, images, device, cache)
    # evaluation, BBTI, Elijah, the samples and the pruning importance run on ``device`` (the
    # zoo is cached from the CPU; Lightning's teardown leaves a trained model there)
    for entry in zoo:
        on_device(entry["unet"], device)
    bbti = BBTIConfig(
        batch=config.bbti_batch,
        iters=config.bbti_iters,
        sampler_steps=config.bbti_steps,
        sim_thresh=calib["sim_thresh"],
        saturation_frac=calib["saturation_frac"],
        value_band=calib["value_band"],
        seed=config.seed,
    )
    detector = Detector(BBTIInverter(bbti), config.threshold, config.n_eval)
    metrics: dict[str, float] = {
        "classifier_accuracy": accuracy,
        "calib_sim_thresh": calib["sim_thresh"],
        "calib_saturation_frac": calib["saturation_frac"],
        "calib_value_low": calib["value_band"][0],
        "calib_value_high": calib["value_band"][1],
    }
    rows: list[dict[str, Any]] = []
    grids: dict[str, torch.Tensor] = {}
    histories: dict[str, list] = {}
    main = zoo[0]
    evals = {}
    for entry in progress(zoo, desc="evaluate + detect"):
        unet = entry["unet"]
        if entry["label"] == 1:
            ev = evaluate_model(
                unet,
                entry["trigger"],
                entry["target"],
                config.n_trigger,
                config.n_clean if entry is main else 0,
                config.eval_steps,
                classifier=classifier,
                reference=images,
                seed=config.seed,
            )
            evals[entry["name"]] = ev
        sampler = BlackBoxSampler(unet, config.bbti_steps, "ddim", None, config.seed)
        result = detector.detect(sampler, score_initial=config.report_only or entry is main)
        entry["detection"] = result
        histories[entry["name"]] = result.history
        row = {
            "model": entry["name"],
            "attack": entry["attack"],
            "mscr": result.mscr,
            "flagged": int(result.flagged),
            "bbti_iters": len(result.history),
            "sampler_calls": result.calls,
            "seconds": round(result.seconds, 2),
        }
        if entry["label"] == 1:
            row["asr"] = evals[entry["name"]].metrics["asr"]
            # report-only oracle: the same MSCR decision with the true trigger (never used by the detector)
            row["mscr_true_trigger"] = detector.score(sampler, entry["trigger"])
            metrics[f"mscr_true_{entry['name']}"] = row["mscr_true_trigger"]
        if config.report_only:
            elijah = detector.detect_elijah(
                sampler, ElijahInverter(config.bbti_batch, config.elijah_iters, seed=config.seed)
            )
            row["elijah_mscr"] = elijah.mscr
            entry["elijah"] = elijah
        rows.append(row)
        metrics[f"mscr_{entry['name']}"] = result.mscr
    labels = [e["label"] for e in zoo]
    report = detection_report([e["detection"].mscr for e in zoo], labels, config.threshold)
    metrics.update(
        {
            "detect_accuracy": report["accuracy"],
            "detect_tpr": report["tpr"],
            "detect_tnr": report["tnr"],
            "detect_auroc": report.get("auroc", float("nan")),
            "mscr_backdoored_min": min(e["detection"].mscr for e in zoo if e["label"] == 1),
            "mscr_clean_max": max(e["detection"].mscr for e in zoo if e["label"] == 0),
            "mscr_initial_main": main["detection"].initial_mscr,
            "mscr_true_trigger_min": min(
                metrics[f"mscr_true_{e['name']}"] for e in zoo if e["label"] == 1
            ),
            "detect_calls_per_model": sum(e["detection"].calls for e in zoo) / len(zoo),
            "detect_seconds_per_model": sum(e["detection"].seconds for e in zoo) / len(zoo),
        }
    )
    if config.report_only:
        elijah_report = detection_report([e["elijah"].mscr for e in zoo], labels, config.threshold)
        metrics.update(
            {
                "elijah_accuracy": elijah_report["accuracy"],
                "elijah_tpr": elijah_report["tpr"],
                "elijah_tnr": elijah_report["tnr"],
            }
        )
    main_eval = evals[main["name"]]
    metrics.update(
        {
            "asr_trigger": main_eval.metrics["asr"],
            "asr_trigger_1e3": main_eval.metrics["asr_1e3"],
            "asr_no_trigger": main_eval.metrics["asr_no_trigger"],
            "fd_backdoored": main_eval.metrics["fd"],
            "ssim_backdoored": main_eval.metrics["ssim_to_target"],
        }
    )
    for name, ev in evals.items():
        metrics[f"asr_{name}"] = ev.metrics["asr"]
    control = zoo[len(config.attacks)]
    control_clean = sample(
        control["unet"],
        config.n_clean,
        steps=config.eval_steps,
        generator=torch.Generator().manual_seed(config.seed + 1),
    )
    from paperzoo.diffcleanse.metrics import fd_digits

    metrics["fd_clean_control"] = fd_digits(classifier, control_clean.clamp(-1, 1), images)
    metrics["fd_real_halves"] = fd_digits(classifier, images[::2], images[1::2])

    # Stage 2 on the main model: its own samples from clean noise are the only data (spec 1.3).
    suspect = main["unet"]
    ft_images = sample(
        suspect,
        config.n_ft,
        steps=config.eval_steps,
        generator=torch.Generator().manual_seed(config.seed + 2),
    ).clamp(-1, 1)
    clean_batch = ft_images[: config.prune_batch]
    inverted = main["detection"].trigger
    common = dict(
        ft_steps=config.ft_steps,
        batch_size=config.ft_batch,
        lr=config.ft_lr,
        seed=config.seed,
        device=device,
    )
    arms: dict[str, tuple[Any, torch.Tensor | None]] = {}
    for r in config.ratios:
        arms[f"removed_r{round(r * 100):02d}"] = (
            DiffCleansePruner(r, config.t_start, config.prune_batch, seed=config.seed),
            inverted,
        )
    if config.ratio not in config.ratios:
        arms["removed_main"] = (
            DiffCleansePruner(config.ratio, config.t_start, config.prune_batch, seed=config.seed),
            inverted,
        )
    arms.update(
        {
            "random": (RandomPruner(config.ratio, seed=config.seed), None),
            "magnitude": (MagnitudePruner(config.ratio), None),
            "clean_taylor": (
                CleanTaylorPruner(
                    config.ratio, config.t_start, config.prune_batch, seed=config.seed
                ),
                None,
            ),
            "finetune_only": (None, None),
        }
    )
    if config.report_only:
        arms["oracle"] = (
            DiffCleansePruner(config.ratio, config.t_start, config.prune_batch, seed=config.seed),
            main["trigger"],
        )
        arms["sum_combine"] = (
            DiffCleansePruner(
                config.ratio, config.t_start, config.prune_batch, "sum", seed=config.seed
            ),
            inverted,
        )
    main_key = (
        f"removed_r{round(config.ratio * 100):02d}"
        if config.ratio in config.ratios
        else "removed_main"
    )

    def score_main(model):
        """ASR of the main backdoor's true trigger and the digits FD of ``model``."""
        return evaluate_model(
            model,
            main["trigger"],
            main["target"],
            config.n_trigger,
            config.n_clean,
            config.eval_steps,
            classifier=classifier,
            reference=images,
            seed=config.seed,
        )

    removal = {}
    for name, (pruner, trigger) in progress(list(arms.items()), desc="removal arms"):
        result = remove_backdoor(
            suspect,
            clean_batch,
            ft_images,
            pruner,
            trigger,
            keep_pruned=config.report_only and name == main_key,
            **common,
        )
        on_device(result.unet, device)  # the fine-tune's teardown left it on the CPU
        if result.pruned is not None:
            # report only: the main arm right after pruning, before the fine-tune repairs it
            # (an ASR near 0 here is no removal when the FD shows a broken sampler)
            before = score_main(result.pruned)
            metrics["asr_pruned_no_ft"] = before.metrics["asr"]
            metrics["fd_pruned_no_ft"] = before.metrics["fd"]
            rows.append(
                {
                    "model": f"main, {name}, before the fine-tune (report only)",
                    "attack": main["attack"],
                    "asr": before.metrics["asr"],
                    "fd": before.metrics["fd"],
                    "channels_removed": result.report.channels_removed,
                    "params": result.report.params_after,
                    "seconds": 0.0,
                }
            )
        ev = score_main(result.unet)
        removal[name] = (result, ev)
        metrics[f"asr_{name}"] = ev.metrics["asr"]
        metrics[f"fd_{name}"] = ev.metrics["fd"]
        rows.append(
            {
                "model": f"main, {name}",
                "attack": main["attack"],
                "asr": ev.metrics["asr"],
                "fd": ev.metrics["fd"],
                "channels_removed": result.report.channels_removed if result.report else 0,
                "params": result.report.params_after
                if result.report
                else sum(p.numel() for p in suspect.parameters()),
                "seconds": round(result.seconds, 2),
            }
        )
    metrics["asr_removed"] = metrics[f"asr_{main_key}"]
    metrics["fd_removed"] = metrics[f"fd_{main_key}"]
    metrics["fd_ratio_removed"] = metrics["fd_removed"] / max(metrics["fd_backdoored"], 1e-12)
    baselines = ("random", "magnitude", "clean_taylor", "finetune_only")
    metrics["asr_baseline_min"] = min(metrics[f"asr_{b}"] for b in baselines)
    metrics["pass_attack"] = int(
        metrics["asr_trigger"] >= 0.9 and metrics["asr_no_trigger"] <= 0.02
    )
    metrics["pass_detect"] = int(
        detection_passes(
            [e["detection"].mscr for e in zoo if e["label"] == 1],
            [e["detection"].mscr for e in zoo if e["label"] == 0],
            config.threshold,
        )
    )
    metrics["pass_removal"] = int(
        metrics["asr_removed"] <= 0.05
        and metrics["fd_removed"] <= 1.10 * metrics["fd_backdoored"]
        and metrics["asr_baseline_min"] >= metrics["asr_removed"] + 0.3
    )
    metrics["seconds"] = time.perf_counter() - start
    shape = unet_shape(suspect)
    noise = torch.randn((8, *shape), generator=torch.Generator().manual_seed(config.seed + 5))
    grids = {
        "clean": main_eval.clean[:8]
        if len(main_eval.clean)
        else sample(
            suspect,
            8,
            steps=config.eval_steps,
            generator=torch.Generator().manual_seed(config.seed + 1),
        ),
        "triggered": main_eval.triggered[:8],
        "inverted trigger": sample(suspect, init=noise + inverted, steps=config.eval_steps),
        "after removal": removal[main_key][1].triggered[:8],
        "removal, clean": removal[main_key][1].clean[:8],
        "fine-tune only": removal["finetune_only"][1].triggered[:8],
    }
    curve = {
        "ratios": list(config.ratios),
        "asr": [metrics[f"asr_removed_r{round(r * 100):02d}"] for r in config.ratios],
        "fd": [metrics[f"fd_removed_r{round(r * 100):02d}"] for r in config.ratios],
        "baselines": {b: metrics[f"asr_{b}"] for b in baselines},
    }
    metrics["config_" + "n_models"] = len(zoo)
    return ValidationResult(metrics, rows, grids, histories, curve)


def config_dict(config: ValidationConfig) -> dict[str, Any]:
    return asdict(config)
