"""Cost against grid size (spec section 6): simulator time per observation interval and one
training step of the ``small`` physics network for N in {32, 64, 128} at s = 4, as ratios to
N = 32 measured in the same process; spectral against fd4 residual cost. Writes a JSON record.

    uv run python packages/advdiffsr/benchmarks/cost_vs_grid.py --out cost_vs_grid.json
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time
from pathlib import Path

import torch

from paperzoo.advdiffsr.model import create_model
from paperzoo.advdiffsr.operators import advdiff_residual
from paperzoo.advdiffsr.simulator import SpectralAdvDiff, cellular_velocity, puffs
from paperzoo.core.results import atomic_write_text


def _best(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def measure(N: int, repeats: int, batch: int = 4, window: int = 16) -> dict:
    u = cellular_velocity(N)
    solver = SpectralAdvDiff(N, 0.005, u[0])
    c0 = puffs(N, generator=torch.Generator().manual_seed(0))
    simulate = _best(lambda: solver.step(c0, 0.025, solver.substeps_for(0.025)), repeats)

    model = create_model("small")
    lr = torch.rand(batch, window, N // 4, N // 4, generator=torch.Generator().manual_seed(0))
    uf = u[None].float()
    model.set_normalisation(lr, uf)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step():
        optimizer.zero_grad(set_to_none=True)
        c = model(lr, uf)
        loss = advdiff_residual(c, uf, 0.005, 0.025).pow(2).mean()
        loss.backward()
        optimizer.step()

    train_step = _best(step, repeats)
    field = torch.rand(batch, window, N, N, generator=torch.Generator().manual_seed(1))
    spectral = _best(lambda: advdiff_residual(field, uf, 0.005, 0.025, "spectral"), repeats)
    fd4 = _best(lambda: advdiff_residual(field, uf, 0.005, 0.025, "fd4"), repeats)
    return {
        "N": N,
        "simulate_interval_s": simulate,
        "train_step_s": train_step,
        "residual_spectral_s": spectral,
        "residual_fd4_s": fd4,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="cost_vs_grid.json")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = [measure(N, args.repeats) for N in (32, 64, 128)]
    base = rows[0]
    for row in rows:
        row["simulate_ratio"] = row["simulate_interval_s"] / base["simulate_interval_s"]
        row["train_step_ratio"] = row["train_step_s"] / base["train_step_s"]
        row["spectral_over_fd4"] = row["residual_spectral_s"] / row["residual_fd4_s"]
    record = {
        "benchmark": "cost_vs_grid",
        "threads": args.threads,
        "torch": torch.__version__,
        "machine": platform.machine(),
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rows": rows,
    }
    atomic_write_text(Path(args.out), json.dumps(record, indent=2) + "\n")
    for row in rows:
        print(
            f"N {row['N']:4d}: simulate x{row['simulate_ratio']:.2f}, train step x{row['train_step_ratio']:.2f} "
            f"({row['train_step_s'] * 1e3:.0f} ms), spectral/fd4 residual {row['spectral_over_fd4']:.2f}"
        )


if __name__ == "__main__":
    main()
