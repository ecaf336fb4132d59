"""The spec's V2 at N = 64 in pieces, each written to JSON as soon as it is done, for a machine
where one `validate --config configs/validate_n64.yaml` call does not fit the time at hand.

On the files ``paperzoo-advdiffsr validate --hr 64`` simulates (``simulate --hr 64``, seed 0,
48/8/16 sequences, 32 frames; byte-identical), with the library functions `validate` calls:
bicubic; physics seed 1 with the `hard` weight and no-physics seed 1 (the `small` preset, 200
steps, windows of 16 frames); physics least squares on the first 4 test sequences (300
iterations); then the hold-out choice of seed 0 (`select_lambda`: hard, soft 0.3, soft 3 with
10 % of the LR cells hidden, scored on the validation LR). Seed-0 physics and no-physics come
from a `validate --hr 64 --seeds 1` run on the same files.

    uv run python packages/advdiffsr/benchmarks/validate_n64_pieces.py --data DIR --out pieces.json
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch

from paperzoo.advdiffsr import metrics as M
from paperzoo.advdiffsr.baselines import bicubic_baseline, physics_least_squares
from paperzoo.advdiffsr.data import EvalDataset, load_lr
from paperzoo.advdiffsr.pipeline import (
    MID_WINDOW,
    TrainConfig,
    score,
    select_lambda,
    super_resolve,
    train_sr,
)
from paperzoo.core.results import atomic_write_text

KEYS = (
    "rel_l2",
    "rel_l2_all",
    "rel_l2_first",
    "mae",
    "ssim",
    "high_k_ratio",
    "pde_residual",
    "pde_residual_all",
    "lr_consistency",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="folder from `simulate --hr 64` (seed 0)")
    parser.add_argument("--out", default="validate_n64_pieces.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = Path(args.data)
    train, val, test = (load_lr(data / f"{split}_lr.npz") for split in ("train", "val", "test"))
    truth = EvalDataset(data / "test_hr.npz").hr  # scoring only
    record: dict = {}

    def done(name: str, value: dict) -> None:
        record[name] = value
        atomic_write_text(args.out, json.dumps(record, indent=1))
        print(time.strftime("%H:%M:%S"), name, flush=True)

    bicubic = score(bicubic_baseline(test).double(), truth, test)
    done("bicubic", {k: bicubic[k] for k in KEYS})
    base = TrainConfig(preset="small", steps=200, window=16, seed=0)
    arms = {
        "physics_seed1": replace(base, projection="hard", lambda_pde=1.0, seed=1),
        "nophysics_seed1": replace(base, arm="nophysics", seed=1),
    }
    for name, config in arms.items():
        wall, cpu = time.perf_counter(), time.process_time()
        prediction = super_resolve(train_sr(train, config).model, test)
        scores = score(prediction.double(), truth, test)
        entry = {k: scores[k] for k in KEYS} | {
            "wall": time.perf_counter() - wall,
            "cpu": time.process_time() - cpu,
            "per_frame": scores["per_frame"],
        }
        if name == "physics_seed1":
            entry["on_ls_subset_rel_l2"] = M.rel_l2(
                prediction[:4, MID_WINDOW], truth[:4, MID_WINDOW]
            )
        done(name, entry)
    cpu = time.process_time()
    subset = test.subset(range(4))
    least_squares = physics_least_squares(subset, 300)
    done(
        "ls",
        {
            "rel_l2": M.rel_l2(least_squares[:, MID_WINDOW], truth[:4, MID_WINDOW]),
            "rel_l2_first": M.rel_l2(least_squares[:, 0], truth[:4, 0]),
            "pde_residual": M.pde_residual_rms(
                least_squares, subset.u, subset.kappa, subset.dt_obs, subset.lr
            ),
            "cpu": time.process_time() - cpu,
        },
    )
    wall, cpu = time.perf_counter(), time.process_time()
    selection = select_lambda(train, val, base)
    done(
        "selection",
        {
            "candidate": selection.candidate,
            "candidates": selection.candidates,
            "wall": time.perf_counter() - wall,
            "cpu": time.process_time() - cpu,
        },
    )


if __name__ == "__main__":
    main()
