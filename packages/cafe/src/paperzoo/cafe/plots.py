"""PNG figures: true vs recovered grids, the privacy/utility trade-off, the training-lr regime.
Written atomically under the run's output folder (matplotlib, Agg backend)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from paperzoo.core.results import atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> Path:
    """Lay out, write ``fig`` as PNG atomically, close it."""
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    _pyplot().close(fig)
    return Path(path)


def _show(ax, image: torch.Tensor) -> None:
    image = image.detach().float().clamp(0, 1).cpu()
    if image.shape[0] == 1:
        ax.imshow(image[0].numpy(), cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(image.permute(1, 2, 0).numpy())
    ax.set_xticks([])
    ax.set_yticks([])


def save_recon_grid(path: str | Path, rows: Mapping[str, torch.Tensor], max_images: int = 16,
                    title: str | None = None) -> Path:
    """One row of images per entry of ``rows`` (e.g. ``{"true": x, "CAFE": x_hat}``)."""
    plt = _pyplot()
    count = min(max_images, min(len(v) for v in rows.values()))
    fig, axes = plt.subplots(len(rows), count, figsize=(0.8 * count + 1, 0.9 * len(rows) + 0.4), squeeze=False)
    for r, (name, images) in enumerate(rows.items()):
        for c in range(count):
            _show(axes[r][c], images[c])
        axes[r][0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def save_tradeoff_plot(path: str | Path, points: Sequence[Mapping[str, float | str]]) -> Path:
    """Privacy/utility: CAFE PSNR (lower is more private) against VFL test accuracy, one
    series per defence; each point labelled with its setting."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.2))
    markers = {"none": "*", "fake": "o", "noise": "s", "prune": "^", "dp": "D"}
    for defense in dict.fromkeys(str(p["defense"]) for p in points):
        series = [p for p in points if p["defense"] == defense]
        ax.scatter([p["test_acc"] for p in series], [p["psnr_db"] for p in series],
                   marker=markers.get(defense, "x"), s=60 if defense == "none" else 36, label=defense)
        for p in series:
            ax.annotate(str(p.get("setting", "")), (p["test_acc"], p["psnr_db"]), fontsize=6,
                        xytext=(3, 3), textcoords="offset points")
    ax.axhline(20, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("VFL test accuracy (digits, trained with the defence)")
    ax.set_ylabel("CAFE mean PSNR (dB)")
    ax.set_title("Defences: privacy vs utility", fontsize=10)
    ax.legend(fontsize=8)
    return _save(fig, path)


def save_curve_plot(path: str | Path, x: Sequence[float], series: Mapping[str, Sequence[float]],
                    xlabel: str, ylabel: str = "mean PSNR (dB)", logx: bool = False,
                    title: str | None = None) -> Path:
    """Lines of ``series`` against ``x`` (sweeps over lr, batch size, party count)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    positions = list(range(len(x))) if logx else list(x)
    for name, values in series.items():
        ax.plot(positions, list(values), marker="o", label=name)
    if logx:
        ax.set_xticks(positions, [f"{v:g}" for v in x])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    return _save(fig, path)


def save_trace_plot(path: str | Path, traces: Mapping[str, Sequence[tuple[int, float, float]]]) -> Path:
    """PSNR against iteration for several attack runs."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for name, trace in traces.items():
        if trace:
            ax.plot([t[0] for t in trace], [t[2] for t in trace], label=name)
    ax.set_xlabel("attack iteration")
    ax.set_ylabel("mean PSNR (dB)")
    ax.legend(fontsize=8)
    return _save(fig, path)
