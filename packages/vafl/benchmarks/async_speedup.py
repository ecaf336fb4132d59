"""Benchmark (spec section 6): wall-clock time to a target accuracy of the threaded asynchronous
runtime against threaded synchronous VFL, with one straggler (8x slower) and with equal clients,
as ratios; and server messages handled per second against batch size and party count.

    uv run --package paperzoo-vafl python packages/vafl/benchmarks/async_speedup.py --out runs/vafl-bench

Writes one JSON record (``async_speedup.json``) under ``--out``. Not a test.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from paperzoo.core.results import atomic_write_text
from paperzoo.vafl.config import FederationConfig
from paperzoo.vafl.data import load_dataset
from paperzoo.vafl.federation import build_federation
from paperzoo.vafl.simulation import SimRuntime
from paperzoo.vafl.threaded import ThreadedRuntime


def time_to_target(data, delays_ms: str, synchronous: bool, target: float, limit_s: float, seed: int) -> dict:
    federation = build_federation(data, FederationConfig(seed=seed))
    runtime = ThreadedRuntime(delays_ms, limit_s, seed=seed, synchronous=synchronous, eval_every_s=0.1,
                              target_accuracy=target)
    history = runtime.run(federation)
    reached = [t for t, a in zip(history.times, history.accuracy) if a >= target]
    return {"seconds": reached[0] if reached else float("inf"), "reached": bool(reached),
            "final_accuracy": history.final_accuracy, "server_iterations": history.iterations[-1]}


def messages_per_second(batch_size: int, parties: int, budget: int, seed: int) -> float:
    data = load_dataset("digits", parties, "contiguous", seed)
    federation = build_federation(data, FederationConfig(batch_size=batch_size, seed=seed))
    federation.initialise()
    runtime = SimRuntime("exp:1", budget, seed, eval_every=budget)
    start = time.perf_counter()
    runtime.run(federation)
    return budget / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/vafl-bench"))
    parser.add_argument("--target", type=float, default=0.9, help="target test accuracy on digits")
    parser.add_argument("--limit_s", type=float, default=60.0, help="give up after this many seconds")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = load_dataset("digits", 4, seed=args.seed)
    record: dict = {"machine": platform.processor() or platform.machine(), "torch": torch.__version__,
                    "target_accuracy": args.target, "scenarios": {}}
    for name, delays in {"one_straggler": "const:1,1,1,8", "equal": "const:2,2,2,2"}.items():
        async_run = time_to_target(data, delays, False, args.target, args.limit_s, args.seed)
        sync_run = time_to_target(data, delays, True, args.target, args.limit_s, args.seed)
        record["scenarios"][name] = {
            "delays_ms": delays, "async": async_run, "sync": sync_run,
            "speedup_sync_over_async": sync_run["seconds"] / async_run["seconds"],
        }
        print(name, record["scenarios"][name], flush=True)
    record["messages_per_second"] = [
        {"batch_size": b, "parties": m, "per_second": messages_per_second(b, m, 1000, args.seed)}
        for b in (1, 16, 64) for m in (2, 4, 8)
    ]
    for row in record["messages_per_second"]:
        print(row, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "async_speedup.json", json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
