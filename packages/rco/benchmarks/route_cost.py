"""Benchmark the route's cost (spec section 5) and write a JSON record.

    python packages/rco/benchmarks/route_cost.py --out runs/rco-bench [--epochs 10 --repeats 3]

Ratios are against a baseline run in the same process: teacher time per epoch with vs without
the RouteRecorder, RCO vs KD distillation throughput, and greedy-selection time against the
number of candidate checkpoints. Not a test.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import torch

from paperzoo.core.results import atomic_write_text
from paperzoo.core.runtime import torch_threads
from paperzoo.rco.benchmark import route_cost


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/rco-bench"))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with torch_threads(args.threads):
        record = route_cost(args.out, epochs=args.epochs, repeats=args.repeats)
    record.update({"torch": torch.__version__, "threads": args.threads,
                   "machine": platform.machine(), "python": platform.python_version()})
    path = atomic_write_text(args.out / "route_cost.json", json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
