"""RWAE latent audit: why the ensemble is narrow. Trains the RWAE (``small``, seed 0) on the LR
files of a ``simulate`` folder and measures, for each MMD bandwidth (``unit``: ``sigma_p^2 = 1``;
``prior``: the variance of the frame's prior samples):

- the latent statistics of ``uncertainty.latent_diagnostics`` (LR only): posterior and prior
  std, the spread of the posterior means, the PDE gain of the latent over ``z = 0``, the PDE
  loss of single prior members over that of the posterior-mean decoding;
- the spread ratio of K prior members with the hard projection and without it (does the
  projection remove the spread?) and with ``z ~ N(0, I)`` fed to the decoder (how strongly can
  the decoder respond to its latent at all?);
- for the record (HR of the test split, chooses nothing): the error of the ensemble mean
  against the mean spread, coverage and CRPS on the mid-window frames.

    uv run python packages/advdiffsr/benchmarks/rwae_latent_audit.py --data DIR --out audit.json
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch

from paperzoo.advdiffsr import metrics as M
from paperzoo.advdiffsr.data import EvalDataset, load_lr
from paperzoo.advdiffsr.pipeline import MID_WINDOW, TrainConfig, train_sr
from paperzoo.advdiffsr.uncertainty import latent_diagnostics, sample_ensemble, spread_ratio
from paperzoo.core.results import atomic_write_text


@torch.no_grad()
def decoder_response(model, data, samples: int, seed: int) -> dict[str, float]:
    """Spread ratios of prior members without projection and of decodings of ``z ~ N(0, I)``."""
    generator = torch.Generator().manual_seed(seed)
    lr, u = data.lr, data.velocity(slice(0, data.num_sequences)).float()
    B, T, n, _ = lr.shape
    u_full = u.expand(B, T, *u.shape[2:])
    mask = torch.ones_like(lr)
    h = model.sr.core(model.sr.encode(lr, u_full, mask))
    free = torch.stack(
        [
            model(lr, u, None, mode="prior", generator=generator, projection="none")[0]
            for _ in range(samples)
        ]
    )
    unit = torch.stack(
        [
            model.sr.decode(
                h,
                lr,
                u_full,
                mask,
                torch.randn(B, T, model.latent_channels, n, n, generator=generator),
                "hard",
            )
            for _ in range(samples)
        ]
    )
    return {
        "spread_ratio_unprojected": spread_ratio(free),
        "spread_ratio_unit_z": spread_ratio(unit),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="folder from `paperzoo-advdiffsr simulate`")
    parser.add_argument("--out", default="rwae_latent_audit.json")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--bandwidths", default="unit,prior")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = Path(args.data)
    train, test = load_lr(data / "train_lr.npz"), load_lr(data / "test_lr.npz")
    truth = EvalDataset(data / "test_hr.npz").hr[:, MID_WINDOW]  # for the record, never a choice
    base = TrainConfig(
        preset="small", arm="rwae", steps=args.steps, window=min(16, train.frames), seed=0
    )
    record = {"steps": args.steps, "samples": args.samples, "bandwidths": {}}
    for bandwidth in args.bandwidths.split(","):
        started = time.perf_counter()
        model = train_sr(train, replace(base, mmd_bandwidth=bandwidth)).model
        scores = latent_diagnostics(model, test)
        scores.update(decoder_response(model, test.subset(range(4)), 8, seed=0))
        members = sample_ensemble(model, test, args.samples, seed=0)
        mid = members[:, :, MID_WINDOW].double()
        scores.update(
            spread_ratio=spread_ratio(members),
            mean_spread=float(mid.std(0).mean()),
            mean_rmse=float((mid.mean(0) - truth).pow(2).mean().sqrt()),
            field_std=float(members.mean(0).std()),
            coverage_50=M.coverage(mid, truth, 0.5),
            coverage_90=M.coverage(mid, truth, 0.9),
            crps=M.crps_fair(mid, truth),
            rel_l2=M.rel_l2(mid.mean(0), truth),
            seconds=time.perf_counter() - started,
        )
        record["bandwidths"][bandwidth] = scores
        print(bandwidth, json.dumps(scores), flush=True)
    atomic_write_text(args.out, json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
