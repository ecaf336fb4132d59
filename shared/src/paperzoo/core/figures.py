"""Figures without pyplot's global state: ``new_figure`` builds a ``matplotlib.figure.Figure``
directly (no backend switch, nothing registered with pyplot, safe in threads and notebooks), and
``save_figure`` writes it as a PNG atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from paperzoo.core.results import atomic_path


def new_figure(nrows: int = 1, ncols: int = 1, figsize: tuple[float, float] | None = None,
               squeeze: bool = True, **subplot_kw: Any):
    """``(figure, axes)`` like ``pyplot.subplots``, but owned by the caller alone."""
    from matplotlib.figure import Figure

    if nrows < 1 or ncols < 1:
        raise ValueError(f"a figure needs at least one row and column, got {nrows} x {ncols}")
    figure = Figure(figsize=figsize or (4.0 * ncols, 3.2 * nrows), layout="constrained")
    axes = figure.subplots(nrows, ncols, squeeze=squeeze, **subplot_kw)
    return figure, axes


def save_figure(figure, path: str | Path, dpi: int = 120) -> Path:
    """Write ``figure`` to ``path`` (``.png``) atomically; returns the path."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"figures are saved as .png, got {path}")
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=dpi, format="png")
    return path
