"""The HR-supervised upper bound on a data folder written by ``simulate`` / ``validate``: the
training HR is re-simulated in memory from the data seed (``oracle.oracle_training_hr``), the
``small`` network is trained on it with the physics arm's budget, and scored on the test split
(mid-window frames 9-24) beside bicubic. An upper bound only: nothing here feeds training.

    uv run python packages/advdiffsr/benchmarks/oracle_upper_bound.py --data DIR --out oracle.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from paperzoo.advdiffsr.baselines import bicubic_baseline
from paperzoo.advdiffsr.data import EvalDataset, load_lr
from paperzoo.advdiffsr.oracle import oracle_training_hr, train_oracle
from paperzoo.advdiffsr.pipeline import TrainConfig, score, super_resolve
from paperzoo.core.results import atomic_write_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", required=True, help="folder with train_lr.npz, test_lr.npz, test_hr.npz"
    )
    parser.add_argument("--out", default="oracle_upper_bound.json")
    parser.add_argument("--seed", type=int, default=0, help="the data set's seed (simulate --seed)")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--preset", default="small")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = Path(args.data)
    train, test = load_lr(data / "train_lr.npz"), load_lr(data / "test_lr.npz")
    truth = EvalDataset(data / "test_hr.npz").hr
    run = train_oracle(
        train,
        oracle_training_hr(train, args.seed),
        TrainConfig(preset=args.preset, steps=args.steps, window=min(16, train.frames)),
    )
    oracle = score(super_resolve(run.model, test).double(), truth, test)
    bicubic = score(bicubic_baseline(test).double(), truth, test)
    record = {
        "steps": args.steps,
        "preset": args.preset,
        "N": train.hr_size,
        "seconds": run.seconds,
        **{f"oracle_{k}": v for k, v in oracle.items() if k != "per_frame"},
        **{f"bicubic_{k}": v for k, v in bicubic.items() if k != "per_frame"},
    }
    record["oracle_over_bicubic"] = oracle["rel_l2"] / bicubic["rel_l2"]
    atomic_write_text(args.out, json.dumps(record, indent=2))
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
