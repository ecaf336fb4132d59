"""Figures of the validation experiment, drawn without pyplot's global state (the core's
``new_figure`` / ``save_figure``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from paperzoo.core.figures import new_figure, save_figure

KL_CURVE_ARMS = ("kd", "rco_eeis", "rco_greedy", "rco_reverse", "ce")


def plot_accuracy(results: list[dict[str, Any]], tasks: Sequence[str], arms: Sequence[str],
                  path: Path) -> Path:
    """Student test accuracy per arm (mean +- std over seeds) beside the teacher's."""
    figure, axes = new_figure(1, len(tasks), figsize=(5.5 * len(tasks), 4), squeeze=False)
    for axis, task in zip(axes[0], tasks):
        runs = [r for r in results if r["task"] == task]
        accs = np.array([[r["arms"][arm]["test_acc"] for r in runs] for arm in arms])
        axis.bar(range(len(arms)), accs.mean(axis=1), yerr=accs.std(axis=1), capsize=3, color="tab:blue")
        teacher = float(np.mean([r["teacher_acc"] for r in runs]))
        axis.axhline(teacher, color="k", ls="--", label="teacher")
        axis.set_xticks(range(len(arms)), arms, rotation=45, ha="right")
        axis.set_ylim(max(0.0, accs.min() - 0.03), min(1.0, max(accs.max(), teacher) + 0.02))
        axis.set_title(f"{task}: student test accuracy ({len(runs)} seeds)")
        axis.legend()
    return save_figure(figure, path, dpi=110)


def plot_kl_to_final(results: list[dict[str, Any]], tasks: Sequence[str], arms: Sequence[str],
                     path: Path) -> Path:
    """KL to the converged teacher on the validation split over student epochs (mean over
    seeds): the stage switches of RCO and of the reverse control show as steps."""
    figure, axes = new_figure(1, len(tasks), figsize=(5.5 * len(tasks), 4), squeeze=False)
    for axis, task in zip(axes[0], tasks):
        runs = [r for r in results if r["task"] == task]
        for arm in [a for a in KL_CURVE_ARMS if a in arms]:
            curve = np.nanmean(np.array([r["arms"][arm]["kl_curve"] for r in runs]), axis=0)
            axis.plot(np.arange(1, len(curve) + 1), curve, label=arm)
        axis.set_yscale("log")
        axis.set_xlabel("student epoch")
        axis.set_ylabel("KL(teacher || student), tau = 4, validation")
        axis.set_title(f"{task}: congruence to the converged teacher")
        axis.legend()
    return save_figure(figure, path, dpi=110)


def plot_results(results: list[dict[str, Any]], tasks: Sequence[str], arms: Sequence[str],
                 out: Path) -> list[Path]:
    """``out/accuracy.png`` and ``out/kl_to_final.png``."""
    return [plot_accuracy(results, tasks, arms, Path(out) / "accuracy.png"),
            plot_kl_to_final(results, tasks, arms, Path(out) / "kl_to_final.png")]
