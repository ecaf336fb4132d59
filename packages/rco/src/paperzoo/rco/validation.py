"""The validation experiment (spec section 4): RCO against its baselines over paired seeds.

For every task and seed the teacher (``mlp_teacher``) trains once and records its route; then
each arm trains ``mlp_student`` from the same initial weights on the same batches with the same
budget, schedule, tau and alpha (spec pitfall 5):

- ``ce``: cross-entropy only (KD with ``alpha = 0``, so it shares the code path);
- ``kd``: KD from the converged teacher (the route's last checkpoint);
- ``rco_eeis``: RCO, equal-interval anchors, m = 4; ``rco_eeis2`` / ``rco_eeis8``: m = 2 / 8;
- ``rco_greedy``: RCO, greedy search on the validation split (mu 1.5, at most 6 anchors);
- ``rco_reverse``: the EEIS anchors in reverse order (anti-curriculum control);
- ``kd_best_mid``: KD from the intermediate checkpoint with the best validation accuracy.

The first five run by default; the last three are opt-in. Seeds are independent jobs, run in
``workers`` processes (the core's ``JobRunner``, one thread each, a per-job timeout) and stored
by ``joblib.Memory`` as they finish, so a run can resume. A job that fails is recorded (an
``"error"`` entry, ``jobs_failed``) and the other seeds are aggregated. No argument parsing and no
result files here: the ``validate`` verb writes.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from paperzoo.rco.config import ARMS, REQUIRED_ARMS, TASKS, ValidationConfig

__all__ = ["ARMS", "REQUIRED_ARMS", "TASKS", "ValidationConfig", "paired_statistics",
           "run_experiment", "run_seed", "summarise"]


def _arm_anchors(arm: str, route, config: ValidationConfig) -> dict[str, Any]:
    from paperzoo.rco.anchors import best_intermediate, equal_interval

    last = len(route) - 1
    if arm in ("ce", "kd"):
        return {"anchors": [last]}
    if arm == "kd_best_mid":
        return {"anchors": [best_intermediate(route)]}
    if arm == "rco_reverse":
        return {"anchors": list(reversed(equal_interval(route, config.eeis_anchors)))}
    if arm.startswith("rco_eeis"):
        m = int(arm.removeprefix("rco_eeis") or config.eeis_anchors)
        return {"anchors": equal_interval(route, m)}
    raise ValueError(f"unknown arm {arm!r}; choose from {', '.join(ARMS)}")


def run_seed(task: str, seed: int, config: ValidationConfig, work_dir: str,
             device: str = "cpu") -> dict[str, Any]:
    """One paired replicate: the teacher's route, then every arm from the same initial student.

    Runs single-threaded: the models are tiny, and seeds run side by side in processes.
    """
    from paperzoo.core.runtime import torch_threads

    with torch_threads(1):
        return _run_seed(task, seed, config, Path(work_dir), device)


def _run_seed(task: str, seed: int, config: ValidationConfig, work_dir: Path,
              device: str) -> dict[str, Any]:
    from paperzoo.core.runtime import seed_everything
    from paperzoo.rco.anchors import GreedySelector
    from paperzoo.rco.data import make_datamodule
    from paperzoo.rco.losses import KDLoss
    from paperzoo.rco.pipeline import distill_student, model_overrides_for, train_teacher

    seed_everything(seed)
    datamodule = make_datamodule(task, seed=seed, batch_size=config.batch_size)
    route_dir = work_dir / f"{task}-seed{seed}"
    teacher = train_teacher(datamodule, route_dir, "mlp_teacher",
                            model_overrides_for(datamodule, "mlp_teacher"),
                            epochs=config.teacher_epochs, lr=config.lr,
                            weight_decay=config.weight_decay, extra={"data": task, "seed": seed},
                            overwrite=True, device=device)
    result: dict[str, Any] = {"task": task, "seed": seed, "teacher_acc": teacher.test_acc,
                              "teacher_val_acc": teacher.val_acc, "arms": {}}
    student_overrides = model_overrides_for(datamodule, "mlp_student")
    for arm in config.arms:
        alpha = 0.0 if arm == "ce" else config.alpha
        if arm == "rco_greedy":
            # The probe is the validation split: held out, never test, never training data.
            selector = GreedySelector(datamodule.val_dataloader(), KDLoss(config.tau, alpha),
                                      mu=config.greedy_mu, max_anchors=config.greedy_max_anchors)
            placement: dict[str, Any] = {"selector": selector}
        else:
            placement = _arm_anchors(arm, teacher.route, config)
        student = distill_student(datamodule, teacher.route, "mlp_student", student_overrides,
                                  tau=config.tau, alpha=alpha, epochs=config.student_epochs,
                                  lr=config.lr, weight_decay=config.weight_decay, seed=seed,
                                  device=device, **placement)
        result["arms"][arm] = {"test_acc": student.test_acc, "kl_final": student.test_kl_to_final,
                               "anchor_epochs": student.anchor_epochs,
                               "kl_curve": [row.get("kl_to_final", math.nan) for row in student.history]}
    shutil.rmtree(route_dir, ignore_errors=True)
    return result


def paired_statistics(treatment: Sequence[float], control: Sequence[float]) -> dict[str, float]:
    """Mean paired difference, its 95 % paired-t interval (``scipy.stats.ttest_rel``), the
    t-test and the Wilcoxon signed-rank p-values."""
    from scipy import stats

    diff = np.asarray(treatment, dtype=float) - np.asarray(control, dtype=float)
    mean = float(diff.mean())
    if len(diff) < 2:
        return {"mean": mean, "ci_low": math.nan, "ci_high": math.nan, "t_p": math.nan,
                "wilcoxon_p": math.nan}
    if diff.std(ddof=1) > 0:
        test = stats.ttest_rel(treatment, control)
        interval = test.confidence_interval(confidence_level=0.95)
        ci_low, ci_high, t_p = float(interval.low), float(interval.high), float(test.pvalue)
    else:  # every seed moved by the same amount: a zero-width interval, certain unless 0
        ci_low = ci_high = mean
        t_p = 1.0 if mean == 0 else 0.0
    # Wilcoxon needs at least one non-zero difference; identical arms are "no evidence" (p = 1).
    wilcoxon_p = float(stats.wilcoxon(diff).pvalue) if np.any(diff != 0) else 1.0
    return {"mean": mean, "ci_low": ci_low, "ci_high": ci_high, "t_p": t_p, "wilcoxon_p": wilcoxon_p}


def _source_hash() -> str:
    """SHA-256 of every ``.py`` file of the installed ``paperzoo/rco`` package (the core's
    :func:`~paperzoo.core.jobs.source_hash`, cached per process)."""
    from paperzoo.core.jobs import source_hash

    return source_hash("paperzoo.rco")


def code_version() -> str:
    """The package's version and source hash, and the core's: part of every stored result's key,
    so that an upgraded or edited package (or core) recomputes rather than reuses old results."""
    from paperzoo.core.jobs import code_version as versions

    return versions("paperzoo.rco", _source_hash())


def _job_name(function) -> str:
    """The job function's name and a hash of its own source (:func:`paperzoo.core.jobs.job_name`)."""
    from paperzoo.core.jobs import job_name

    return job_name(function)


