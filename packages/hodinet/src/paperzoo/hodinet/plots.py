"""Figures (the core's ``new_figure``/``save_figure``: no pyplot state, atomic PNGs): a grid of RGB, depth,
GT and each model's map per generated kind, and F/E/PR curves over the 256 thresholds."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch


def _new_figure(nrows: int, ncols: int, figsize: tuple[float, float]):
    from paperzoo.core.figures import new_figure

    return new_figure(nrows, ncols, figsize=figsize, squeeze=False)


def _save(fig, path: str | Path) -> Path:
    from paperzoo.core.figures import save_figure

    return save_figure(fig, path, dpi=110)


def _image(x: torch.Tensor) -> np.ndarray:
    x = x.detach().cpu().float()
    return x[0].numpy() if x.shape[0] == 1 else x.permute(1, 2, 0).clamp(0, 1).numpy()


def save_scene_grid(path: str | Path, rgb: torch.Tensor, depth: torch.Tensor, gt: torch.Tensor,
                    maps: Mapping[str, torch.Tensor], titles: Sequence[str], title: str = "") -> Path:
    """Columns are scenes; rows are RGB, depth, GT and each named map (``(N, 1, H, W)``)."""
    rows = [("RGB", rgb), ("depth", depth), ("GT", gt), *maps.items()]
    fig, axes = _new_figure(len(rows), rgb.shape[0], (1.3 * rgb.shape[0] + 1, 1.3 * len(rows)))
    for r, (label, images) in enumerate(rows):
        for c in range(rgb.shape[0]):
            ax = axes[r, c]
            ax.imshow(_image(images[c]), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(label, fontsize=8)
            if r == 0:
                ax.set_title(titles[c], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def save_curves(path: str | Path, curves: Mapping[str, Mapping[str, np.ndarray]], title: str = "") -> Path:
    """PR curve, F-measure and E-measure against the threshold for each named model."""
    fig, axes = _new_figure(1, 3, (13, 3.8))
    thresholds = np.arange(255, -1, -1)
    for name, c in curves.items():
        axes[0, 0].plot(c["recall"], c["precision"], label=name)
        axes[0, 1].plot(thresholds, c["fmeasure"], label=name)
        axes[0, 2].plot(thresholds, c["emeasure"], label=name)
    for ax, (xl, yl) in zip(axes[0], (("recall", "precision"), ("threshold", "F (beta^2 = 0.3)"),
                                      ("threshold", "E-measure"))):
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def save_loss_curves(path: str | Path, losses: Mapping[str, Sequence[float]], title: str = "") -> Path:
    """Training loss against the step for each named run."""
    fig, axes = _new_figure(1, 1, (5, 3.5))
    for name, values in losses.items():
        axes[0, 0].plot(np.arange(1, len(values) + 1), values, label=name)
    axes[0, 0].set_xlabel("step")
    axes[0, 0].set_ylabel("hybrid loss")
    axes[0, 0].legend(fontsize=7)
    if title:
        axes[0, 0].set_title(title, fontsize=9)
    return _save(fig, path)
