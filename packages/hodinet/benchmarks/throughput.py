"""Throughput and peak memory of HODINet against add fusion with the same encoders (spec section 6).

For each (preset, input size): images per second at inference (batch 1 and 8) and for a training
step (batch 4), HODINet and add fusion timed in the same process (the ratio is the cost of the
high-order fusion); peak memory of each model in a fresh subprocess (peak RSS on the CPU, CUDA peak
on a GPU). One JSON record per configuration in ``--out`` (default
``benchmarks/results/throughput.json``, the recorded results: an existing file is refused unless
``--overwrite``; the file is written atomically).

    python packages/hodinet/benchmarks/throughput.py --configs tiny:64 tiny:96 tiny:128 paper:224 paper:384
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

BASELINE = {"tiny": "add_fusion_tiny", "paper": "add_fusion"}


def _build(preset: str, size: int):
    from paperzoo.hodinet.model import create_model

    overrides = {"img_size": size}
    if preset in ("paper", "add_fusion"):
        overrides["window_size"] = 7 if size % 224 == 0 else 12
    else:
        overrides["window_size"] = _fitting_window(size, preferred=4)
    return create_model(preset, **overrides)


def _fitting_window(size: int, preferred: int) -> int:
    """Largest Swin window <= ``preferred`` that tiles every stage grid (size/4 ... size/32).

    The tiny preset's window 4 does not tile 96 px (stage grid 6); window 3 does.
    """
    grids = [size // stride for stride in (4, 8, 16, 32)]
    for window in range(preferred, 0, -1):
        if all(grid % window == 0 or grid <= window for grid in grids):
            return window
    return 1


def _speed(preset: str, size: int, device: str, repeats: int) -> dict:
    import torch

    from paperzoo.hodinet.loss import hybrid_loss

    model = _build(preset, size).to(device)
    result = {}
    for batch in (1, 8):
        rgb, depth = torch.rand(batch, 3, size, size, device=device), torch.rand(batch, 1, size, size, device=device)
        model.eval()
        with torch.no_grad():
            model(rgb, depth)
            started = time.perf_counter()
            for _ in range(repeats):
                model(rgb, depth)
            if device == "cuda":
                torch.cuda.synchronize()
        result[f"infer_b{batch}_img_per_s"] = batch * repeats / (time.perf_counter() - started)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), 1e-4)
    rgb, depth = torch.rand(4, 3, size, size, device=device), torch.rand(4, 1, size, size, device=device)
    gt = (torch.rand(4, 1, size, size, device=device) > 0.5).float()
    for k in range(repeats + 1):
        if k == 1:
            started = time.perf_counter()
        loss = hybrid_loss(model(rgb, depth)["side"], gt)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    if device == "cuda":
        torch.cuda.synchronize()
    result["train_b4_img_per_s"] = 4 * repeats / (time.perf_counter() - started)
    result["params_m"] = sum(p.numel() for p in model.parameters()) / 1e6
    return result


def _memory(preset: str, size: int, device: str) -> float:
    """Peak memory (MiB) of one forward/backward at batch 4, measured in this fresh process."""
    import resource

    import torch

    from paperzoo.hodinet.loss import hybrid_loss

    model = _build(preset, size).to(device)
    rgb, depth = torch.rand(4, 3, size, size, device=device), torch.rand(4, 1, size, size, device=device)
    gt = torch.zeros(4, 1, size, size, device=device)
    hybrid_loss(model(rgb, depth)["side"], gt).backward()
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    preset, size = args.child.split(":")
    if args.memory:
        print(json.dumps({"peak_mib": _memory(preset, int(size), args.device)}))
        return
    record = {"preset": preset, "img_size": int(size), "device": args.device, "threads": args.threads}
    for label, name in (("addfusion", BASELINE[preset]), ("hodinet", preset)):
        for key, value in _speed(name, int(size), args.device, args.repeats).items():
            record[f"{label}_{key}"] = value
    print(json.dumps(record))


def _run(argv: list[str]) -> dict:
    output = subprocess.run([sys.executable, __file__, *argv], capture_output=True, text=True, check=True)
    return json.loads(output.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=["tiny:64", "tiny:96", "tiny:128", "paper:224", "paper:384"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "throughput.json"))
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--memory", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args)
        return
    out = Path(args.out)
    if out.exists() and not args.overwrite:  # before any timing: the default is the recorded file
        raise SystemExit(f"--out {out} already exists (the default is the recorded results); "
                         "choose another --out or pass --overwrite")
    for config in args.configs:
        preset, _, size = config.partition(":")
        if preset not in BASELINE or not size.isdigit():
            raise SystemExit(f"bad config {config!r}; use tiny:<size> or paper:<size>")
    common = ["--device", args.device, "--threads", str(args.threads), "--repeats", str(args.repeats)]
    records = []
    for config in args.configs:
        preset, _ = config.split(":")
        record = _run(["--child", config, *common])
        for label, name in (("addfusion", BASELINE[preset]), ("hodinet", preset)):
            size = config.split(":")[1]
            record[f"{label}_peak_mib"] = _run(["--child", f"{name}:{size}", "--memory", *common])["peak_mib"]
        for key in ("infer_b1_img_per_s", "infer_b8_img_per_s", "train_b4_img_per_s", "peak_mib"):
            record[f"ratio_{key}"] = record[f"hodinet_{key}"] / record[f"addfusion_{key}"]
        print(json.dumps(record), flush=True)
        records.append(record)
    from paperzoo.core.results import atomic_write_text

    atomic_write_text(out, json.dumps(records, indent=2) + "\n")  # creates the folder too


if __name__ == "__main__":
    main()