def _stored_seed_job(function, job: str, code: str, task: str, seed: int, config: ValidationConfig,
                     work_dir: str, device: str) -> dict[str, Any]:
    """What ``joblib.Memory`` stores: ``function``'s result, keyed by ``job`` (its name and
    source), ``code`` (:func:`code_version`) and the job's arguments (not ``work_dir``)."""
    return function(task, seed, config, work_dir, device)


def _seed_job(function, jobs_dir: str | None, task: str, seed: int, config: ValidationConfig,
              work_dir: str, device: str) -> dict[str, Any]:
    """One ``(task, seed)`` job of :func:`run_experiment`, in whichever process runs it:
    ``function`` (:func:`run_seed`) through the ``joblib.Memory`` store at ``jobs_dir`` if any,
    keyed also by the package's version and source hash (:func:`code_version`)."""
    if jobs_dir is None:
        return function(task, seed, config, work_dir, device)
    from joblib import Memory

    stored = Memory(location=jobs_dir, verbose=0).cache(_stored_seed_job, ignore=["function", "work_dir"])
    return stored(function, _job_name(function), code_version(), task, seed, config, work_dir, device)


def run_experiment(tasks: Sequence[str], seeds: Sequence[int], config: ValidationConfig,
                   workers: int = 2, jobs_dir: Path | None = None, device: str = "cpu",
                   progress_desc: str = "validate",
                   job_timeout_s: float = 3600.0) -> list[dict[str, Any]]:
    """Every ``(task, seed)`` job on the core's :class:`~paperzoo.core.jobs.JobRunner`: in
    ``workers`` processes (at most one per job; one torch thread each, the longest jobs first),
    or one after another in this process when ``workers == 1``. Returns one dict per job,
    ordered by task and seed: :func:`run_seed`'s result, or ``{"task", "seed", "error"}`` for a
    job that raised, ran longer than ``job_timeout_s`` in a worker (no limit in this process) or
    lost its worker; the other jobs go on.

    With ``jobs_dir`` each job's result is stored there by ``joblib.Memory`` as it completes,
    keyed by its task, seed, configuration and device, the job function, and the package's
    version and a hash of its source files (:func:`code_version`), so a rerun with the same
    settings and the same code reuses it and an interrupted run resumes (a failed job is not
    stored: a rerun runs it again), while an upgraded or edited package runs every job again.
    The store holds pickles, which run code when loaded: only resume from a folder you wrote.
    """
    from paperzoo.core.jobs import JobFailure, JobRunner, check_timeout, check_workers
    from paperzoo.core.runtime import progress

    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}; choose from {', '.join(TASKS)}")
    check_workers(workers)
    check_timeout(job_timeout_s)
    pairs = sorted(((task, seed) for task in tasks for seed in seeds),
                   key=lambda pair: pair[0] != "gauss")  # the longest jobs first: better packing
    names = [f"{task} seed {seed}" for task, seed in pairs]
    store = None if jobs_dir is None else str(jobs_dir)
    in_process = workers == 1
    with (tempfile.TemporaryDirectory(prefix="rco-routes-") as work_dir,
          JobRunner(1 if in_process else max(2, min(workers, len(pairs))), job_timeout_s) as runner):
        submissions = list(zip(names, pairs))
        if in_process:  # each job runs as it is submitted
            submissions = progress(submissions, desc=progress_desc, total=len(pairs))
        for name, (task, seed) in submissions:  # run_seed looked up here: a replaced one reaches workers
            runner.submit(name, _seed_job, run_seed, store, task, seed, config, work_dir, device)
        waits = names if in_process else progress(names, desc=progress_desc, total=len(names))
        done = {name: runner.wait([name])[name] for name in waits}
    results = []
    for name, (task, seed) in zip(names, pairs):
        outcome = done[name]
        if isinstance(outcome, JobFailure):
            outcome = {"task": task, "seed": seed, "error": outcome.reason}
        results.append(outcome)
    return sorted(results, key=lambda r: (list(tasks).index(r["task"]), r["seed"]))


