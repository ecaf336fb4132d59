"""Retrain one validation cell alone and record its per-epoch curve (README "Why the retraining is
unstable"): mean train loss, A-val AUC (eval mode), steps whose gradient norm exceeded the clip,
then AUC on A-train, A-test and B after BatchNorm recalibration. A plain torch loop with the
validation's recipe (SGD momentum 0.9, wd 3e-4, cosine per epoch, clip 5, the same seeded
class-balanced sampler, the arm's initial weights drawn under its seed); with the defaults it
reproduces the validation's AUCs to the last digit. Variants are diagnostics, not the recipe.

    python packages/forgerynas/benchmarks/retrain_probe.py \\
        --genotype packages/forgerynas/docs/genotypes/cdc_cross_seed0.json --init 0 --out probe.json

``--flips`` draws its flips with ``data.random_flips`` from a generator seeded with init + 999
(what the README's rows used; ``TrainConfig.flips`` seeds it with the run's seed).
``--lr_warmup_epochs W`` sets every step's rate with ``pipeline.retrain_lr`` (the schedule of
``TrainConfig.lr_warmup_epochs``); each epoch's record gives the first and last step's rate.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genotype", required=True, help="genotype JSON (docs/genotypes/...)")
    parser.add_argument("--init", type=int, default=0, help="validation seed (weights, sampler)")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--C", type=int, default=8)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--flips", action="store_true", help="random left-right/top-bottom flips")
    parser.add_argument("--crop", type=int, default=0, help="random crop of the P-padded frame")
    parser.add_argument(
        "--lr_warmup_epochs",
        type=float,
        default=0.0,
        help="linear learning-rate warm-up (TrainConfig.lr_warmup_epochs; 0: none)",
    )
    parser.add_argument("--out", type=Path, default=None, help="JSON record")
    args = parser.parse_args()
    for name in ("epochs", "C", "batch_size"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name} must be positive")

    import torch
    import torch.nn.functional as F
    from torchmetrics.functional.classification import binary_auroc

    from paperzoo.forgerynas.data import BalancedBatchSampler, random_flips
    from paperzoo.forgerynas.forgeries import make_domain, source_pools
    from paperzoo.forgerynas.pipeline import (
        predict_probs,
        recalibrate_batchnorm,
        retrain_lr,
        warmup_steps,
    )
    from paperzoo.forgerynas.search_space import load_genotype
    from paperzoo.forgerynas.validation import _frames, arm_detector

    torch.set_num_threads(1)
    started = time.perf_counter()
    pools = source_pools(32)
    train = _frames(make_domain("A", "train", 1600, 32, 0, pools))
    val = _frames(make_domain("A", "val", 400, 32, 0, pools))
    test = _frames(make_domain("A", "test", 600, 32, 0, pools))
    cross = _frames(make_domain("B", "test", 600, 32, 0, pools))
    model = arm_detector("tiny", args.init, load_genotype(args.genotype), C=args.C, layers=8)
    torch.manual_seed(args.init)
    model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=3e-4)
    batches = len(train) // args.batch_size
    sampler = BalancedBatchSampler(train.labels, args.batch_size, batches, args.init)
    augment = torch.Generator().manual_seed(args.init + 999)
    warmup = warmup_steps(args.lr_warmup_epochs, batches, args.epochs)
    step = 0

    def auc(data) -> float:
        probs, labels, _ = predict_probs(model, data)
        return float(binary_auroc(probs, labels))

    epochs = []
    for epoch in range(args.epochs):
        model.train()
        for group in optimizer.param_groups:  # cosine stepped per epoch (DARTS train.py)
            group["lr"] = 0.5 * args.lr * (1 + math.cos(math.pi * epoch / args.epochs))
        losses, norms, rates = [], [], []
        for index in sampler:
            if warmup:  # linear warm-up, then the same per-epoch cosine (pipeline.retrain_lr)
                for group in optimizer.param_groups:
                    group["lr"] = retrain_lr(step, batches, args.epochs, args.lr, warmup)
                step += 1
            rates.append(optimizer.param_groups[0]["lr"])
            images, labels = train.images[index], train.labels[index]
            if args.flips:
                images = random_flips(images, augment)
            if args.crop:
                p, n = args.crop, len(index)
                padded = F.pad(images, (p, p, p, p))
                dx = torch.randint(0, 2 * p + 1, (n,), generator=augment)
                dy = torch.randint(0, 2 * p + 1, (n,), generator=augment)
                images = torch.stack(
                    [padded[i, :, dy[i] : dy[i] + 32, dx[i] : dx[i] + 32] for i in range(n)]
                )
            images = images.contiguous(memory_format=torch.channels_last)
            loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            norms.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)))
            optimizer.step()
            losses.append(float(loss.detach()))
        record = {
            "epoch": epoch + 1,
            "loss": sum(losses) / len(losses),
            "clipped_steps": sum(v > 5.0 for v in norms),
            "grad_norm": sum(norms) / len(norms),
            "lr_first_last": [rates[0], rates[-1]],
            "a_val_auc": auc(val),
        }
        epochs.append(record)
        print(json.dumps(record), flush=True)
    model = model.to(memory_format=torch.contiguous_format)
    recalibrate_batchnorm(model, train, args.batch_size)
    result = {
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "epochs": epochs,
        "a_train_auc": auc(train),
        "a_val_auc": auc(val),
        "a_test_auc": auc(test),
        "b_auc": auc(cross),
        "seconds": time.perf_counter() - started,
    }
    print(json.dumps({k: v for k, v in result.items() if k != "epochs"}), flush=True)
    if args.out is not None:
        from paperzoo.core.results import atomic_write_text

        atomic_write_text(args.out, json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
