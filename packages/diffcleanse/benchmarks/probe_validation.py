"""Probes behind the README's validation notes: why BBTI misses the micro backdoors and why the
fine-tune raises the digits FD. Runs on a validation zoo folder (``OUT/zoo`` of ``validate``) and
prints one JSON record per run (also appended to ``--out``).

    uv run python packages/diffcleanse/benchmarks/probe_validation.py bbti --zoo runs/validate/zoo \
        --models backdoor_0 clean_0 --iters 100 --batch 32
    uv run python packages/diffcleanse/benchmarks/probe_validation.py autograd --zoo ZOO --iters 40
    uv run python packages/diffcleanse/benchmarks/probe_validation.py code-pattern --zoo ZOO
    uv run python packages/diffcleanse/benchmarks/probe_validation.py finetune --zoo ZOO --lr 2e-5
    uv run python packages/diffcleanse/benchmarks/probe_validation.py zoo --zoo runs/tiny/zoo \
        --settings packages/diffcleanse/configs/validate_tiny_fields.yaml --attacks 1 --controls 1
    uv run python packages/diffcleanse/benchmarks/probe_validation.py attack --zoo ZOO --eval_steps 50
    uv run python packages/diffcleanse/benchmarks/probe_validation.py robustness --zoo ZOO
    uv run python packages/diffcleanse/benchmarks/probe_validation.py code-shift --zoo ZOO

``bbti``: the detector as ``validate`` runs it (auto thresholds; ``--band raw`` for the spec's raw
(0.05, 0.95); ``--cluster pairs`` the authors' similar set; ``--seed`` another start and noises),
with the per-iteration size of the similar set. ``autograd``: the same with the
true gradient through the 20-step DDIM sampler (white-box, the spec's flagged
``jacobian="autograd_ddim"``; a diagnostic only). ``code-pattern``: the MSCR of the pattern the
authors' code samples with (its update never reaches it: ``1 - 2 n``, n ~ N(0, I)) and of the
N(0, I) start. ``zoo``: builds (or finds cached) the first ``--attacks`` backdoors and ``--controls`` clean
controls of a validation settings file with ``validate``'s own zoo code and recipes, so that
``validate --settings`` with the same file reuses them. ``attack``: ASR with and without the true trigger on 256 fixed noises (``--eval_steps`` DDIM
steps) and the MSCR of the true trigger on the detector's 32 fresh noises (evaluation only).
``robustness``: the MSCR of the true trigger plus Gaussian noise of std 0.25 / 0.5 / 1.0 (three
seeds each) and scaled by 0.5 / 0.75 / 1.5 / 3, how wide the backdoor's basin is around its
trigger. ``finetune``: the fine-tune only arm of the validation (no pruning) with another
learning rate, EMA switch or number of suspect samples; FD on 256 clean samples, ASR with the true
trigger (evaluation only). ``code-shift``: a backdoor trained from the zoo's base with the recipe
of ``--models`` but the BadDiffusion code's shift (the clean training image with the trigger pasted
on its mask, sampled with the trigger image at -1 off its mask), then its ASR, true-trigger MSCR and
BBTI MSCR. ``prune-ft``: stage 2 taken apart (pruned, then fine-tuned with the dual loss and
with the noise term alone, beside the fine-tune only arm), to see whether the pruning removes the
backdoor and whether the teacher term brings it back. ``norm-groups``: what the GroupNorm
regrouping of a pruned block costs (the suspect re-divided into half the groups, and each pruner
removing whole GroupNorm groups instead). The true trigger never enters a detector here.

    uv run python packages/diffcleanse/benchmarks/probe_validation.py prune-ft --zoo ZOO --ft_steps 200
    uv run python packages/diffcleanse/benchmarks/probe_validation.py norm-groups --zoo ZOO
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import torch

from paperzoo.diffcleanse.data import digits_images
from paperzoo.diffcleanse.detect import Detector, score_trigger
from paperzoo.diffcleanse.inversion import BBTIConfig, BBTIInverter, calibrate, to_unit
from paperzoo.diffcleanse.model import load_unet, unet_shape
from paperzoo.diffcleanse.sampling import BlackBoxSampler, sample


def _calibration(size: int) -> dict:
    return calibrate(to_unit(digits_images(size)))


def probe_bbti(args, unet, calib, jacobian: str = "const") -> dict:
    band = calib["value_band"] if args.band == "auto" else (0.05, 0.95)
    config = BBTIConfig(
        batch=args.batch,
        iters=args.iters,
        sampler_steps=20,
        sim_thresh=calib["sim_thresh"],
        saturation_frac=calib["saturation_frac"],
        value_band=band,
        cluster=args.cluster,
        jacobian=jacobian,
        seed=args.seed,
    )
    result = Detector(BBTIInverter(config), 0.5, 32).detect(BlackBoxSampler(unet, 20))
    sizes = [h["sim_size"] for h in result.history]
    valid = [h["valid"] for h in result.history]
    return {
        "mscr": result.mscr,
        "band": list(band),
        "best_sim": max(sizes),
        "sim_sizes": sizes,
        "valid": valid,
    }


def probe_autograd(args, unet, calib) -> dict:
    return probe_bbti(args, unet, calib, jacobian="autograd_ddim")


def probe_code_pattern(args, unet, calib) -> dict:
    sampler, record = BlackBoxSampler(unet, 20), {}
    for seed in (0, 1, 2):
        n = torch.randn(unet_shape(unet), generator=torch.Generator().manual_seed(seed))
        for name, pattern in (("code", 1 - 2 * n), ("normal", n)):
            record[f"mscr_{name}_seed{seed}"] = score_trigger(
                sampler, pattern, 32, 1, calib["sim_thresh"], calib["saturation_frac"]
            )
    return record


def _true_trigger(args, name: str, unet):
    """The recorded trigger and target of a zoo backdoor (evaluation only, never a detector's input)."""
    from paperzoo.diffcleanse.triggers import make_target, make_trigger

    recipe = json.loads((Path(args.zoo) / name / "recipe.json").read_text())
    if "trigger" not in recipe:
        raise SystemExit(f"error: {name} is a clean model (no trigger in its recipe)")
    shape = unet_shape(unet)
    return make_trigger(recipe["trigger"], shape), make_target(recipe["target"], shape)


def _true_mscr(unet, calib, pattern) -> float:
    return score_trigger(
        BlackBoxSampler(unet, 20), pattern, 32, 1, calib["sim_thresh"], calib["saturation_frac"]
    )


def probe_attack(args, unet, calib) -> dict:
    from paperzoo.diffcleanse.pipeline import evaluate_model

    trigger, target = _true_trigger(args, args.current, unet)
    ev = evaluate_model(unet, trigger, target, 256, 0, args.eval_steps, seed=0)
    record = {f"{k}_ddim{args.eval_steps}": v for k, v in ev.metrics.items()}
    record["mscr_true"] = _true_mscr(unet, calib, trigger)
    return record


def probe_robustness(args, unet, calib) -> dict:
    trigger, _ = _true_trigger(args, args.current, unet)
    record = {"mscr_true": _true_mscr(unet, calib, trigger)}
    for std in (0.25, 0.5, 1.0):
        for seed in (0, 1, 2):
            noise = torch.randn(trigger.shape, generator=torch.Generator().manual_seed(seed))
            record[f"mscr_noise{std}_seed{seed}"] = _true_mscr(unet, calib, trigger + std * noise)
    for scale in (0.5, 0.75, 1.5, 3.0):
        record[f"mscr_scale{scale}"] = _true_mscr(unet, calib, scale * trigger)
    return record


def probe_finetune(args, unet, calib) -> dict:
    from paperzoo.diffcleanse.metrics import train_digits_classifier
    from paperzoo.diffcleanse.pipeline import evaluate_model, finetune_dual
    from paperzoo.diffcleanse.triggers import make_target, make_trigger

    size = unet_shape(unet)[-1]
    images = digits_images(size)
    classifier, _ = train_digits_classifier(size, 300, 0)
    recipe = json.loads((Path(args.zoo) / args.models[0] / "recipe.json").read_text())
    trigger = make_trigger(recipe["trigger"], unet_shape(unet))
    target = make_target(recipe["target"], unet_shape(unet))
    data = sample(unet, args.n_ft, steps=20, generator=torch.Generator().manual_seed(2))
    student, teacher = copy.deepcopy(unet), copy.deepcopy(unet).eval()
    losses = finetune_dual(
        student, teacher, data.clamp(-1, 1), args.ft_steps, 64, args.lr, 0, "cpu", ema=args.ema
    )
    record = {"lr": args.lr, "ema": args.ema, "n_ft": args.n_ft, "loss_last": losses[-1]}
    for name, model in (("suspect", unet), ("finetuned", student)):
        ev = evaluate_model(
            model, trigger, target, 128, 256, 20, classifier=classifier, reference=images, seed=0
        )
        record[f"asr_{name}"], record[f"fd_{name}"] = ev.metrics["asr"], ev.metrics["fd"]
    return record


def _stage2_setup(args, unet):
    """``(true trigger, suspect samples, score)`` for the stage-2 probes: ``--n_ft`` samples of the
    suspect from clean noise (DDIM 20, seed 2) and ``score(model) -> [ASR, FD]`` (true trigger on
    128 fixed noises, FD on 256 clean samples against all digits)."""
    from paperzoo.diffcleanse.metrics import train_digits_classifier
    from paperzoo.diffcleanse.pipeline import evaluate_model

    size = unet_shape(unet)[-1]
    images = digits_images(size)
    classifier, _ = train_digits_classifier(size, 300, 0)
    trigger, target = _true_trigger(args, args.current, unet)
    gen = torch.Generator().manual_seed(2)
    data = sample(unet, args.n_ft, steps=20, generator=gen).clamp(-1, 1)

    def score(model) -> list[float]:
        ev = evaluate_model(
            model, trigger, target, 128, 256, 20, classifier=classifier, reference=images, seed=0
        )
        return [ev.metrics["asr"], ev.metrics["fd"]]

    return trigger, data, score


def probe_prune_ft(args, unet, calib) -> dict:
    """Stage 2 taken apart on one backdoor: pruned with the true trigger (the report-only oracle
    arm of ``validate``; ``--inverted FILE`` prunes with a saved inverted trigger instead) at
    ``--ratio``, scored right after pruning (beside the random, magnitude and clean Taylor pruners at
    the same ratio, also unrepaired), then after the fine-tune with the spec's dual loss
    and with the noise term alone (``distill_weight`` 0, an ablation), each for ``--ft_steps``
    steps on ``--n_ft`` suspect samples (``--ft_steps 0``: pruning only); the fine-tune only arm
    (no pruning) with both losses beside. ASR with the true trigger on 128 fixed noises, FD on
    256 clean samples (DDIM 20)."""
    from safetensors.torch import load_file

    from paperzoo.diffcleanse.pipeline import finetune_dual
    from paperzoo.diffcleanse.prune import (
        CleanTaylorPruner,
        DiffCleansePruner,
        MagnitudePruner,
        RandomPruner,
    )

    trigger, data, score = _stage2_setup(args, unet)
    prune_trigger = load_file(args.inverted)["trigger"] if args.inverted else trigger
    clean_batch = data[:64]

    record = {
        "ratio": args.ratio,
        "ft_steps": args.ft_steps,
        "n_ft": args.n_ft,
        "prune_trigger": args.inverted or "true",
    }
    record["asr_suspect"], record["fd_suspect"] = score(unet)
    pruned, report = DiffCleansePruner(args.ratio, 900, 64, seed=0).prune(
        unet, clean_batch, prune_trigger
    )
    record["channels_removed"] = report.channels_removed
    record["asr_pruned"], record["fd_pruned"] = score(pruned)
    baselines = {
        "random": RandomPruner(args.ratio, seed=0),
        "magnitude": MagnitudePruner(args.ratio),
        "clean_taylor": CleanTaylorPruner(args.ratio, 900, 64, seed=0),
    }
    for name, baseline in baselines.items():
        other, _ = baseline.prune(unet, clean_batch, None)
        record[f"asr_pruned_{name}"], record[f"fd_pruned_{name}"] = score(other)
    teacher = copy.deepcopy(unet).eval()
    arms = (("pruned", pruned), ("ftonly", unet)) if args.ft_steps > 0 else ()
    for arm, start in arms:
        for weight in (1.0, 0.0):
            student = copy.deepcopy(start)
            finetune_dual(
                student, teacher, data, args.ft_steps, 64, args.lr, 0, "cpu", distill_weight=weight
            )
            key = f"{arm}_ft_w{weight:g}"
            record[f"asr_{key}"], record[f"fd_{key}"] = score(student)
            print(json.dumps({key: [record[f"asr_{key}"], record[f"fd_{key}"]]}), flush=True)
    return record


def _whole_norm_groups(unet, scores: dict, ratio: float):
    """A pruned copy of ``unet`` that removes whole GroupNorm groups of each ResNet block's inner
    channels (the highest mean score first, ``round(C - int(C (1 - r))) / group size`` of them, at
    least one), so every kept channel keeps its GroupNorm partners; not the package's rule (spec
    1.3 re-divides the new width), a probe of whether the regrouping is what costs quality."""
    from paperzoo.diffcleanse.prune import removal_counts, resnet_groups, shrink_resnet

    counts = removal_counts({k: len(v) for k, v in scores.items()}, ratio)
    pruned = copy.deepcopy(unet)
    blocks, removed = resnet_groups(pruned), 0
    for name, score in scores.items():
        block = blocks[name]
        groups = block.norm2.num_groups
        size = len(score) // groups
        n = max(1, round(counts[name] / size)) if counts[name] else 0
        drop = torch.argsort(score.view(groups, size).mean(1), descending=True, stable=True)[:n]
        kept = sorted(set(range(groups)) - set(drop.tolist()))
        keep = torch.cat([torch.arange(j * size, (j + 1) * size) for j in kept])
        shrink_resnet(block, keep, len(kept))
        removed += len(score) - len(keep)
    return pruned, removed


def probe_norm_groups(args, unet, calib) -> dict:
    """GroupNorm regrouping after pruning, taken apart: the suspect with every inner GroupNorm
    re-divided into half as many groups (nothing removed), then each pruner at ``--ratio`` removing
    whole GroupNorm groups instead of channels (``_whole_norm_groups``), scored right after pruning
    and, for the oracle, random and clean Taylor pruners, after the fine-tune (``--ft_steps``)."""
    from paperzoo.diffcleanse.pipeline import finetune_dual
    from paperzoo.diffcleanse.prune import (
        CleanTaylorPruner,
        DiffCleansePruner,
        MagnitudePruner,
        RandomPruner,
        resnet_groups,
        shrink_resnet,
    )

    trigger, data, score = _stage2_setup(args, unet)
    record = {"ratio": args.ratio, "suspect": score(unet)}
    regrouped = copy.deepcopy(unet)
    for block in resnet_groups(regrouped).values():
        shrink_resnet(block, torch.arange(block.conv1.out_channels), block.norm2.num_groups // 2)
    record["regrouped_half"] = score(regrouped)
    pruners = {
        "oracle": (DiffCleansePruner(args.ratio, 900, 64, seed=0), trigger),
        "random": (RandomPruner(args.ratio, seed=0), None),
        "magnitude": (MagnitudePruner(args.ratio), None),
        "clean_taylor": (CleanTaylorPruner(args.ratio, 900, 64, seed=0), None),
    }
    for name, (pruner, pattern) in pruners.items():
        pruned, removed = _whole_norm_groups(
            unet, pruner.scores(unet, data[:64], pattern), args.ratio
        )
        record[f"whole_groups_{name}_removed"] = removed
        record[f"whole_groups_{name}_pruned"] = score(pruned)
        if name != "magnitude" and args.ft_steps > 0:
            teacher = copy.deepcopy(unet).eval()
            finetune_dual(pruned, teacher, data, args.ft_steps, 64, args.lr, 0, "cpu")
            record[f"whole_groups_{name}_ft"] = score(pruned)
        print(json.dumps({name: record[f"whole_groups_{name}_pruned"]}), flush=True)
    return record


def probe_code_shift(args, unet, calib) -> dict:
    """The shift of the BadDiffusion code (``R = m x + (1 - m) g_img``: the clean training image
    with the trigger pasted on its mask, ``g_img`` = +1 on the mask and -1 off it; sampled with
    ``eps + g_img``), trained from the zoo's base with this backdoor's recipe, beside the spec's
    ``r = g``. Not the package's attack (spec 1.1 reconstructs ``r = g``); a probe of whether the
    code's image-dependent shift makes a wider backdoor."""
    import math

    from paperzoo.diffcleanse.attack import BadDiffusionLoss
    from paperzoo.diffcleanse.model import make_scheduler
    from paperzoo.diffcleanse.pipeline import evaluate_model
    from paperzoo.diffcleanse.triggers import make_target, make_trigger

    recipe = json.loads((Path(args.zoo) / args.current / "recipe.json").read_text())
    if "trigger" not in recipe:
        raise SystemExit(f"error: {args.current} is a clean model (no trigger in its recipe)")
    model, _ = load_unet(Path(args.zoo) / "base")
    shape = unet_shape(model)
    images = digits_images(shape[-1])
    mask = (make_trigger(recipe["trigger"], shape) != 0).float()
    g_img = 2 * mask - 1
    target = make_target(recipe["target"], shape)
    gen = torch.Generator().manual_seed(recipe["seed"])
    poisoned = torch.zeros(len(images), dtype=torch.bool)
    poisoned[
        torch.randperm(len(images), generator=gen)[: round(recipe["poison_rate"] * len(images))]
    ] = True
    loss_fn = BadDiffusionLoss(make_scheduler(), recipe["solver"])
    steps = recipe["steps"]
    optimiser = torch.optim.Adam(model.parameters(), lr=recipe["lr"])
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))
    )
    model.train()
    for _ in range(steps):
        index = torch.randint(0, len(images), (recipe["base"]["batch"],), generator=gen)
        x, rows = images[index], poisoned[index].view(-1, 1, 1, 1).float()
        y = rows * target + (1 - rows) * x
        r = rows * (mask * g_img + (1 - mask) * x)
        loss = loss_fn(model, y, r, generator=gen)
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        schedule.step()
    model.eval()
    ev = evaluate_model(model, g_img, target, 128, 0, 20, seed=0)
    record = {f"code_shift_{k}": v for k, v in ev.metrics.items() if not isinstance(v, list)}
    record["code_shift_mscr_true"] = _true_mscr(model, calib, g_img)
    for seed in (0, 1, 2):
        noise = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
        record[f"code_shift_mscr_noise0.5_seed{seed}"] = _true_mscr(
            model, calib, g_img + 0.5 * noise
        )
    record["code_shift_bbti_mscr"] = probe_bbti(args, model, calib)["mscr"]
    return record


