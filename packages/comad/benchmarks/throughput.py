"""Throughput of ComAD + PatchCore (spec section 6): images per second for fit and score at
PatchCore coreset ratios {0.01, 0.1, 0.25, 1.0}; score time and AUROC as ratios to the full
bank in the same process; the local CRF against no CRF. Writes one JSON record.

    uv run python packages/comad/benchmarks/throughput.py --out bench.json [--overwrite]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch


def _timed(function):
    started = time.perf_counter()
    value = function()
    return value, time.perf_counter() - started


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="throughput.json")
    parser.add_argument("--train", type=int, default=20)
    parser.add_argument("--test", type=int, default=20)
    parser.add_argument("--category", default="tray")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    args = parser.parse_args(argv)
    if args.train < 6 or args.test < 4:
        parser.error("--train must be >= 6 and --test >= 4")
    if Path(args.out).exists() and not args.overwrite:
        parser.error(f"--out {args.out} already exists; choose another file or pass --overwrite")
    torch.set_num_threads(args.threads)

    from paperzoo.comad.data import LocoCategory
    from paperzoo.comad.metrics import loco_auroc
    from paperzoo.comad.model import create_model
    from paperzoo.comad.synth import SplitSizes, generate_category

    record: dict = {"category": args.category, "threads": args.threads, "train": args.train}
    with tempfile.TemporaryDirectory() as tmp:
        half, quarter = args.test // 2, max(1, args.test // 4)
        generate_category(tmp, args.category, 0, SplitSizes(args.train, 6, half, quarter, quarter))
        loco = LocoCategory(tmp, args.category)
        train, val, test = loco.train(), loco.val(), loco.test()
        runs = {}
        for ratio in (0.01, 0.1, 0.25, 1.0):
            model = create_model("offline", patchcore_ratio=ratio)
            _, fit_s = _timed(lambda m=model: m.fit(train.images, val.images))
            x, _ = model._inputs(test.images)
            (structural, _), score_s = _timed(lambda m=model, x=x: m.patchcore.score(x))
            aurocs = loco_auroc(structural.numpy(), test.kinds)
            runs[ratio] = {
                "fit_images_per_s": len(train) / fit_s,
                "patchcore_score_s": score_s,
                "bank": int(model.patchcore.bank.shape[0]),
                "patchcore_mean_auroc": aurocs["mean"],
            }
        full = runs[1.0]
        for ratio, run in runs.items():
            run["score_time_vs_full"] = run["patchcore_score_s"] / full["patchcore_score_s"]
            run["auroc_vs_full"] = run["patchcore_mean_auroc"] / full["patchcore_mean_auroc"]
            record[f"ratio_{ratio:g}"] = run
        model = create_model("offline")
        model.fit(train.images, val.images)
        _, score_s = _timed(lambda: model.score(test.images))
        record["score_images_per_s"] = len(test) / score_s
        x, _ = model._inputs(test.images)
        segmenter = model.segmenter
        _, local_s = _timed(lambda: segmenter.grey_maps(x))
        from paperzoo.comad.crf import NoCRF

        crf = segmenter.crf
        segmenter.crf = NoCRF(crf.params)
        _, none_s = _timed(lambda: segmenter.grey_maps(x))
        segmenter.crf = crf
        record["stage_a_s_per_image_local_crf"] = local_s / len(test)
        record["stage_a_s_per_image_no_crf"] = none_s / len(test)
        record["local_crf_time_ratio"] = local_s / none_s
        _, feat_s = _timed(lambda: model.featuriser(x))
        record["featuriser_s_per_image"] = feat_s / len(test)
    from paperzoo.core.results import atomic_write_text

    atomic_write_text(args.out, json.dumps(record, indent=2, sort_keys=True) + "\n")
    print(json.dumps(record, indent=2, sort_keys=True))
    return record


if __name__ == "__main__":
    main()
