"""Probes behind the README's validation notes: why BBTI misses the micro backdoors and why the
fine-tune raises the digits FD. Runs on a validation zoo folder (``OUT/zoo`` of ``validate``) and
prints one JSON record per run (also appended to ``--out``).

    uv run python packages/diffcleanse/benchmarks/probe_validation.py bbti --zoo runs/validate/zoo \
        --models backdoor_0 clean_0 --iters 100 --batch 32
    uv run python packages/diffcleanse/benchmarks/probe_validation.py autograd --zoo ZOO --iters 40
    uv run python packages/diffcleanse/benchmarks/probe_validation.py code-pattern --zoo ZOO
    uv run python packages/diffcleanse/benchmarks/probe_validation.py finetune --zoo ZOO --lr 2e-5

``bbti``: the detector as ``validate`` runs it (auto thresholds; ``--band raw`` for the spec's raw
(0.05, 0.95); ``--cluster pairs`` the authors' similar set; ``--seed`` another start and noises),
with the per-iteration size of the similar set. ``autograd``: the same with the
true gradient through the 20-step DDIM sampler (white-box, the spec's flagged
``jacobian="autograd_ddim"``; a diagnostic only). ``code-pattern``: the MSCR of the pattern the
authors' code samples with (its update never reaches it: ``1 - 2 n``, n ~ N(0, I)) and of the
N(0, I) start. ``finetune``: the fine-tune only arm of the validation (no pruning) with another
learning rate, EMA switch or number of suspect samples; FD on 256 clean samples, ASR with the true
trigger (evaluation only). The true trigger never enters a detector here.
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
    return {"mscr": result.mscr, "band": list(band), "best_sim": max(sizes), "sim_sizes": sizes}


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


PROBES = {
    "bbti": probe_bbti,
    "autograd": probe_autograd,
    "code-pattern": probe_code_pattern,
    "finetune": probe_finetune,
}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("probe", choices=sorted(PROBES))
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
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="append the JSON records to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    for name in args.models:
        folder = Path(args.zoo) / name
        if not folder.is_dir():
            raise SystemExit(f"error: no zoo model at {folder}")
        unet, _ = load_unet(folder)
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