PROBES = {
    "attack": probe_attack,
    "robustness": probe_robustness,
    "bbti": probe_bbti,
    "autograd": probe_autograd,
    "code-pattern": probe_code_pattern,
    "finetune": probe_finetune,
    "code-shift": probe_code_shift,
    "prune-ft": probe_prune_ft,
    "norm-groups": probe_norm_groups,
}


def build_zoo(args) -> None:
    """The first zoo models of a settings file, through ``validation._zoo`` (same recipes and cache)."""
    import yaml

    from paperzoo.diffcleanse.model import create_model
    from paperzoo.diffcleanse.validation import ValidationConfig, _zoo

    fields = yaml.safe_load(Path(args.settings).read_text()) or {}
    config = ValidationConfig(**fields)
    config.attacks = config.attacks[: args.attacks]
    config.clean_controls = args.controls
    images = digits_images(create_model(config.preset).config.sample_size)
    start, cpu = time.perf_counter(), time.process_time()
    _, zoo = _zoo(config, images, "cpu", Path(args.zoo))
    record = {
        "probe": "zoo",
        "models": [entry["name"] for entry in zoo],
        "seconds": round(time.perf_counter() - start, 1),
        "cpu_seconds": round(time.process_time() - cpu, 1),
    }
    print(json.dumps(record), flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("probe", choices=sorted([*PROBES, "zoo"]))
    parser.add_argument("--zoo", required=True, help="a validation zoo folder (OUT/zoo)")
    parser.add_argument("--models", nargs="+", default=["backdoor_0"])
    parser.add_argument("--iters", type=int, default=40)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--band", choices=("auto", "raw"), default="auto")
    parser.add_argument("--cluster", choices=("component", "pairs"), default="component")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--ema", type=int, choices=(0, 1), default=1)
    parser.add_argument("--n_ft", type=int, default=1024)
    parser.add_argument("--ft_steps", type=int, default=200)
    parser.add_argument("--eval_steps", type=int, default=50)
    parser.add_argument("--ratio", type=float, default=0.1, help="prune-ft: pruning ratio")
    parser.add_argument("--inverted", default=None, help="prune-ft: a trigger .safetensors file")
    parser.add_argument("--settings", default=None, help="zoo: a ValidationConfig YAML file")
    parser.add_argument("--attacks", type=int, default=1, help="zoo: how many backdoors")
    parser.add_argument("--controls", type=int, default=1, help="zoo: how many clean controls")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="append the JSON records to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.probe == "zoo":
        if not args.settings:
            raise SystemExit("error: zoo needs --settings FILE")
        build_zoo(args)
        return
    for name in args.models:
        folder = Path(args.zoo) / name
        if not folder.is_dir():
            raise SystemExit(f"error: no zoo model at {folder}")
        unet, _ = load_unet(folder)
        args.current = name
        calib = _calibration(unet_shape(unet)[-1])
        start = time.perf_counter()
        record = {"probe": args.probe, "model": name, **PROBES[args.probe](args, unet, calib)}
        record["seconds"] = round(time.perf_counter() - start, 1)
        line = json.dumps(record)
        print(line, flush=True)
        if args.out:
            with open(args.out, "a") as handle:
                handle.write(line + "\n")


if __name__ == "__main__":
    main()
