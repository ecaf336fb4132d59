"""Spec section 4's calibration probe, rebuilt and run on the package's generator.

The spec calibrated its pass lines with a throw-away probe: "tiny CNN encoders, top-down decoder,
batch 16, Adam 2e-3, one seed ... RGB + fixed SRM stream, add fusion, 400 steps (about 30 s):
F1 0.76, AUC 0.98, image AUC 0.96". This script builds that probe (``ProbeNet``) and trains it,
and optionally the package's own arms, on the data the validation draws (1,600 train images with
seed 0, 300 test images with seed 1) or on a variant of the generator, so the two can be compared
on identical data and the generator's share of the gap can be measured. Every model is trained by
the package's ``train_localizer`` (the same loss, optimiser, schedule and augmentation as
``validate``) and scored by ``evaluate_localizer``; test scores are also split by whether the
whole-image JPEG 90-95 (spec section 3, probability 0.5) was applied.

    python packages/tripinet/benchmarks/calibration_probe.py --out probe.json \\
        [--models probe probe_clip full nofreq] [--seeds 0 1 2] [--steps 400] \\
        [--final-jpeg-prob 0.5] [--jpeg-subsampling 0|1|2] [--force]

One torch thread; one JSON record per (model, seed) in a list, written atomically; an existing
``--out`` is refused unless ``--force``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from paperzoo.core.results import atomic_write_text
from paperzoo.tripinet.traces import SRMFilter

PROBES = {
    "probe": {"streams": ("rgb", "srm"), "clip": None},
    "probe_clip": {"streams": ("rgb", "srm"), "clip": 10.0},
    "probe_rgb": {"streams": ("rgb",), "clip": None},
}
PACKAGE_ARMS = ("rgb", "nofreq", "nonoise", "plain", "full")


def _cbr(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class TinyEncoder(nn.Module):
    """Plain CBR stack: a stride-4 stem of two 3x3 convolutions, then one CBR per level
    (strides 4, 8, 16, 32; widths 16, 32, 48, 64, the `tiny` preset's stage widths)."""

    def __init__(self, in_channels: int, widths: tuple[int, ...] = (16, 32, 48, 64)) -> None:
        super().__init__()
        self.stem = nn.Sequential(_cbr(in_channels, widths[0], 2), _cbr(widths[0], widths[0], 2))
        self.levels = nn.ModuleList(
            [_cbr(widths[0], widths[0])] + [_cbr(widths[i - 1], widths[i], 2) for i in (1, 2, 3)]
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        features = []
        for level in self.levels:
            x = level(x)
            features.append(x)
        return features


class ProbeNet(nn.Module):
    """The spec's calibration probe: one tiny CNN encoder per stream (RGB, and the fixed SRM
    residuals of the 0-255 image), per-level 1x1 projections added (add fusion), a top-down
    decoder (``D_i = CBR(F_i + up(D_{i+1}))``), a 3x3 head per level, the D1 head upsampled x4.
    ``clip`` truncates the SRM residuals like the package's ``residual_clip``."""

    def __init__(
        self,
        streams: tuple[str, ...] = ("rgb", "srm"),
        clip: float | None = None,
        channels: int = 32,
        widths: tuple[int, ...] = (16, 32, 48, 64),
    ) -> None:
        super().__init__()
        self.streams, self.clip = tuple(streams), clip
        self.srm = SRMFilter()
        self.encoders = nn.ModuleDict(
            {s: TinyEncoder(3 if s == "rgb" else 9, widths) for s in self.streams}
        )
        self.projections = nn.ModuleDict(
            {s: nn.ModuleList([nn.Conv2d(w, channels, 1) for w in widths]) for s in self.streams}
        )
        self.decoder = nn.ModuleList([_cbr(channels, channels) for _ in widths])
        self.heads = nn.ModuleList([nn.Conv2d(channels, 1, 3, 1, 1) for _ in widths])

    def forward(self, x: torch.Tensor) -> dict:
        fused: list[torch.Tensor] | None = None
        for stream in self.streams:
            inputs = x if stream == "rgb" else self.srm(x)
            if stream == "srm" and self.clip is not None:
                inputs = inputs.clamp(-self.clip, self.clip)
            features = [
                p(f) for p, f in zip(self.projections[stream], self.encoders[stream](inputs))
            ]
            fused = features if fused is None else [a + b for a, b in zip(fused, features)]
        assert fused is not None
        decoded = [self.decoder[3](fused[3])]
        for i in (2, 1, 0):
            up = F.interpolate(decoded[0], size=fused[i].shape[-2:], mode="bilinear")
            decoded.insert(0, self.decoder[i](fused[i] + up))
        logits = [head(d) for head, d in zip(self.heads, decoded)]
        mask = F.interpolate(logits[0], scale_factor=4, mode="bilinear")
        return {"mask_logits": mask, "side_logits": logits[1:], "image_logit": mask.amax((1, 2, 3))}


def build(name: str, preset: str = "tiny") -> nn.Module:
    if name in PROBES:
        return ProbeNet(**PROBES[name])
    from paperzoo.tripinet.model import create_model
    from paperzoo.tripinet.validation import ARMS

    return create_model(preset, **ARMS[name])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--models", nargs="+", default=["probe", "probe_clip"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--num-train", type=int, default=1600)
    parser.add_argument("--num-test", type=int, default=300)
    parser.add_argument("--final-jpeg-prob", type=float, default=0.5)
    parser.add_argument("--jpeg-subsampling", type=int, default=None, choices=(0, 1, 2))
    parser.add_argument("--force", action="store_true", help="overwrite an existing --out")
    args = parser.parse_args(argv)
    unknown = [m for m in args.models if m not in PROBES and m not in PACKAGE_ARMS]
    if unknown:
        parser.error(f"unknown --models {unknown}; choose from {[*PROBES, *PACKAGE_ARMS]}")
    if args.out.exists() and not args.force:
        parser.error(f"{args.out} exists; pass --force to overwrite it")

    from torch.utils.data import DataLoader

    from paperzoo.tripinet.data import ForgeryDataset
    from paperzoo.tripinet.forgery import ForgeryGenerator
    from paperzoo.tripinet.pipeline import evaluate_localizer, train_localizer

    torch.set_num_threads(1)
    generator_options = {
        "final_jpeg_prob": args.final_jpeg_prob,
        "jpeg_subsampling": args.jpeg_subsampling,
    }
    train_set = ForgeryGenerator("train", **generator_options).generate(args.num_train, 0)
    test_set = ForgeryGenerator("test", **generator_options).generate(args.num_test, 1)
    compressed = [i for i, q in enumerate(test_set.final_jpeg) if q > 0]
    uncompressed = [i for i, q in enumerate(test_set.final_jpeg) if q == 0]
    splits = {"test": test_set}
    if compressed and uncompressed:
        splits["test_final_jpeg"] = test_set.subset(compressed)
        splits["test_no_final_jpeg"] = test_set.subset(uncompressed)

    def scores(net, forgeries) -> dict:
        loader = DataLoader(ForgeryDataset(forgeries), batch_size=50)
        return {k: round(float(v), 4) for k, v in evaluate_localizer(net, loader).metrics.items()}

    records = []
    for name in args.models:
        for seed in args.seeds:
            torch.manual_seed(seed)
            net = build(name)
            loader = DataLoader(
                ForgeryDataset(train_set, augment=True, seed=seed),
                batch_size=16,
                shuffle=True,
                drop_last=True,
                generator=torch.Generator().manual_seed(seed),
            )
            started = time.perf_counter()
            result = train_localizer(
                net, loader, steps=args.steps, lr=2e-3, seed=seed, progress_bar=False
            )
            record = {
                "model": name,
                "seed": seed,
                "steps": args.steps,
                "train_seconds": round(result.seconds, 1),
                "wall_seconds": round(time.perf_counter() - started, 1),
                "parameters": sum(p.numel() for p in net.parameters()),
                "generator": generator_options,
                "num_train": args.num_train,
                "num_test": args.num_test,
                "test_images_final_jpeg": len(compressed),
            }
            for split, forgeries in splits.items():
                record[split] = scores(net, forgeries)
            record["train"] = {
                k: v for k, v in scores(net, train_set).items() if k in ("f1", "auc", "image_auc")
            }
            records.append(record)
            print(json.dumps(record), flush=True)
    atomic_write_text(args.out, json.dumps(records, indent=1) + "\n")


if __name__ == "__main__":
    main()
