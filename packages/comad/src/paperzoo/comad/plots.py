"""Figures, written with the core's ``save_figure`` (no pyplot state): component maps, score
histograms, explanation bars."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from paperzoo.core.figures import new_figure, save_figure


def plot_component_maps(
    image: np.ndarray, grey: np.ndarray, kept: list[int], path: str | Path, title: str = ""
) -> Path:
    """The image, its hard component labels and each component's ``G_k`` (kept ones marked)."""
    k = grey.shape[0]
    figure, axes = new_figure(1, k + 2, figsize=(2.0 * (k + 2), 2.3))
    axes[0].imshow(image)
    axes[0].set_title(title or "image", fontsize=8)
    axes[1].imshow(grey.argmax(0), cmap="tab10", vmin=0, vmax=9, interpolation="nearest")
    axes[1].set_title("components", fontsize=8)
    for i in range(k):
        axes[i + 2].imshow(grey[i], cmap="magma", vmin=0, vmax=128)
        axes[i + 2].set_title(f"G_{i}" + (" (kept)" if i in kept else " (dropped)"), fontsize=8)
    for ax in axes:
        ax.axis("off")
    return save_figure(figure, path)


def plot_score_histograms(
    scores: dict[str, np.ndarray], kinds: list[str], path: str | Path
) -> Path:
    """One panel per branch: score histograms of good, logical and structural test images."""
    names = list(scores)
    figure, axes = new_figure(1, len(names), figsize=(3.4 * len(names), 2.8), squeeze=False)
    kinds = np.asarray(kinds)
    for ax, name in zip(axes[0], names):
        values = np.asarray(scores[name])
        bins = np.linspace(values.min(), values.max() + 1e-9, 25)
        for kind, colour in (
            ("good", "tab:green"),
            ("logical", "tab:orange"),
            ("structural", "tab:red"),
        ):
            if (kinds == kind).any():
                ax.hist(values[kinds == kind], bins=bins, alpha=0.55, color=colour, label=kind)
        ax.set_title(name, fontsize=9)
    axes[0][0].legend(fontsize=7)
    return save_figure(figure, path)


def plot_explanation(explanation: dict, path: str | Path) -> Path:
    """Bars of the logical score's parts by component and measure."""
    labels, values = [], []
    for component, parts in explanation["parts"].items():
        for measure in ("area", "colour", "count"):
            labels.append(f"{component.replace('component_', 'c')} {measure}")
            values.append(parts[measure])
    figure, ax = new_figure(1, 1, figsize=(max(4.0, 0.5 * len(labels)), 3.0))
    ax.bar(range(len(values)), values, color="tab:blue")
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=7)
    ax.set_title(
        f"dominant: component {explanation['dominant_component']} {explanation['dominant_measure']}",
        fontsize=9,
    )
    return save_figure(figure, path)
