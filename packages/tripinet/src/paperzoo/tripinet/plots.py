"""Figures (no pyplot state): the overlay grid (image | truth | red tint where p > 0.5),
F1 per forgery kind and arm, and the robustness bars."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from paperzoo.core.figures import new_figure, save_figure


def overlay(
    image: np.ndarray, prob: np.ndarray, threshold: float = 0.5, strength: float = 0.6
) -> np.ndarray:
    """``image`` (H, W, 3) float in [0, 1] tinted red where ``prob`` > ``threshold``."""
    tinted = image.copy()
    where = prob > threshold
    tinted[where] = (1 - strength) * tinted[where] + strength * np.array([1.0, 0.0, 0.0])
    return tinted


def overlay_grid(
    images,
    masks,
    probs,
    path: str | Path,
    titles: Sequence[str] | None = None,
    threshold: float = 0.5,
) -> Path:
    """One row per image: the image, its true mask, the red overlay of the prediction."""
    images = [
        np.asarray(i.permute(1, 2, 0) if hasattr(i, "permute") else i, dtype=np.float64)
        for i in images
    ]
    rows = len(images)
    figure, axes = new_figure(rows, 3, figsize=(6.0, 2.0 * rows), squeeze=False)
    for r in range(rows):
        mask = np.asarray(masks[r]).reshape(images[r].shape[:2])
        prob = np.asarray(probs[r]).reshape(images[r].shape[:2])
        for c, (panel, name) in enumerate(
            (
                (images[r], "image"),
                (mask, "truth"),
                (overlay(images[r], prob, threshold), f"p > {threshold}"),
            )
        ):
            axes[r, c].imshow(panel, cmap="gray" if panel.ndim == 2 else None, vmin=0, vmax=1)
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
            if r == 0:
                axes[r, c].set_title(name, fontsize=9)
        if titles is not None:
            axes[r, 0].set_ylabel(titles[r], fontsize=8)
    return save_figure(figure, path)


def kind_bars(
    metrics: dict[str, float], arms: Sequence[str], kinds: Sequence[str], path: str | Path
) -> Path:
    """Grouped bars: pixel F1 per forgery kind for each arm."""
    figure, axis = new_figure(figsize=(6.5, 3.2))
    width = 0.8 / max(1, len(arms))
    for i, arm in enumerate(arms):
        values = [metrics.get(f"{arm}_f1_{k}", np.nan) for k in kinds]
        axis.bar(np.arange(len(kinds)) + i * width, values, width, label=arm)
    axis.set_xticks(np.arange(len(kinds)) + 0.4 - width / 2, kinds)
    axis.set_ylabel("pixel F1 at 0.5")
    axis.set_ylim(0, 1)
    axis.legend(fontsize=8, ncols=3)
    return save_figure(figure, path)


def robustness_bars(values: dict[str, float], path: str | Path) -> Path:
    """Pixel F1 of one model on clean and post-processed test images."""
    figure, axis = new_figure(figsize=(4.5, 3.0))
    axis.bar(
        list(values),
        list(values.values()),
        color=["tab:blue", "tab:orange", "tab:green"][: len(values)],
    )
    axis.set_ylabel("pixel F1 at 0.5")
    axis.set_ylim(0, 1)
    return save_figure(figure, path)
