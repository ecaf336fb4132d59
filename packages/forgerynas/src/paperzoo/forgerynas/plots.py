"""Figures (core ``new_figure`` / ``save_figure``, no pyplot): architecture weights over the search
epochs, derived cells as node/edge diagrams, ROC curves."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from paperzoo.core.figures import new_figure, save_figure
from paperzoo.forgerynas.search_space import Genotype

__all__ = ["save_arch_weights", "save_cells", "save_roc"]


def save_arch_weights(path: str | Path, trace: dict, title: str = "architecture weights") -> Path:
    """Per cell type: mean softmax(alpha) over edges (top) and mean importance (bottom) per op
    against the epoch; pruned ops count as 0."""
    ops = trace["ops"]
    epochs = [r["epoch"] for r in trace["epochs"]]
    fig, axes = new_figure(2, 2, figsize=(11, 7), squeeze=False)
    colours = [
        fig.colormaps["tab20"](i % 20) if hasattr(fig, "colormaps") else None
        for i in range(len(ops))
    ]
    for col, kind in enumerate(("normal", "reduce")):
        for row, key in enumerate(("alpha", "importance")):
            values = np.array(
                [
                    np.array(r[f"{key}_{kind}"]) * np.array(r[f"mask_{kind}"])
                    for r in trace["epochs"]
                ]
            )
            mean = values.mean(axis=1)  # (epochs, ops)
            ax = axes[row][col]
            for o, name in enumerate(ops):
                style = "--" if "CDC" not in name else "-"
                ax.plot(epochs, mean[:, o], style, label=name, color=colours[o])
            ax.set_title(
                f"{kind} cell: mean {'softmax(alpha)' if key == 'alpha' else 'importance'}"
            )
            ax.set_xlabel("epoch")
    axes[0][1].legend(fontsize=6, ncol=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.suptitle(title)
    return save_figure(fig, path)


def _draw_cell(ax, edges, steps: int, concat, title: str) -> None:
    positions = {0: (0.0, 0.75), 1: (0.0, 0.25)}
    for node in range(steps):
        positions[2 + node] = (1.0 + node, 0.5 + 0.3 * (-1) ** node)
    positions["out"] = (steps + 1.2, 0.5)
    for k, (op, source) in enumerate(edges):
        target = 2 + k // 2
        (x0, y0), (x1, y1) = positions[source], positions[target]
        ax.annotate(
            "",
            xy=(x1, y1),
            xytext=(x0, y0),
            arrowprops=dict(
                arrowstyle="->",
                color="tab:blue" if "CDC" in op else "tab:gray",
                shrinkA=12,
                shrinkB=12,
                connectionstyle="arc3,rad=0.12",
            ),
        )
        ax.text(
            0.5 * (x0 + x1),
            0.5 * (y0 + y1) + (0.04 if k % 2 else -0.04),
            op,
            fontsize=6,
            ha="center",
            va="center",
            bbox=dict(boxstyle="round,pad=0.1", fc="white", ec="none", alpha=0.8),
        )
    for node in concat:
        (x0, y0), (x1, y1) = positions[node], positions["out"]
        ax.annotate(
            "",
            xy=(x1, y1),
            xytext=(x0, y0),
            arrowprops=dict(arrowstyle="->", color="tab:green", shrinkA=12, shrinkB=12, alpha=0.5),
        )
    names = {0: "c_{k-2}", 1: "c_{k-1}", "out": "c_{k}"}
    for key, (x, y) in positions.items():
        ax.text(
            x,
            y,
            names.get(key, str(key - 2) if isinstance(key, int) else key),
            ha="center",
            va="center",
            fontsize=8,
            bbox=dict(boxstyle="circle", fc="lightyellow", ec="black"),
        )
    ax.set_xlim(-0.5, steps + 1.7)
    ax.set_ylim(0.0, 1.0)
    ax.axis("off")
    ax.set_title(title, fontsize=9)


def save_cells(path: str | Path, genotype: Genotype, title: str = "derived cells") -> Path:
    """The normal and reduction cells of ``genotype`` as DAGs (CDC edges blue, others grey)."""
    fig, axes = new_figure(1, 2, figsize=(12, 3.6), squeeze=False)
    _draw_cell(axes[0][0], genotype.normal, genotype.steps, genotype.normal_concat, "normal cell")
    _draw_cell(
        axes[0][1], genotype.reduce, genotype.steps, genotype.reduce_concat, "reduction cell"
    )
    fig.suptitle(f"{title} (space {genotype.space})")
    return save_figure(fig, path)


def save_roc(
    path: str | Path, curves: Mapping[str, tuple[np.ndarray, np.ndarray, float]], title: str = "ROC"
) -> Path:
    """ROC curves: ``{label: (fpr, tpr, auc)}``."""
    fig, ax = new_figure(figsize=(4.8, 4.2))
    for label, (fpr, tpr, auc) in curves.items():
        ax.plot(fpr, tpr, label=f"{label} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], ":", color="gray")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.legend(fontsize=7)
    ax.set_title(title)
    return save_figure(fig, path)