def clear_jobs(jobs_dir: Path) -> None:
    """Forget every stored job of :func:`run_experiment` under ``jobs_dir``."""
    from joblib import Memory

    Memory(location=str(jobs_dir), verbose=0).clear(warn=False)


def summarise(results: list[dict[str, Any]], tasks: Sequence[str],
              arms: Sequence[str]) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Flat metrics (names per the issue, with the pass flags on digits) and one table row per
    task and arm. A result with an ``"error"`` (a failed job) is counted in ``jobs_failed`` and
    named in a row; the statistics of its task are over the seeds that finished (every arm of a
    seed comes from one job, so the differences stay paired; ``num_seeds_<task>`` says how many),
    and a pass flag on digits is 0 when a digits seed failed."""
    metrics: dict[str, float] = {}
    rows: list[dict[str, Any]] = []
    failed = [r for r in results if "error" in r]
    for task in tasks:
        runs = [r for r in results if r["task"] == task and "error" not in r]
        metrics[f"num_seeds_{task}"] = len(runs)
        if not runs:  # every seed failed: nothing to aggregate
            rows.append({"task": task, "arm": "teacher", "test_acc": "", "std": "", "kl_final": "",
                         "anchor_epochs": "", "minus_kd": "", "95% CI": "", "wilcoxon_p": ""})
            continue
        teacher = np.array([r["teacher_acc"] for r in runs])
        metrics[f"teacher_acc_{task}"] = float(teacher.mean())
        metrics[f"teacher_acc_std_{task}"] = float(teacher.std(ddof=1)) if len(runs) > 1 else 0.0
        rows.append({"task": task, "arm": "teacher", "test_acc": f"{teacher.mean():.4f}",
                     "std": f"{metrics[f'teacher_acc_std_{task}']:.4f}", "kl_final": "",
                     "anchor_epochs": "", "minus_kd": "", "95% CI": "", "wilcoxon_p": ""})
        kd_acc = [r["arms"]["kd"]["test_acc"] for r in runs] if "kd" in arms else None
        for arm in arms:
            acc = np.array([r["arms"][arm]["test_acc"] for r in runs])
            kl = np.array([r["arms"][arm]["kl_final"] for r in runs])
            metrics[f"{arm}_acc_{task}"] = float(acc.mean())
            metrics[f"{arm}_acc_std_{task}"] = float(acc.std(ddof=1)) if len(acc) > 1 else 0.0
            metrics[f"kl_final_{arm}_{task}"] = float(kl.mean())
            anchors = sorted({tuple(r["arms"][arm]["anchor_epochs"]) for r in runs})
            row = {"task": task, "arm": arm, "test_acc": f"{acc.mean():.4f}",
                   "std": f"{metrics[f'{arm}_acc_std_{task}']:.4f}", "kl_final": f"{kl.mean():.4f}",
                   "anchor_epochs": "; ".join(",".join(map(str, a)) for a in anchors[:3])
                   + (f" (+{len(anchors) - 3} more)" if len(anchors) > 3 else ""),
                   "minus_kd": "", "95% CI": "", "wilcoxon_p": ""}
            if kd_acc is not None and arm != "kd":
                stats = paired_statistics(acc, kd_acc)
                prefix = "rco" if arm == "rco_eeis" else arm
                metrics[f"{prefix}_minus_kd_{task}"] = stats["mean"]
                metrics[f"{prefix}_minus_kd_ci_low_{task}"] = stats["ci_low"]
                metrics[f"{prefix}_minus_kd_ci_high_{task}"] = stats["ci_high"]
                metrics[f"{prefix}_minus_kd_p_{task}"] = stats["wilcoxon_p"]
                metrics[f"{prefix}_minus_kd_ttest_p_{task}"] = stats["t_p"]
                row.update({"minus_kd": f"{stats['mean']:+.4f}",
                            "95% CI": f"[{stats['ci_low']:+.4f}, {stats['ci_high']:+.4f}]",
                            "wilcoxon_p": f"{stats['wilcoxon_p']:.3f}"})
            rows.append(row)
    if "digits" in tasks:  # the pass numbers: teacher >= 0.95, every student >= 0.85
        complete = not any(r["task"] == "digits" for r in failed) and metrics["num_seeds_digits"] > 0
        metrics["teacher_ge_095_digits"] = int(complete and metrics["teacher_acc_digits"] >= 0.95)
        metrics["students_ge_085_digits"] = int(complete and all(metrics[f"{a}_acc_digits"] >= 0.85
                                                                 for a in arms))
    for r in failed:
        rows.append({"task": r["task"], "arm": f"failed job: seed {r['seed']}", "test_acc": "", "std": "",
                     "kl_final": "", "anchor_epochs": "", "minus_kd": "", "95% CI": "", "wilcoxon_p": "",
                     "error": _first_line(r)})
    metrics["jobs_failed"] = len(failed)
    return metrics, rows


def _first_line(result: dict[str, Any]) -> str:
    return (str(result["error"]).splitlines() or [""])[0]


def failure_summary(results: Sequence[dict[str, Any]]) -> str:
    """One line naming every failed ``(task, seed)`` job and its error ("" when none failed)."""
    failed = [r for r in results if "error" in r]
    if not failed:
        return ""
    return (f"{len(failed)} validation job(s) failed ("
            + "; ".join(f"{r['task']} seed {r['seed']}: {_first_line(r)}" for r in failed) + ")")
