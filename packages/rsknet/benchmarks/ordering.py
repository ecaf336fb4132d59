"""The spec's ordering over several seeds (section 6): the six tiny models trained and scored per
seed (section 5's recipe), mean +- std of EER, and a paired bootstrap over test speakers
(1,000 resamples; a trial's weight is the product of its two speakers' draw counts): the EER
difference of each expected pair, its 95 % interval and the share of resamples keeping the
expected order. Reported as observed; writes JSON and Markdown.

    uv run python packages/rsknet/benchmarks/ordering.py --seeds 3 --corpus runs/rsknet-corpus

Seeds can run in separate processes and be merged (the table and JSON are the same):

    ordering.py --seed_values 0 --out runs/ord0 &  ordering.py --seed_values 1 --out runs/ord1 & ...
    ordering.py --merge runs/ord0 runs/ord1 runs/ord2 --out runs/rsknet-ordering
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from paperzoo.core.results import atomic_write_text, markdown_table
from paperzoo.rsknet.data import read_trials
from paperzoo.rsknet.metrics import speaker_bootstrap
from paperzoo.rsknet.synth import make_corpus, read_corpus_info
from paperzoo.rsknet.validation import ValidationConfig, run_validation

EXPECTED = [("rsknet_mtsp", "rsknet_tstp"), ("rsknet_mtsp", "resnet_mtsp"), ("rsknet_tstp", "resnet_tstp"),
            ("resnet_mtsp", "resnet_tstp"), ("resnet_tstp", "xvector"), ("rsknet_mtsp", "resnet_tstp"),
            ("rsknet_mtsp", "xvector")]


def bootstrap(curves: dict, trials_path: Path, resamples: int, seed: int) -> dict:
    """The package's paired speaker bootstrap over every expected pair of one seed's scores."""
    trials = read_trials(trials_path)
    return speaker_bootstrap(curves, trials.enroll, trials.test, EXPECTED, resamples, seed)


def summarise(per_seed: list[dict], boot: dict, out: Path) -> None:
    """Mean +- std of EER per model over seeds; writes ordering.json and ordering.md in ``out``."""
    rows = []
    for arch in ValidationConfig().models:
        values = np.array([m[f"eer_{arch}"] for m in per_seed])
        rows.append({"model": arch, "seeds": len(values), "EER % mean": values.mean(),
                     "std": values.std(ddof=1) if len(values) > 1 else 0.0})
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "ordering.json", json.dumps({"per_seed": per_seed, "bootstrap": boot}, indent=1))
    atomic_write_text(out / "ordering.md", markdown_table(rows, floatfmt=".2f"))
    print(markdown_table(rows, floatfmt=".2f"))
    print(json.dumps(boot, indent=1))


def merge(folders: list[Path]) -> tuple[list[dict], dict]:
    """Concatenate the seeds of several runs' ordering.json (each seed at most once)."""
    per_seed, boot = [], {}
    for folder in folders:
        path = folder / "ordering.json"
        if not path.is_file():
            raise FileNotFoundError(f"--merge: {path} does not exist")
        record = json.loads(path.read_text())
        for key, metrics in zip(record["bootstrap"], record["per_seed"], strict=True):
            if key in boot:
                raise ValueError(f"--merge: {key} appears in more than one run ({path})")
            boot[key] = record["bootstrap"][key]
            per_seed.append(metrics)
    return per_seed, boot


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/rsknet-ordering")
    parser.add_argument("--corpus", default="runs/rsknet-corpus")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--seed_values", type=int, nargs="+", default=None,
                        help="run exactly these seeds (default: 0 .. seeds-1)")
    parser.add_argument("--merge", type=Path, nargs="+", default=None,
                        help="combine the ordering.json of runs made with --seed_values")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if args.merge:
        summarise(*merge(args.merge), Path(args.out))
        return
    torch.set_num_threads(args.threads)
    corpus = Path(args.corpus)
    info = read_corpus_info(corpus) if (corpus / "corpus.json").is_file() else make_corpus(corpus, "espeak")
    per_seed, boot = [], {}
    for seed in args.seed_values if args.seed_values is not None else range(args.seeds):
        result = run_validation(info.train_root, info.trials, info.test_root,
                                ValidationConfig(epochs=args.epochs), seed=seed)
        per_seed.append({k: v for k, v in result.metrics.items() if k.startswith("eer_")})
        boot[f"seed{seed}"] = bootstrap(result.curves, info.trials, args.resamples, seed)
        print(per_seed[-1], flush=True)
    summarise(per_seed, boot, Path(args.out))


if __name__ == "__main__":
    main()
