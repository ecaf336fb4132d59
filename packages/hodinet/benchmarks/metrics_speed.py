"""Speed of the SOD metrics on the CPU: ``s_measure`` and one ``sod_metrics()`` update + compute on
480x640 and 64x64 batches, and ``evaluate_sod`` (per-kind and overall scores and curves) of
generated scenes with a model that costs next to nothing. Best of ``--repeats`` in milliseconds,
printed as JSON; nothing is written.

    python packages/hodinet/benchmarks/metrics_speed.py --threads 1 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import time


def _best_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return round(1000 * min(times), 2)


def _maps(batch: int, h: int, w: int, seed: int = 0):
    """Noisy maps of random disks (an object in every image, anywhere in it)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    cy, cx = torch.rand(batch, 1, 1, generator=gen) * h, torch.rand(batch, 1, 1, generator=gen) * w
    radius = (0.15 + 0.2 * torch.rand(batch, 1, 1, generator=gen)) * min(h, w)
    gt = (((rows - cy) ** 2 + (cols - cx) ** 2) < radius**2).float()[:, None]
    return (0.6 * gt + 0.4 * torch.rand(batch, 1, h, w, generator=gen)).clamp(0, 1), gt


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--scenes", type=int, default=300, help="generated 64 px scenes for evaluate_sod")
    args = parser.parse_args(argv)

    import torch

    from paperzoo.hodinet import metrics as M
    from paperzoo.hodinet.pipeline import evaluate_sod
    from paperzoo.hodinet.scenes import SyntheticRGBDScenes

    torch.set_num_threads(args.threads)
    result = {"threads": args.threads, "repeats": args.repeats}
    for batch, h, w in ((1, 480, 640), (300, 64, 64)):
        pred, gt = _maps(batch, h, w)

        def update(pred=pred, gt=gt):
            collection = M.sod_metrics()
            collection.update(pred, gt)
            collection.compute()

        result[f"s_measure_{batch}x{h}x{w}_ms"] = _best_ms(lambda p=pred, g=gt: M.s_measure(p, g), args.repeats)
        result[f"sod_metrics_update_compute_{batch}x{h}x{w}_ms"] = _best_ms(update, args.repeats)

    class DepthOnly(torch.nn.Module):  # near is salient: instant maps, so the metrics dominate
        def forward(self, rgb, depth):
            return {"logits": 8 * (depth - 0.5)}

    scenes = SyntheticRGBDScenes(args.scenes, size=64, seed=0)
    result[f"evaluate_sod_{args.scenes}x64_ms"] = _best_ms(lambda: evaluate_sod(DepthOnly(), scenes),
                                                           args.repeats)
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
