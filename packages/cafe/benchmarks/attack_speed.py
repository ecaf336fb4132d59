"""Attack speed: CAFE iterations per second and iterations / seconds to reach 30 dB against batch
size and party count, the closed form against GD as a ratio, and the fake-gradient upload cost
against a plain upload. Every ratio compares runs made in the same process. Writes a JSON record.

    python packages/cafe/benchmarks/attack_speed.py --out runs/cafe-bench.json [--iters 2000]
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch
from torch.utils.benchmark import Timer

from paperzoo.cafe.config import CafeConfig, DefenseConfig, Scenario
from paperzoo.cafe.pipeline import build_run, run_cafe
from paperzoo.core.results import atomic_write_text


def _time_to(trace: list[tuple[int, float, float]], target_db: float) -> tuple[int | None, float | None]:
    for iteration, seconds, psnr in trace:
        if psnr >= target_db:
            return iteration, seconds
    return None, None


def _cafe_point(scenario: Scenario, iters: int, solver: str = "gd") -> dict:
    result = run_cafe(scenario, iters=iters, config=CafeConfig(solver=solver, seed=scenario.seed),
                      track_every=25)
    iteration, seconds = _time_to(result.trace, 30.0)
    return {"iters_per_s": result.metrics["iters_per_s"], "final_psnr_db": result.metrics["psnr_db"],
            "iters_to_30db": iteration, "seconds_to_30db": seconds}


def _upload_seconds(defense: str, threads: int, rounds: int = 60) -> float:
    """Median seconds of one protocol round (torch.utils.benchmark.Timer: warm-up, then
    ``rounds`` timed runs)."""
    run = build_run(Scenario(defense=DefenseConfig(defense)))
    timer = Timer(stmt="vfl.round()", globals={"vfl": run.vfl}, num_threads=threads,
                  label="protocol round", sub_label=defense)
    return float(timer.timeit(rounds).median)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/cafe-bench/attack_speed.json"))
    parser.add_argument("--iters", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    record: dict = {"machine": platform.processor() or platform.machine(), "threads": args.threads,
                    "torch": torch.__version__, "iters": args.iters, "n_samples": 80}
    record["batch_size"] = {k: _cafe_point(Scenario(batch_size=k), args.iters) for k in (10, 20, 40)}
    record["parties"] = {m: _cafe_point(Scenario(parties=m), args.iters) for m in (2, 4, 8)}
    gd, lstsq = record["batch_size"][40], _cafe_point(Scenario(batch_size=40), args.iters, "lstsq")
    record["lstsq_k40"] = lstsq
    record["lstsq_vs_gd"] = {
        "iters_per_s_ratio": lstsq["iters_per_s"] / gd["iters_per_s"],
        "time_to_30db_ratio": (lstsq["seconds_to_30db"] / gd["seconds_to_30db"]
                               if lstsq["seconds_to_30db"] and gd["seconds_to_30db"] else None),
    }
    plain, fake = _upload_seconds("none", args.threads), _upload_seconds("fake", args.threads)
    record["upload_seconds"] = {"plain": plain, "fake": fake, "fake_vs_plain": fake / plain}
    atomic_write_text(args.out, json.dumps(record, indent=2, default=str) + "\n")
    print(json.dumps(record, indent=2, default=str))


if __name__ == "__main__":
    main()
