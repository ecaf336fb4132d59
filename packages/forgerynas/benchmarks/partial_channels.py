"""Search cost vs partial-channel K (spec section 6): time per search iteration (one architecture
step + one weight step) and per 1,600-crop epoch, bytes saved for backward and peak RSS, each K in
a fresh process, as ratios to K = 1; plus a CDC op against a plain conv. Writes one JSON record.

    python packages/forgerynas/benchmarks/partial_channels.py --out /tmp/partial_channels.json
    # spec sizes: --C 16 --layers 8 --steps 4 --size 64 --batch 32 (the defaults)

--out (default: the committed benchmarks/results/partial_channels.json) is refused when it exists
unless --overwrite is given; the record is written atomically. Each K's child process may run
--child_timeout_s seconds.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


def measure(
    C: int, layers: int, steps: int, K: int, size: int, batch: int, iterations: int, threads: int
) -> dict:
    import resource

    import torch

    from paperzoo.forgerynas.search import architecture_step, weight_step
    from paperzoo.forgerynas.supernet import Supernet, saved_activation_bytes

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = Supernet(C=C, layers=layers, steps=steps, K=K, seed=0)
    arch = torch.optim.Adam(net.arch_parameters(), lr=6e-4, betas=(0.5, 0.999))
    weights = torch.optim.SGD(net.weight_parameters(), lr=0.1, momentum=0.9)
    x, y = torch.rand(batch, 3, size, size), torch.arange(batch) % 2
    saved = saved_activation_bytes(net, x, y)
    architecture_step(net, arch, x, y)  # warm-up
    weight_step(net, weights, x, y)
    started, cpu_started = time.perf_counter(), time.process_time()
    for _ in range(iterations):
        architecture_step(net, arch, x, y)
        weight_step(net, weights, x, y)
    per_iter = (time.perf_counter() - started) / iterations
    cpu_per_iter = (time.process_time() - cpu_started) / iterations  # robust on a shared machine
    return {
        "K": K,
        "seconds_per_iteration": per_iter,
        "cpu_seconds_per_iteration": cpu_per_iter,
        "seconds_per_epoch_1600": per_iter * 1600 / batch,
        "saved_bytes": saved,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "params": sum(p.numel() for p in net.parameters()),
    }


def cdc_vs_conv(threads: int, repeats: int = 30) -> dict:
    import torch
    from torch import nn

    from paperzoo.forgerynas.ops import CDCConv2d

    torch.set_num_threads(threads)
    x = torch.rand(32, 16, 32, 32, requires_grad=True)
    timings = {}
    for name, layer in (
        ("conv", nn.Conv2d(16, 16, 3, 1, 1, groups=16, bias=False)),
        ("cdc", CDCConv2d(16, 16, 3, 1, 1, groups=16, theta=0.7)),
    ):
        layer(x).sum().backward()
        started = time.perf_counter()
        for _ in range(repeats):
            layer(x).sum().backward()
        timings[name] = (time.perf_counter() - started) / repeats
    return {
        "depthwise_conv_seconds": timings["conv"],
        "depthwise_cdc_seconds": timings["cdc"],
        "cdc_over_conv": timings["cdc"] / timings["conv"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--C", type=int, default=16)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--Ks", type=str, default="1,2,4,8")
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "partial_channels.json"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing --out (refused otherwise)"
    )
    parser.add_argument(
        "--child_timeout_s",
        type=float,
        default=3600.0,
        help="the longest one K's measuring process may run (seconds)",
    )
    parser.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(
            json.dumps(
                measure(
                    args.C,
                    args.layers,
                    args.steps,
                    args.child,
                    args.size,
                    args.batch,
                    args.iterations,
                    args.threads,
                )
            )
        )
        return
    if args.out.exists() and not args.overwrite:
        raise SystemExit(f"--out {args.out} exists; pass --overwrite to replace it")
    if not args.child_timeout_s > 0:
        raise SystemExit(f"--child_timeout_s must be positive, got {args.child_timeout_s}")
    Ks = [int(k) for k in args.Ks.split(",")]
    if 1 not in Ks:
        raise SystemExit("--Ks must include 1 (the baseline of the ratios)")
    for k in Ks:
        if k < 1 or args.C % k or args.C // k < 2:
            raise SystemExit(f"--Ks: K={k} must divide --C={args.C} and leave >= 2 channels per op")
    records = {}
    for k in Ks:  # each K in a fresh process, so peak RSS is its own
        command = [
            sys.executable,
            __file__,
            "--child",
            str(k),
            "--C",
            str(args.C),
            "--layers",
            str(args.layers),
            "--steps",
            str(args.steps),
            "--size",
            str(args.size),
            "--batch",
            str(args.batch),
            "--iterations",
            str(args.iterations),
            "--threads",
            str(args.threads),
        ]
        try:
            output = subprocess.run(
                command, capture_output=True, text=True, check=True, timeout=args.child_timeout_s
            ).stdout
        except subprocess.TimeoutExpired:
            raise SystemExit(
                f"K={k}: the measuring process ran past --child_timeout_s={args.child_timeout_s} s"
                f"; nothing written to {args.out}"
            ) from None
        except subprocess.CalledProcessError as error:
            tail = (error.stderr or "").strip().splitlines()[-1:] or ["no output"]
            raise SystemExit(
                f"K={k}: the measuring process failed (exit {error.returncode}: {tail[0]}); "
                f"nothing written to {args.out}"
            ) from None
        records[k] = json.loads(output.strip().splitlines()[-1])
        print(f"K={k}: {records[k]}", file=sys.stderr)
    base = records[1]
    result = {
        "config": {
            "C": args.C,
            "layers": args.layers,
            "steps": args.steps,
            "size": args.size,
            "batch": args.batch,
            "iterations": args.iterations,
            "threads": args.threads,
        },
        "per_K": {str(k): r for k, r in records.items()},
        "ratios_to_K1": {
            str(k): {
                "time_per_iteration": r["seconds_per_iteration"] / base["seconds_per_iteration"],
                "cpu_time_per_iteration": r["cpu_seconds_per_iteration"]
                / base["cpu_seconds_per_iteration"],
                "saved_bytes": r["saved_bytes"] / base["saved_bytes"],
                "peak_rss": r["peak_rss_mb"] / base["peak_rss_mb"],
            }
            for k, r in records.items()
        },
        "cdc_op": cdc_vs_conv(args.threads),
    }
    from paperzoo.core.results import atomic_write_text

    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["ratios_to_K1"], indent=1))


if __name__ == "__main__":
    main()
