"""Figures (matplotlib without pyplot state, PNG written atomically by the core): accuracy and loss against server iterations and
virtual time, the staleness histogram, the convex gap, and the privacy-utility-leakage curve."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from paperzoo.core.figures import new_figure, save_figure


def _figure(ncols: int = 1, width: float = 5.0):
    return new_figure(1, ncols, figsize=(width * ncols, 3.6), squeeze=False)


def _save(fig, path: Path) -> Path:
    return save_figure(fig, path, dpi=110)


def plot_curves(histories: Mapping[str, object], path: Path, central_accuracy: float | None = None,
                title: str = "") -> Path:
    """Accuracy against server iterations and against virtual time; loss against iterations."""
    fig, axes = _figure(3)
    for label, history in histories.items():
        axes[0, 0].plot(history.iterations, history.accuracy, label=label)
        axes[0, 1].plot(history.times, history.accuracy, label=label)
        axes[0, 2].plot(history.iterations, history.loss, label=label)
    if central_accuracy is not None:
        for ax in axes[0, :2]:
            ax.axhline(central_accuracy, color="k", linestyle="--", linewidth=1, label="centralised")
    axes[0, 0].set(xlabel="server iterations", ylabel="test accuracy", title=title)
    axes[0, 1].set(xlabel="virtual time", ylabel="test accuracy")
    axes[0, 2].set(xlabel="server iterations", ylabel="test loss")
    axes[0, 1].legend(fontsize=8)
    return _save(fig, path)


def plot_staleness(table_age: Sequence[float], message_delay: Sequence[int], path: Path) -> Path:
    """Histograms of table age and message delay, in server iterations (spec pitfall 4: both)."""
    fig, axes = _figure(2)
    axes[0, 0].hist(table_age, bins=50, color="tab:blue")
    axes[0, 0].set(xlabel="table age (server iterations)", ylabel="messages")
    axes[0, 1].hist(message_delay, bins=50, color="tab:orange")
    axes[0, 1].set(xlabel="message delay (server iterations)", ylabel="messages")
    return _save(fig, path)


def plot_convex(runs: Sequence[object], path: Path) -> Path:
    """Optimality gap against k, log-log, with a 1/k guide."""
    fig, axes = _figure(1, 5.5)
    ax = axes[0, 0]
    for run in runs:
        ax.loglog(run.iterations, [max(g, 1e-12) for g in run.gaps], label=run.label)
    if runs and runs[0].iterations:
        k0, g0 = runs[0].iterations[0], max(runs[0].gaps[0], 1e-12)
        ks = [k0, runs[0].iterations[-1]]
        ax.loglog(ks, [g0 * k0 / k for k in ks], "k--", linewidth=1, label="1/k")
    ax.set(xlabel="k (updates)", ylabel="F(theta_k) - F*")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_privacy(sigmas: Sequence[float], accuracy: Sequence[float], epsilon: Sequence[float],
                 attack_r2: Sequence[float], path: Path, amplified: Sequence[float] | None = None) -> Path:
    """The privacy-utility-leakage curve: accuracy, the per-record epsilon (worst record, against
    a server that sees the indices) and attack R^2 against sigma; ``amplified`` is drawn beside,
    dashed and labelled as holding only if the server could not see which records were sampled.
    sigma 0 (no privacy) has no epsilon point."""
    fig, axes = _figure(3, 4.2)
    axes[0, 0].plot(sigmas, accuracy, "o-")
    axes[0, 0].set(xlabel="sigma", ylabel="test accuracy")
    def finite(values):
        return [(s, e) for s, e in zip(sigmas, values) if e is not None and e == e and e != float("inf")]

    points = finite(epsilon)
    if points:
        axes[0, 1].semilogy([s for s, _ in points], [e for _, e in points], "o-", color="tab:red",
                            label="per record (server sees indices)")
    if amplified is not None and finite(amplified):
        axes[0, 1].semilogy([s for s, _ in finite(amplified)], [e for _, e in finite(amplified)], "s--",
                            color="tab:gray", label="amplified: if the server could not\nsee which records were sampled")
        axes[0, 1].legend(fontsize=7)
    axes[0, 1].set(xlabel="sigma", ylabel="epsilon, worst client (delta 1e-5)")
    axes[0, 2].plot(sigmas, attack_r2, "o-", color="tab:green")
    axes[0, 2].set(xlabel="sigma", ylabel="inversion attack R^2")
    return _save(fig, path)
