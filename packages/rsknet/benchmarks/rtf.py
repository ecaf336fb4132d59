"""Real-time factor of embedding extraction (fbank + network, --threads threads) per model and preset on
2, 10 and 60 s of audio, as ratios to resnet_tstp of the same preset in the same run, plus the
bytes of every module output of one forward pass (activation memory; depthwise convs are
memory-bound). Writes JSON and a Markdown table (spec section 6).

    uv run python packages/rsknet/benchmarks/rtf.py --out runs/rsknet-rtf --presets tiny paper
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from paperzoo.core.results import atomic_write_text, markdown_table
from paperzoo.rsknet.features import Fbank
from paperzoo.rsknet.model import ARCHS, create_model


def activation_bytes(model: torch.nn.Module, x: torch.Tensor) -> int:
    total = 0

    def hook(_module, _inputs, output):
        nonlocal total
        if isinstance(output, torch.Tensor):
            total += output.numel() * output.element_size()

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return total


def measure(name: str, seconds: float, repeats: int) -> tuple[float, float, int]:
    """Wall-clock RTF, CPU-time RTF (this process's CPU seconds per audio second) and activation
    bytes. On a machine shared with other jobs the wall clock counts their time too; with one
    thread the CPU-time RTF is the cost of the extraction itself."""
    model = create_model(name).eval()
    fbank = Fbank(n_mels=model.feat_dim)
    wave = torch.randn(int(seconds * 16000)) * 0.1
    with torch.no_grad():
        model(fbank(wave))  # warm-up
        started, cpu_started = time.perf_counter(), time.process_time()
        for _ in range(repeats):
            model(fbank(wave))
    elapsed = (time.perf_counter() - started) / repeats
    cpu = (time.process_time() - cpu_started) / repeats
    return elapsed / seconds, cpu / seconds, activation_bytes(model, fbank(wave))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/rsknet-rtf")
    parser.add_argument("--presets", nargs="+", default=["tiny", "paper"])
    parser.add_argument("--durations", nargs="+", type=float, default=[2.0, 10.0, 60.0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows, record = [], {}
    for preset in args.presets:
        for seconds in args.durations:
            base_rtf, base_cpu, base_mem = measure(f"resnet_tstp_{preset}", seconds, args.repeats)
            for arch in ARCHS:
                rtf, cpu, mem = (base_rtf, base_cpu, base_mem) if arch == "resnet_tstp" else \
                    measure(f"{arch}_{preset}", seconds, args.repeats)
                key = f"{arch}_{preset}_{seconds:g}s"
                record[key] = {"rtf": rtf, "rtf_ratio": rtf / base_rtf, "cpu_rtf": cpu,
                               "cpu_rtf_ratio": cpu / base_cpu, "activation_mb": mem / 2**20,
                               "activation_ratio": mem / base_mem}
                rows.append({"model": f"{arch}_{preset}", "audio s": seconds, "RTF": rtf,
                             "RTF / resnet_tstp": rtf / base_rtf, "CPU RTF": cpu,
                             "CPU RTF / resnet_tstp": cpu / base_cpu, "activations MB": mem / 2**20,
                             "act. / resnet_tstp": mem / base_mem})
                print(rows[-1], flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "rtf.json", json.dumps({"threads": args.threads, "results": record}, indent=1))
    atomic_write_text(out / "rtf.md", markdown_table(rows, floatfmt=".4f"))
    print(markdown_table(rows, floatfmt=".4f"))


if __name__ == "__main__":
    main()
