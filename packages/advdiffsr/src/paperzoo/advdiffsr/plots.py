"""Figures (PNG, written atomically, no pyplot state): fields and errors, radial spectra,
per-frame errors, training losses, ensemble spread, spread-skill and the rank histogram."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from paperzoo.core.figures import new_figure, save_figure


def _figure(nrows: int = 1, ncols: int = 1, size: tuple[float, float] = (3.2, 3.0)):
    return new_figure(nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows), squeeze=False)


def _save(fig, path: str | Path) -> Path:
    return save_figure(fig, path, dpi=110)


def plot_fields(
    truth: torch.Tensor | None,
    estimates: Mapping[str, torch.Tensor],
    path: str | Path,
    lr: torch.Tensor | None = None,
) -> Path:
    """One frame ``(N, N)`` of the truth (if known), the LR input and each estimate; errors below."""
    panels = ([("truth", truth)] if truth is not None else []) + list(estimates.items())
    ncols = len(panels) + (lr is not None)
    fig, axes = _figure(2 if truth is not None else 1, ncols)
    reference = truth if truth is not None else next(iter(estimates.values()))
    vmin, vmax = float(reference.min()), float(reference.max())
    col = 0
    if lr is not None:
        axes[0, 0].imshow(lr.numpy(), vmin=vmin, vmax=vmax, cmap="viridis")
        axes[0, 0].set_title("LR input")
        col = 1
    for name, field in panels:
        axes[0, col].imshow(field.float().numpy(), vmin=vmin, vmax=vmax, cmap="viridis")
        axes[0, col].set_title(name)
        if truth is not None and name != "truth":
            err = field.double() - truth.double()
            axes[1, col].imshow(
                err.numpy(),
                cmap="RdBu_r",
                vmin=-float(err.abs().max()),
                vmax=float(err.abs().max()),
            )
            axes[1, col].set_title(
                f"{name} error (rel {float(err.norm() / truth.double().norm()):.3f})"
            )
        col += 1
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    return _save(fig, path)


def plot_spectra(
    fields: Mapping[str, torch.Tensor], path: str | Path, scale: int | None = None
) -> Path:
    """Radial energy spectra of each field (``(..., N, N)``), the LR Nyquist marked."""
    from paperzoo.advdiffsr.metrics import radial_spectrum

    fig, axes = _figure(1, 1, (5.0, 3.6))
    ax = axes[0, 0]
    for name, field in fields.items():
        spectrum = radial_spectrum(field)
        ax.semilogy(range(1, len(spectrum)), spectrum[1:].numpy(), label=name)
        if scale:
            ax.axvline(field.shape[-1] / (2 * scale), color="grey", ls=":")
    ax.set_xlabel("|k|")
    ax.set_ylabel("energy")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_per_frame(
    curves: Mapping[str, Sequence[float]], path: str | Path, title: str = ""
) -> Path:
    """Relative L2 error per frame for each method."""
    fig, axes = _figure(1, 1, (5.0, 3.6))
    ax = axes[0, 0]
    for name, curve in curves.items():
        ax.plot(range(1, len(curve) + 1), list(curve), label=name)
    ax.set_xlabel("frame")
    ax.set_ylabel("rel. L2")
    ax.set_title(title)
    ax.legend(fontsize=7)
    return _save(fig, path)


def plot_losses(history: Sequence[Mapping[str, float]], path: str | Path) -> Path:
    """Training losses against the step."""
    fig, axes = _figure(1, 1, (5.0, 3.6))
    ax = axes[0, 0]
    steps = [h["step"] for h in history]
    for key in ("loss_lr", "loss_pde", "loss_mmd", "loss_total"):
        values = [h[key] for h in history if key in h]
        if values and any(v > 0 for v in values):
            ax.semilogy(steps[: len(values)], [max(v, 1e-12) for v in values], label=key)
    ax.set_xlabel("step")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_uncertainty(
    mean: torch.Tensor, std: torch.Tensor, path: str | Path, error: torch.Tensor | None = None
) -> Path:
    """Ensemble mean, per-pixel std and (when the truth is known) the absolute error of one frame."""
    panels = [("ensemble mean", mean, "viridis"), ("ensemble std", std, "magma")]
    if error is not None:
        panels.append(("|error|", error, "magma"))
    fig, axes = _figure(1, len(panels))
    for ax, (name, field, cmap) in zip(axes[0], panels):
        image = ax.imshow(field.float().numpy(), cmap=cmap)
        ax.set_title(name)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(image, ax=ax, fraction=0.046)
    return _save(fig, path)


def plot_spread_skill(
    samples: torch.Tensor, truth: torch.Tensor, path: str | Path, bins: int = 12
) -> Path:
    """Binned RMSE of the ensemble mean against the binned spread (corrected ``sqrt((K+1)/K)``)."""
    K = samples.shape[0]
    x, y = samples.double().flatten(1), truth.double().flatten()
    spread = x.std(0) * ((K + 1) / K) ** 0.5
    error = (x.mean(0) - y).abs()
    groups = spread.argsort().tensor_split(bins)
    s = [float(spread[g].pow(2).mean().sqrt()) for g in groups]
    e = [float(error[g].pow(2).mean().sqrt()) for g in groups]
    fig, axes = _figure(1, 1, (4.2, 4.0))
    ax = axes[0, 0]
    ax.plot(s, e, "o-", label="binned")
    top = max(max(s), max(e))
    ax.plot([0, top], [0, top], "k:", label="1:1")
    ax.set_xlabel("spread")
    ax.set_ylabel("RMSE of ensemble mean")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_rank_histogram(hist: torch.Tensor, path: str | Path) -> Path:
    """Rank histogram (flat = calibrated)."""
    fig, axes = _figure(1, 1, (4.6, 3.4))
    ax = axes[0, 0]
    ax.bar(range(len(hist)), hist.numpy())
    ax.axhline(1 / len(hist), color="k", ls=":")
    ax.set_xlabel("rank of truth among members")
    ax.set_ylabel("frequency")
    return _save(fig, path)
