"""Figures (PNG through the core's ``save_figure``): sample grids per model and trigger, the
inversion history and the removal curve over pruning ratios."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from paperzoo.core.figures import new_figure, save_figure

__all__ = ["save_sample_grids", "save_inversion_history", "save_removal_curve"]


def _show(image: torch.Tensor):
    x = ((image.detach().float().cpu() + 1) / 2).clamp(0, 1)
    if x.shape[0] == 1:
        return x[0].numpy(), "gray"
    return x.permute(1, 2, 0).numpy(), None


def save_sample_grids(
    path: str | Path, rows: Mapping[str, torch.Tensor], per_row: int = 8, title: str = ""
) -> Path:
    """One row per entry of ``rows`` (model-space images, e.g. clean / triggered / inverted
    trigger / after removal), ``per_row`` images each."""
    names = list(rows)
    fig, axes = new_figure(
        len(names), per_row, figsize=(1.1 * per_row + 1.5, 1.2 * len(names) + 0.5), squeeze=False
    )
    for r, name in enumerate(names):
        images = rows[name]
        for c in range(per_row):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(images):
                array, cmap = _show(images[c])
                ax.imshow(array, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
            else:
                ax.axis("off")
        axes[r][0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)


def save_inversion_history(
    path: str | Path, histories: Mapping[str, Sequence[Mapping[str, float]]], title: str = ""
) -> Path:
    """Size of the similar set per BBTI iteration, one line per model."""
    fig, axes = new_figure(1, 2, figsize=(9, 3.2))
    for name, history in histories.items():
        steps = [h["iter"] for h in history]
        axes[0].plot(steps, [h["sim_size"] for h in history], label=name)
        axes[1].plot(steps, [h["loss"] for h in history], label=name)
    axes[0].set_xlabel("BBTI iteration")
    axes[0].set_ylabel("|similar set|")
    axes[1].set_xlabel("BBTI iteration")
    axes[1].set_ylabel("BBTI loss")
    axes[1].set_yscale("symlog")
    axes[0].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)


def save_removal_curve(
    path: str | Path,
    ratios: Sequence[float],
    asr: Sequence[float],
    fd: Sequence[float] | None = None,
    baselines: Mapping[str, float] | None = None,
    title: str = "",
) -> Path:
    """ASR (and FD) after removal over the pruning ratio; baselines at the main ratio as markers."""
    fig, axes = new_figure(1, 1, figsize=(5.5, 3.5))
    ax = axes
    ax.plot(list(ratios), list(asr), "o-", label="Diff-Cleanse ASR")
    for name, value in (baselines or {}).items():
        ax.scatter([max(ratios)], [value], marker="x", label=f"{name} ASR")
    ax.set_xlabel("pruning ratio r")
    ax.set_ylabel("attack success rate")
    ax.set_ylim(-0.05, 1.05)
    if fd is not None:
        twin = ax.twinx()
        twin.plot(list(ratios), list(fd), "s--", color="grey", label="FD (digits)")
        twin.set_ylabel("FD (digits features)")
    ax.legend(fontsize=7, loc="center right")
    if title:
        ax.set_title(title, fontsize=9)
    return save_figure(fig, path)
