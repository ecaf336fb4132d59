"""Throughput and peak memory of TriPINet vs its RGB-only model (same preset, same process), and
gCMDA's share of the forward time (spec section 6). Writes one JSON record.

    python packages/tripinet/benchmarks/throughput.py --out bench.json [--sizes 64 128 256 512]
        [--presets tiny paper] [--batch 4] [--repeats 3] [--device cpu] [--overwrite]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from paperzoo.core.results import atomic_write_text
from paperzoo.tripinet.model import GCMDA, create_model


def _timed(fn, repeats: int, device: str) -> float:
    fn()  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - started) / repeats


def _peak_bytes(fn, device: str) -> int:
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        fn()
        return int(torch.cuda.max_memory_allocated())
    import resource  # CPU: growth of the process's RSS high-water mark (0 when below an earlier peak)

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    fn()
    return int(max(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)


def _gcmda_share(net, forward, device: str) -> float:
    spent: list[float] = []
    hooks = []
    for module in net.modules():
        if isinstance(module, GCMDA):
            hooks.append(
                module.register_forward_pre_hook(lambda m, a: spent.append(-time.perf_counter()))
            )
            hooks.append(
                module.register_forward_hook(lambda m, a, o: spent.append(time.perf_counter()))
            )
    total = _timed(forward, 1, device)
    for hook in hooks:
        hook.remove()
    return sum(spent[-len(hooks) :]) / total if hooks else 0.0


def _arm(net, x, batch: int, repeats: int, device: str, prefix: str) -> dict:
    def forward():
        with torch.no_grad():
            net.eval()(x)

    def train_step():
        net.train()
        net(x)["mask_logits"].mean().backward()

    record = {
        f"{prefix}_forward_ips": batch / _timed(forward, repeats, device),
        f"{prefix}_train_ips": batch / _timed(train_step, repeats, device),
        f"{prefix}_train_peak_bytes": _peak_bytes(train_step, device),
    }
    if prefix == "full":
        record["gcmda_share_of_forward"] = _gcmda_share(net, forward, device)
    return record


def measure(preset: str, size: int, batch: int, repeats: int, device: str) -> dict:
    x = torch.rand(batch, 3, size, size, device=device)
    record: dict = {"preset": preset, "size": size, "batch": batch}
    for arm, overrides in (("rgb", {"streams": ("rgb",), "fusion": "plain"}), ("full", {})):
        record.update(
            _arm(create_model(preset, **overrides).to(device), x, batch, repeats, device, arm)
        )
    record["full_over_rgb_forward_time"] = record["rgb_forward_ips"] / record["full_forward_ips"]
    record["full_over_rgb_train_time"] = record["rgb_train_ips"] / record["full_train_ips"]
    return record


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="throughput.json")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256, 512])
    parser.add_argument("--presets", nargs="+", default=["tiny", "paper"])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    args = parser.parse_args(argv)
    if any(s < 32 or s % 32 for s in args.sizes):
        raise SystemExit(f"--sizes must be multiples of 32, got {args.sizes}")
    if Path(args.out).exists() and not args.overwrite:
        parser.error(f"--out {args.out} already exists; choose another file or pass --overwrite")
    torch.set_num_threads(args.threads)
    records = [
        measure(p, s, args.batch, args.repeats, args.device)
        for p in args.presets
        for s in args.sizes
    ]
    payload = {
        "device": args.device,
        "threads": args.threads,
        "torch": torch.__version__,
        "records": records,
    }
    atomic_write_text(Path(args.out), json.dumps(payload, indent=1) + "\n")
    for r in records:
        print(
            f"{r['preset']:5s} {r['size']:4d}px  full/rgb time fwd {r['full_over_rgb_forward_time']:.2f} "
            f"train {r['full_over_rgb_train_time']:.2f}  full fwd {r['full_forward_ips']:.1f} img/s  "
            f"gCMDA {r['gcmda_share_of_forward']:.1%}"
        )


if __name__ == "__main__":
    main()
