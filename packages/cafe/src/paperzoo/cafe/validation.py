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

from dataclasses import dataclass, field
from typing import Any

from paperzoo.cafe.config import DefenseConfig, Scenario, check_positive
from paperzoo.cafe.pipeline import AttackResult, run_jobs

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
    figures draw, the defence points and the warnings of every run."""

    metrics: dict[str, Any]
    rows: list[dict[str, Any]]
    attacks: dict[str, AttackResult]
    points: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)


def _cafe_job(scenario: Scenario, iters: int, device: str = "cpu", **extra: Any) -> tuple[str, dict[str, Any]]:
    return ("cafe", {"scenario": scenario.to_dict(), "iters": iters, "device": device, **extra})


def _utility_job(defense: DefenseConfig, epochs: int, seed: int, device: str = "cpu") -> tuple[str, dict[str, Any]]:
    return ("utility", {"defense": defense.__dict__.copy(), "epochs": epochs, "seed": seed, "device": device})


def _key(label: str) -> str:
    return label.split(" (")[0].replace(" ", "_")


def run_validation(iters: int = 3000, dlg_iters: int = 300, dlg_restarts: int = 2,
                   utility_epochs: int = 20, workers: int = 1, seed: int = 0,
                   cache_dir: str | None = None, device: str = "cpu") -> ValidationResult:
    """E1-E5 on digits (paper Sec. 6; the spec's validation), run as independent jobs."""
    check_positive(iters=iters, dlg_iters=dlg_iters, dlg_restarts=dlg_restarts,
                   utility_epochs=utility_epochs, workers=workers)
    base = Scenario(n_samples=80, batch_size=40, seed=seed)
    track = max(1, iters // 30)
    jobs = [
        _cafe_job(base, iters, device, track_every=track),
        ("dlg", {"scenario": base.to_dict(), "restarts": dlg_restarts, "iters": dlg_iters, "device": device}),
        _cafe_job(base, iters, device, config={"gamma_repr": 0.0, "seed": seed}),
        _cafe_job(base, iters, device, config={"index_aligned": False, "seed": seed}),
        _cafe_job(base, iters, device, config={"solver": "lstsq", "seed": seed}, track_every=track),
    ]
    jobs += [_cafe_job(Scenario(n_samples=80, batch_size=40, seed=seed, fl_lr=lr), iters, device)
             for lr in FL_LRS[1:]]
    settings = [("none", DefenseConfig()), *DEFENSE_GRID]
    for _, defense in settings:
        if defense.name != "none":
            jobs.append(_cafe_job(base.with_defense(defense), iters, device))
        jobs.append(_utility_job(defense, utility_epochs, seed, device))
    results = run_jobs(jobs, workers, cache_dir)

    cafe1, dlg1, no_repr, no_align, lstsq = results[:5]
    lr_results = results[5 : 5 + len(FL_LRS) - 1]
    rest = iter(results[5 + len(FL_LRS) - 1 :])
    points = []
    for label, defense in settings:
        attack = cafe1 if defense.name == "none" else next(rest)
        utility = next(rest)
        points.append({"setting": label, "defense": defense.name, "psnr_db": attack.metrics["psnr_db"],
                       "label_acc": attack.metrics["label_acc"], "test_acc": utility.test_acc})

    m1, md, ml = cafe1.metrics, dlg1.metrics, lstsq.metrics
    fake = points[1]
    metrics: dict[str, Any] = {
        "e1_psnr_db": m1["psnr_db"], "e1_share_above_20db": m1["share_above_20db"],
        "e1_label_acc": m1["label_acc"], "e1_ssim": m1["ssim"], "e1_block_psnr_db": m1["block_psnr_db"],
        "e1_iters_per_s": m1["iters_per_s"], "e1_rounds_per_sample_min": m1["rounds_per_sample_min"],
        "e2_dlg_psnr_db": md["psnr_db"], "e2_dlg_label_acc": md["label_acc"], "e2_dlg_ssim": md["ssim"],
        "e2_gap_db": m1["psnr_db"] - md["psnr_db"],
        "e3_psnr_db_no_repr": no_repr.metrics["psnr_db"],
        "e3_psnr_db_no_alignment": no_align.metrics["psnr_db"],
        "e3_psnr_db_lstsq": ml["psnr_db"],
        "e3_label_acc_lstsq": ml["label_acc"],
        "e3_lstsq_closed_form_solved": bool(ml["closed_form_solved"]),
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
        metrics[f"e5_psnr_db_lr_{lr:g}"] = result.metrics["psnr_db"]
    metrics["e1_pass"] = m1["psnr_db"] >= 30 and m1["share_above_20db"] >= 0.9 and m1["label_acc"] >= 0.95
    metrics["e2_pass"] = metrics["e2_gap_db"] >= 15
    metrics["e4_pass"] = metrics["e4_psnr_drop_db"] >= 15

    def row(name: str, m: dict[str, float], share: bool = True) -> dict[str, Any]:
        return {"experiment": name, "psnr_db": m["psnr_db"],
                "share_above_20db": m["share_above_20db"] if share else "",
                "label_acc": m["label_acc"], "test_acc": ""}

    rows = [row("E1 CAFE (gd, frozen)", m1), row("E2 DLG (L-BFGS, matched)", md),
            row("E3 CAFE gamma=0", no_repr.metrics), row("E3 CAFE no index alignment", no_align.metrics),
            row("E3 CAFE lstsq", ml)]
    rows += [{"experiment": f"E4 {p['setting']}", "psnr_db": p["psnr_db"], "share_above_20db": "",
              "label_acc": p["label_acc"], "test_acc": p["test_acc"]} for p in points]
    rows += [{"experiment": f"E5 fl_lr={lr:g}", "psnr_db": metrics[f"e5_psnr_db_lr_{lr:g}"],
              "share_above_20db": "", "label_acc": "", "test_acc": ""} for lr in FL_LRS]
    cafe_runs = [r for r in results if isinstance(r, AttackResult)]
    notes = sorted({w for r in cafe_runs for w in r.warnings})
    return ValidationResult(metrics, rows, {"cafe": cafe1, "dlg": dlg1, "lstsq": lstsq}, points, notes)


def defense_sweep(iters: int = 3000, utility_epochs: int = 20, workers: int = 1, seed: int = 0,
                  grid: list[tuple[str, DefenseConfig]] | None = None,
                  cache_dir: str | None = None, device: str = "cpu") -> ValidationResult:
    """CAFE PSNR and VFL test accuracy for every defence setting (plus none): the
    privacy/utility trade-off (paper Sec. 6.4) on digits, N = 80, K = 40."""
    check_positive(iters=iters, utility_epochs=utility_epochs, workers=workers)
    settings = [("none", DefenseConfig()), *(grid if grid is not None else DEFENSE_GRID)]
    jobs = []
    for _, defense in settings:
        jobs.append(_cafe_job(Scenario(seed=seed).with_defense(defense), iters, device))
        jobs.append(_utility_job(defense, utility_epochs, seed, device))
    results = run_jobs(jobs, workers, cache_dir)
    points, metrics = [], {}
    for k, (label, defense) in enumerate(settings):
        attack, utility = results[2 * k], results[2 * k + 1]
        points.append({"setting": label, "defense": defense.name, "psnr_db": attack.metrics["psnr_db"],
                       "label_acc": attack.metrics["label_acc"], "test_acc": utility.test_acc})
        key = label.replace(" ", "_").replace("(", "").replace(")", "")
        metrics[f"{key}_psnr_db"] = attack.metrics["psnr_db"]
        metrics[f"{key}_test_acc"] = utility.test_acc
    return ValidationResult(metrics, [dict(p) for p in points], {}, points)


def factor_sweep(what: str = "fl_lr", values: list[float] | None = None, iters: int = 3000,
                 n_samples: int = 80, batch_size: int = 40, workers: int = 1, seed: int = 0,
                 cache_dir: str | None = None, device: str = "cpu") -> ValidationResult:
    """CAFE on digits against one factor: ``batch`` size, ``parties`` or the training
    ``fl_lr`` (paper Sec. 6.2-6.3)."""
    if what not in SWEEP_DEFAULTS:
        raise ValueError(f"unknown sweep {what!r}; choose from {', '.join(SWEEP_DEFAULTS)} or defense")
    check_positive(iters=iters, n_samples=n_samples, batch_size=batch_size, workers=workers)
    values = list(values) if values else SWEEP_DEFAULTS[what]
    jobs = []
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
    results = run_jobs(jobs, workers, cache_dir)
    rows, metrics = [], {}
    for value, result in zip(values, results):
        m = result.metrics
        rows.append({what: value, "psnr_db": m["psnr_db"], "share_above_20db": m["share_above_20db"],
                     "label_acc": m["label_acc"], "iters_per_s": m["iters_per_s"]})
        metrics[f"psnr_db_{what}_{value:g}"] = m["psnr_db"]
        metrics[f"label_acc_{what}_{value:g}"] = m["label_acc"]
    notes = sorted({w for r in results for w in r.warnings})
    return ValidationResult(metrics, rows, {}, [], notes)
