"""PNG figures: true vs recovered grids, the privacy/utility trade-off, the training-lr regime.
Built without pyplot's global state and written atomically with the core's ``save_figure``."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from paperzoo.core.figures import new_figure, save_figure


def _save(fig, path: str | Path) -> Path:
    return save_figure(fig, path)


def _unit(x: torch.Tensor, data_range: tuple[float, float]) -> torch.Tensor:
    low, high = data_range
    return ((x.detach().float().cpu() - low) / (high - low)).clamp(0, 1)


def _show(ax, image: torch.Tensor) -> None:
    if image.shape[0] == 1:
        ax.imshow(image[0].numpy(), cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(image.permute(1, 2, 0).numpy())
    ax.set_xticks([])
    ax.set_yticks([])


def save_recon_grid(path: str | Path, rows: Mapping[str, torch.Tensor], max_images: int = 16,
                    title: str | None = None, data_range: tuple[float, float] = (0.0, 1.0)) -> Path:
    """One row of images per entry of ``rows`` (e.g. ``{"true": x, "CAFE": x_hat}``), shown on
    ``data_range``; tabular ``(N, D)`` samples are drawn as one heat map per entry (samples
    down, features across)."""
    count = min(max_images, min(len(v) for v in rows.values()))
    if next(iter(rows.values())).dim() == 2:
        fig, axes = new_figure(1, len(rows), figsize=(2.6 * len(rows) + 0.5, 3.0), squeeze=False)
        for ax, (name, samples) in zip(axes[0], rows.items()):
            ax.imshow(_unit(samples[:count], data_range).numpy(), cmap="viridis", vmin=0, vmax=1,
                      aspect="auto", interpolation="nearest")
            ax.set_title(name, fontsize=8)
            ax.set_xlabel("feature", fontsize=7)
        axes[0][0].set_ylabel("sample", fontsize=7)
    else:
        fig, axes = new_figure(len(rows), count, figsize=(0.8 * count + 1, 0.9 * len(rows) + 0.4),
                               squeeze=False)
        for r, (name, images) in enumerate(rows.items()):
            for c in range(count):
                _show(axes[r][c], _unit(images[c], data_range))
            axes[r][0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def save_tradeoff_plot(path: str | Path, points: Sequence[Mapping[str, float | str]]) -> Path:
    """Privacy/utility: CAFE PSNR (lower is more private) against VFL test accuracy, one
    series per defence; each point labelled with its setting (a point whose attack or training
    failed, a NaN, is left out)."""
    fig, ax = new_figure(figsize=(6, 4.2))
    markers = {"none": "*", "fake": "o", "noise": "s", "prune": "^", "dp": "D"}
    points = [p for p in points if math.isfinite(p["psnr_db"]) and math.isfinite(p["test_acc"])]  # a failed run: no point
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
    fig, ax = new_figure(figsize=(5.5, 3.8))
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
    fig, ax = new_figure(figsize=(5.5, 3.8))
    for name, trace in traces.items():
        if trace:
            ax.plot([t[0] for t in trace], [t[2] for t in trace], label=name)
    ax.set_xlabel("attack iteration")
    ax.set_ylabel("mean PSNR (dB)")
    ax.legend(fontsize=8)
    return _save(fig, path)


def save_validation_figures(out: str | Path, result) -> list[Path]:
    """The validation's figures (a ``validation.ValidationResult``): reconstructions of CAFE,
    the closed form and DLG, the privacy/utility trade-off, the lr regime, the PSNR traces. A
    figure (or a row of one) whose run failed is left out."""
    out = Path(out)
    attacks = result.attacks
    cafe, lstsq, dlg = attacks.get("cafe"), attacks.get("lstsq"), attacks.get("dlg")
    lrs = [float(k.rsplit("_", 1)[1]) for k in result.metrics if k.startswith("e5_psnr_db_lr_")]
    paths = []
    recon = {}
    if cafe is not None or lstsq is not None:
        recon["true"] = (cafe if cafe is not None else lstsq).x_true
    if cafe is not None:
        recon["CAFE"] = cafe.x_hat
    if lstsq is not None:
        recon["lstsq"] = lstsq.x_hat
    if recon:
        paths.append(save_recon_grid(out / "recon.png", recon,
                                     title="digits, 4 parties, N=80, K=40, frozen model"))
    if dlg is not None:
        paths.append(save_recon_grid(out / "recon_dlg.png", {"true": dlg.x_true, "DLG": dlg.x_hat},
                                     title="DLG on one K=40 round (Hungarian-matched)"))
    paths += [
        save_tradeoff_plot(out / "tradeoff.png", result.points),
        save_curve_plot(out / "lr_sweep.png", lrs, {"CAFE": [result.metrics[f"e5_psnr_db_lr_{lr:g}"] for lr in lrs]},
                        xlabel="VFL training learning rate (SGD)", logx=True,
                        title="E5: where the frozen-model assumption breaks"),
    ]
    traces = {name: run.trace for name, run in (("CAFE gd", cafe), ("CAFE lstsq", lstsq)) if run is not None}
    if traces:
        paths.append(save_trace_plot(out / "trace.png", traces))
    return paths
