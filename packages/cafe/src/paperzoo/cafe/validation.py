"""The spec's validation experiment (E1-E5) and the one-factor sweeps, as data: arms and jobs in,
a flat metrics dict and table rows out. No argument parsing, no files (``commands.py`` writes,
``plots.py`` draws).

- E1: CAFE (GD solvers) on digits, 4 parties, N = 80, K = 40, frozen model.
- E2: DLG on the same model's first K = 40 round, Hungarian-matched.
- E3: ablations: no representation term, no index alignment, the closed form.
- E4: defences, CAFE's PSNR against each beside the VFL accuracy trained with it.
- E5: the training learning rate (the frozen-model assumption).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from paperzoo.cafe.config import DefenseConfig, Scenario, check_positive
from paperzoo.cafe.pipeline import AttackResult, run_jobs
from paperzoo.core.jobs import JobFailure, check_timeout

# The defence settings of E4 and the defence sweep: (label, defence).
DEFENSE_GRID: list[tuple[str, DefenseConfig]] = [
    ("fake matched nu10", DefenseConfig("fake", sigma="matched", nu=10, tau=1.0)),
    ("fake matched nu1", DefenseConfig("fake", sigma="matched", nu=1, tau=1.0, max_resample=0)),
    ("fake sigma1 (naive)", DefenseConfig("fake", sigma="1.0", nu=10, tau=1.0, max_resample=0)),
    ("noise 1e-3", DefenseConfig("noise", noise_std=1e-3)),
    ("noise 1e-2", DefenseConfig("noise", noise_std=1e-2)),
    ("prune 0.9", DefenseConfig("prune", prune_ratio=0.9)),
    ("prune 0.99", DefenseConfig("prune", prune_ratio=0.99)),
]
FL_LRS = (0.0, 1e-3, 5e-3, 5e-2)
SWEEP_DEFAULTS = {"batch": [10, 20, 40], "parties": [2, 4, 8], "fl_lr": list(FL_LRS)}


@dataclass
class ValidationResult:
    """The metrics (flat, pass flags as booleans), the table rows, the attack results the
    figures draw (only those whose job finished), the defence points, the warnings of every run
    and the jobs that failed (each also named in a row and a warning, ``jobs_failed`` counts them)."""

    metrics: dict[str, Any]
    rows: list[dict[str, Any]]
    attacks: dict[str, AttackResult]
    points: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)
    failed: list[JobFailure] = field(default_factory=list)


def _cafe_job(scenario: Scenario, iters: int, device: str = "cpu", **extra: Any) -> tuple[str, dict[str, Any]]:
    return ("cafe", {"scenario": scenario.to_dict(), "iters": iters, "device": device, **extra})


def _utility_job(defense: DefenseConfig, epochs: int, seed: int, device: str = "cpu") -> tuple[str, dict[str, Any]]:
    return ("utility", {"defense": defense.__dict__.copy(), "epochs": epochs, "seed": seed, "device": device})


def _key(label: str) -> str:
    return label.split(" (")[0].replace(" ", "_")


class _Missing(dict):
    """The metrics of a failed job: NaN (null in metrics.json) for every name."""

    def __missing__(self, key: str) -> float:
        return math.nan


def _ok(result: Any) -> bool:
    return not isinstance(result, JobFailure)


def _metrics(result: Any) -> dict[str, Any]:
    return result.metrics if _ok(result) else _Missing()


def _test_acc(result: Any) -> float:
    return result.test_acc if _ok(result) else math.nan


def _first_line(failure: JobFailure) -> str:
    return (failure.reason.splitlines() or [""])[0]


def _record_failures(results: list[Any], metrics: dict[str, Any], rows: list[dict[str, Any]],
                     notes: list[str], label: str) -> list[JobFailure]:
    """Count the failed jobs (``jobs_failed``), name each one in a row (``label`` column) and in
    a warning."""
    failed = [r for r in results if isinstance(r, JobFailure)]
    metrics["jobs_failed"] = len(failed)
    for failure in failed:
        rows.append({label: f"failed job: {failure.name}", "error": _first_line(failure)})
        notes.append(f"job {failure.name} failed, its metrics are null: {_first_line(failure)}")
    return failed


def run_validation(iters: int = 3000, dlg_iters: int = 300, dlg_restarts: int = 2,
                   utility_epochs: int = 20, workers: int = 1, seed: int = 0,
                   cache_dir: str | None = None, device: str = "cpu",
                   job_timeout_s: float = 3600.0) -> ValidationResult:
    """E1-E5 on digits (paper Sec. 6; the spec's validation), run as independent jobs
    (:func:`~paperzoo.cafe.pipeline.run_jobs`). A job that fails (raises, runs longer than
    ``job_timeout_s`` in a worker, loses its worker) leaves its metrics null (NaN), every pass
    flag that reads it False, and is named in ``failed``, a row and a warning; the others are
    reported as usual."""
    check_positive(iters=iters, dlg_iters=dlg_iters, dlg_restarts=dlg_restarts,
                   utility_epochs=utility_epochs, workers=workers)
    check_timeout(job_timeout_s)
    base = Scenario(n_samples=80, batch_size=40, seed=seed)
    track = max(1, iters // 30)
    jobs = [
        _cafe_job(base, iters, device, track_every=track),
        ("dlg", {"scenario": base.to_dict(), "restarts": dlg_restarts, "iters": dlg_iters, "device": device}),
        _cafe_job(base, iters, device, config={"gamma_repr": 0.0, "seed": seed}),
        _cafe_job(base, iters, device, config={"index_aligned": False, "seed": seed}),
        _cafe_job(base, iters, device, config={"solver": "lstsq", "seed": seed}, track_every=track),
    ]
    names = ["E1 CAFE", "E2 DLG", "E3 CAFE gamma=0", "E3 CAFE no index alignment", "E3 CAFE lstsq"]
    jobs += [_cafe_job(Scenario(n_samples=80, batch_size=40, seed=seed, fl_lr=lr), iters, device)
             for lr in FL_LRS[1:]]
    names += [f"E5 CAFE fl_lr={lr:g}" for lr in FL_LRS[1:]]
    settings = [("none", DefenseConfig()), *DEFENSE_GRID]
    for label, defense in settings:
        if defense.name != "none":
            jobs.append(_cafe_job(base.with_defense(defense), iters, device))
            names.append(f"E4 CAFE vs {label}")
        jobs.append(_utility_job(defense, utility_epochs, seed, device))
        names.append(f"E4 utility {label}")
    results = run_jobs(jobs, workers, cache_dir, job_timeout_s, names)

    cafe1, dlg1, no_repr, no_align, lstsq = results[:5]
    lr_results = results[5 : 5 + len(FL_LRS) - 1]
    rest = iter(results[5 + len(FL_LRS) - 1 :])
    points, attacked = [], []
    for label, defense in settings:
        attack = cafe1 if defense.name == "none" else next(rest)
        utility = next(rest)
        attacked.append(attack)
        m = _metrics(attack)
        points.append({"setting": label, "defense": defense.name, "psnr_db": m["psnr_db"],
                       "label_acc": m["label_acc"], "test_acc": _test_acc(utility)})

    m1, md, ml = _metrics(cafe1), _metrics(dlg1), _metrics(lstsq)
    fake = points[1]
    metrics: dict[str, Any] = {
        "e1_psnr_db": m1["psnr_db"], "e1_share_above_20db": m1["share_above_20db"],
        "e1_label_acc": m1["label_acc"], "e1_ssim": m1["ssim"], "e1_block_psnr_db": m1["block_psnr_db"],
        "e1_iters_per_s": m1["iters_per_s"], "e1_rounds_per_sample_min": m1["rounds_per_sample_min"],
        "e2_dlg_psnr_db": md["psnr_db"], "e2_dlg_label_acc": md["label_acc"], "e2_dlg_ssim": md["ssim"],
        "e2_gap_db": m1["psnr_db"] - md["psnr_db"],
        "e3_psnr_db_no_repr": _metrics(no_repr)["psnr_db"],
        "e3_psnr_db_no_alignment": _metrics(no_align)["psnr_db"],
        "e3_psnr_db_lstsq": ml["psnr_db"],
        "e3_label_acc_lstsq": ml["label_acc"],
        "e3_lstsq_closed_form_solved": bool(ml["closed_form_solved"]) if _ok(lstsq) else math.nan,
        "e3_lstsq_rounds_per_sample_min": ml["rounds_per_sample_min"],
        "e4_fake_psnr_db": fake["psnr_db"], "e4_psnr_drop_db": m1["psnr_db"] - fake["psnr_db"],
        "e4_clean_acc": points[0]["test_acc"], "e4_fake_acc": fake["test_acc"],
        "e4_fake_acc_cost": points[0]["test_acc"] - fake["test_acc"],
    }
    for p in points[1:]:
        metrics[f"e4_{_key(p['setting'])}_psnr_db"] = p["psnr_db"]
        metrics[f"e4_{_key(p['setting'])}_acc"] = p["test_acc"]
    metrics[f"e5_psnr_db_lr_{0.0:g}"] = m1["psnr_db"]
    for lr, result in zip(FL_LRS[1:], lr_results):
        metrics[f"e5_psnr_db_lr_{lr:g}"] = _metrics(result)["psnr_db"]
    # a pass flag that reads a failed job is False (0 in metrics.json), never judged on a gap
    metrics["e1_pass"] = _ok(cafe1) and (m1["psnr_db"] >= 30 and m1["share_above_20db"] >= 0.9
                                         and m1["label_acc"] >= 0.95)
    metrics["e2_pass"] = _ok(cafe1) and _ok(dlg1) and metrics["e2_gap_db"] >= 15
    metrics["e4_pass"] = _ok(cafe1) and _ok(attacked[1]) and metrics["e4_psnr_drop_db"] >= 15

    def row(name: str, m: dict[str, float], share: bool = True) -> dict[str, Any]:
        return {"experiment": name, "psnr_db": m["psnr_db"],
                "share_above_20db": m["share_above_20db"] if share else "",
                "label_acc": m["label_acc"], "test_acc": ""}

    rows = [row("E1 CAFE (gd, frozen)", m1), row("E2 DLG (L-BFGS, matched)", md),
            row("E3 CAFE gamma=0", _metrics(no_repr)), row("E3 CAFE no index alignment", _metrics(no_align)),
            row("E3 CAFE lstsq", ml)]
    rows += [{"experiment": f"E4 {p['setting']}", "psnr_db": p["psnr_db"], "share_above_20db": "",
              "label_acc": p["label_acc"], "test_acc": p["test_acc"]} for p in points]
    rows += [{"experiment": f"E5 fl_lr={lr:g}", "psnr_db": metrics[f"e5_psnr_db_lr_{lr:g}"],
              "share_above_20db": "", "label_acc": "", "test_acc": ""} for lr in FL_LRS]
    cafe_runs = [r for r in results if isinstance(r, AttackResult)]
    notes = sorted({w for r in cafe_runs for w in r.warnings})
    failed = _record_failures(results, metrics, rows, notes, "experiment")
    attacks = {name: r for name, r in (("cafe", cafe1), ("dlg", dlg1), ("lstsq", lstsq)) if _ok(r)}
    return ValidationResult(metrics, rows, attacks, points, notes, failed)


def defense_sweep(iters: int = 3000, utility_epochs: int = 20, workers: int = 1, seed: int = 0,
                  grid: list[tuple[str, DefenseConfig]] | None = None,
                  cache_dir: str | None = None, device: str = "cpu",
                  job_timeout_s: float = 3600.0) -> ValidationResult:
    """CAFE PSNR and VFL test accuracy for every defence setting (plus none): the
    privacy/utility trade-off (paper Sec. 6.4) on digits, N = 80, K = 40. A failed job leaves
    its numbers null (NaN) and is named in ``failed``, a row and a warning."""
    check_positive(iters=iters, utility_epochs=utility_epochs, workers=workers)
    check_timeout(job_timeout_s)
    settings = [("none", DefenseConfig()), *(grid if grid is not None else DEFENSE_GRID)]
    jobs, names = [], []
    for label, defense in settings:
        jobs.append(_cafe_job(Scenario(seed=seed).with_defense(defense), iters, device))
        jobs.append(_utility_job(defense, utility_epochs, seed, device))
        names += [f"CAFE vs {label}", f"utility {label}"]
    results = run_jobs(jobs, workers, cache_dir, job_timeout_s, names)
    points, metrics = [], {}
    for k, (label, defense) in enumerate(settings):
        attack, utility = results[2 * k], results[2 * k + 1]
        m = _metrics(attack)
        points.append({"setting": label, "defense": defense.name, "psnr_db": m["psnr_db"],
                       "label_acc": m["label_acc"], "test_acc": _test_acc(utility)})
        key = label.replace(" ", "_").replace("(", "").replace(")", "")
        metrics[f"{key}_psnr_db"] = points[-1]["psnr_db"]
        metrics[f"{key}_test_acc"] = points[-1]["test_acc"]
    rows, notes = [dict(p) for p in points], []
    failed = _record_failures(results, metrics, rows, notes, "setting")
    return ValidationResult(metrics, rows, {}, points, notes, failed)


def factor_sweep(what: str = "fl_lr", values: list[float] | None = None, iters: int = 3000,
                 n_samples: int = 80, batch_size: int = 40, workers: int = 1, seed: int = 0,
                 cache_dir: str | None = None, device: str = "cpu",
                 job_timeout_s: float = 3600.0) -> ValidationResult:
    """CAFE on digits against one factor: ``batch`` size, ``parties`` or the training
    ``fl_lr`` (paper Sec. 6.2-6.3). One row per value (null numbers for a failed job), then a
    row naming each failed job."""
    if what not in SWEEP_DEFAULTS:
        raise ValueError(f"unknown sweep {what!r}; choose from {', '.join(SWEEP_DEFAULTS)} or defense")
    check_positive(iters=iters, n_samples=n_samples, batch_size=batch_size, workers=workers)
    check_timeout(job_timeout_s)
    values = list(values) if values else SWEEP_DEFAULTS[what]
    labels = [f"{value:g}" for value in values]
    if len(set(labels)) != len(labels):
        raise ValueError(f"--values names a value twice ({', '.join(labels)}); give each once")
    jobs, names = [], []
    for value in values:
        setting: dict[str, Any] = dict(n_samples=n_samples, batch_size=batch_size, seed=seed)
        if what == "batch":
            setting["batch_size"] = int(value)
        elif what == "parties":
            setting["parties"] = int(value)
        else:
            setting["fl_lr"] = float(value)
        scenario = Scenario(**setting)
        scenario.check()
        jobs.append(_cafe_job(scenario, iters, device))
        names.append(f"CAFE {what}={value:g}")
    results = run_jobs(jobs, workers, cache_dir, job_timeout_s, names)
    rows, metrics = [], {}
    for value, result in zip(values, results):
        m = _metrics(result)
        rows.append({what: value, "psnr_db": m["psnr_db"], "share_above_20db": m["share_above_20db"],
                     "label_acc": m["label_acc"], "iters_per_s": m["iters_per_s"]})
        metrics[f"psnr_db_{what}_{value:g}"] = m["psnr_db"]
        metrics[f"label_acc_{what}_{value:g}"] = m["label_acc"]
    notes = sorted({w for r in results if _ok(r) for w in r.warnings})
    failed = _record_failures(results, metrics, rows, notes, what)
    return ValidationResult(metrics, rows, {}, [], notes, failed)
