"""Pruning cost vs the ratio r (spec 5): importance + shrink time, parameters and forward time of
the pruned UNet as ratios to the unpruned one, in the same process.

    uv run python packages/diffcleanse/benchmarks/bench_prune.py --preset tiny \
        --out packages/diffcleanse/benchmarks/results/bench_prune.json --overwrite
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def _forward_seconds(unet, x, t, repeats: int = 5) -> float:
    with torch.no_grad():
        unet(x, t)
        start = time.perf_counter()
        for _ in range(repeats):
            unet(x, t)
    return (time.perf_counter() - start) / repeats


def _refuse_existing(out: Path, overwrite: bool) -> None:
    """Stop before any work when ``out`` exists (the default is the committed result file)."""
    if out.exists() and not overwrite:
        raise SystemExit(f"{out} exists; pass --overwrite to replace it or another --out")


def main() -> None:
    from paperzoo.core.results import atomic_write_text
    from paperzoo.diffcleanse.model import count_parameters, create_model, unet_shape
    from paperzoo.diffcleanse.prune import DiffCleansePruner

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.02, 0.05, 0.1, 0.3])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--t_start", type=int, default=900)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing --out file (committed results)",
    )
    parser.add_argument("--out", default="packages/diffcleanse/benchmarks/results/bench_prune.json")
    args = parser.parse_args()
    _refuse_existing(Path(args.out), args.overwrite)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    unet = create_model(args.preset).eval()
    c, h, w = unet_shape(unet)
    x0 = torch.rand(args.batch, c, h, w) * 2 - 1
    x, t = torch.randn(args.batch, c, h, w), torch.full((args.batch,), 500)
    base_params, base_forward = count_parameters(unet), _forward_seconds(unet, x, t)
    records = []
    for ratio in args.ratios:
        start = time.perf_counter()
        pruned, report = DiffCleansePruner(ratio, args.t_start, args.batch).prune(
            unet, x0, torch.randn(c, h, w)
        )
        seconds = time.perf_counter() - start
        forward = _forward_seconds(pruned, x, t)
        records.append(
            {
                "preset": args.preset,
                "ratio": ratio,
                "prune_seconds": seconds,
                "channels_removed": report.channels_removed,
                "params": count_parameters(pruned),
                "params_ratio": count_parameters(pruned) / base_params,
                "forward_seconds": forward,
                "forward_ratio": forward / base_forward,
            }
        )
        print(json.dumps(records[-1]))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(
        out,
        json.dumps(
            {
                "threads": args.threads,
                "batch": args.batch,
                "base_params": base_params,
                "base_forward_seconds": base_forward,
                "records": records,
            },
            indent=1,
        ),
    )


if __name__ == "__main__":
    main()
