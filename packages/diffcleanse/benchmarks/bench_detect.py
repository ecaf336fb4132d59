"""Detection cost vs the number of BBTI iterations (spec 5): per model (a backdoored and a clean
one) and iters, wall time, sampler calls, UNet evaluations, the MSCR reached and peak RSS, with
times as ratios to one plain sampling of the batch and to Elijah's inversion, in the same process.

    uv run python packages/diffcleanse/benchmarks/bench_detect.py --backdoored ZOO/backdoor_0 \
        --clean ZOO/clean_0 --out packages/diffcleanse/benchmarks/results/bench_detect.json --overwrite

Without model folders it uses two untrained ``micro`` UNets (cost only; the MSCR is meaningless).
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import torch


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _refuse_existing(out: Path, overwrite: bool) -> None:
    """Stop before any work when ``out`` exists (the default is the committed result file)."""
    if out.exists() and not overwrite:
        raise SystemExit(f"{out} exists; pass --overwrite to replace it or another --out")


def main() -> None:
    from paperzoo.core.results import atomic_write_text
    from paperzoo.diffcleanse.data import digits_images
    from paperzoo.diffcleanse.detect import Detector
    from paperzoo.diffcleanse.inversion import (
        BBTIConfig,
        BBTIInverter,
        ElijahInverter,
        calibrate,
        to_unit,
    )
    from paperzoo.diffcleanse.model import create_model, load_unet, unet_shape
    from paperzoo.diffcleanse.sampling import BlackBoxSampler

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backdoored", default=None)
    parser.add_argument("--clean", default=None)
    parser.add_argument("--iters", type=int, nargs="+", default=[10, 25, 50, 100])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--sampler_steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--seed", type=int, default=0, help="seeds the untrained model and the noise"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing --out file (committed results)",
    )
    parser.add_argument(
        "--out", default="packages/diffcleanse/benchmarks/results/bench_detect.json"
    )
    args = parser.parse_args()
    _refuse_existing(Path(args.out), args.overwrite)
    if any(i < 1 for i in args.iters) or args.batch < 2 or args.sampler_steps < 1:
        raise SystemExit("--iters must be >= 1, --batch >= 2 and --sampler_steps >= 1")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    models = {"backdoored": args.backdoored, "clean": args.clean}
    records = []
    for label, folder in models.items():
        unet = load_unet(folder)[0] if folder else create_model("micro").eval()
        c, h, _ = unet_shape(unet)
        calib = calibrate(to_unit(digits_images(h))) if c == 1 else {}
        sampler = BlackBoxSampler(unet, args.sampler_steps)
        noise = torch.randn(args.batch, c, h, h)
        start = time.perf_counter()
        sampler(noise)
        plain = time.perf_counter() - start
        start = time.perf_counter()
        ElijahInverter(args.batch, 100).invert(unet)
        elijah = time.perf_counter() - start
        for iters in args.iters:
            sampler = BlackBoxSampler(unet, args.sampler_steps)
            detector = Detector(
                BBTIInverter(
                    BBTIConfig(
                        batch=args.batch, iters=iters, sampler_steps=args.sampler_steps, **calib
                    )
                ),
                n_eval=32,
            )
            result = detector.detect(sampler)
            records.append(
                {
                    "model": label,
                    "folder": folder or "untrained micro",
                    "iters": iters,
                    "iterations_run": len(result.history),
                    "seconds": result.seconds,
                    "sampler_calls": result.calls,
                    "unet_evals": result.unet_evals,
                    "mscr": result.mscr,
                    "peak_rss_mb": _rss_mb(),
                    "time_vs_one_sampling": result.seconds / plain,
                    "time_vs_elijah_100": result.seconds / elijah,
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
                "sampler_steps": args.sampler_steps,
                "records": records,
            },
            indent=1,
        ),
    )


if __name__ == "__main__":
    main()
