"""The validation experiment of spec section 5: stream ablations, gCMDA vs plain fusion, the
classical noise-residual baseline and a robustness check, on the generated forgeries.

Arms (each learned one the same decoder, loss and schedule, ``steps`` steps at ``batch_size``):
``rgb`` (RGB only), ``nofreq`` (RGB + noise, gCMDA), ``nonoise`` (RGB + frequency, gCMDA),
``plain`` (three streams, concatenation fusion; ``seeds`` seeds), ``full`` (three streams, gCMDA;
``seeds`` seeds) and ``noisevar`` (no training). Returns a flat metrics dict and table rows; no
argument parsing and no file writing here.

Every learned (arm, seed) is an independent job on the core's :class:`~paperzoo.core.jobs.JobRunner`
(``workers`` processes with one torch thread each, or this process): each job seeds what it draws
from, so the metrics do not depend on ``workers``. A job that raises, runs past
``job_timeout_s`` or loses its worker is recorded (``jobs_failed``, a row naming it), the other
arms are still scored, and no pass flag is set on an arm with a missing seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from paperzoo.core.jobs import JobFailure, JobRunner, check_timeout, check_workers

ARMS: dict[str, dict[str, Any]] = {
    "rgb": {"streams": ("rgb",), "fusion": "plain"},
    "nofreq": {"streams": ("rgb", "noise"), "fusion": "gcmda"},
    "nonoise": {"streams": ("rgb", "freq"), "fusion": "gcmda"},
    "plain": {"streams": ("rgb", "noise", "freq"), "fusion": "plain"},
    "full": {"streams": ("rgb", "noise", "freq"), "fusion": "gcmda"},
}
MULTI_SEED_ARMS = ("plain", "full")
KINDS = ("noise", "blur", "jpeg")
ROBUSTNESS = {"jpeg75": "jpeg:75", "resize50": "resize:0.5"}


@dataclass(frozen=True)
class ValidationConfig:
    """Sizes of the experiment; the defaults are spec section 5's. ``job_timeout_s``: the
    longest one (arm, seed) training may run in a worker before it is recorded as failed."""

    num_train: int = 1600
    num_test: int = 300
    steps: int = 400
    batch_size: int = 16
    lr: float = 2e-3
    seeds: int = 3
    preset: str = "tiny"
    arms: tuple[str, ...] = tuple(ARMS)
    train_seed: int = 0
    test_seed: int = 1
    model_overrides: dict[str, Any] = field(default_factory=dict)
    job_timeout_s: float = 3600.0

    def __post_init__(self) -> None:
        for name in ("num_train", "num_test", "steps", "batch_size", "seeds"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_train < self.batch_size:
            raise ValueError(
                f"num_train ({self.num_train}) must be >= batch_size ({self.batch_size})"
            )
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        unknown = [a for a in self.arms if a not in ARMS]
        if unknown or not self.arms:
            raise ValueError(f"arms must be taken from {', '.join(ARMS)}, got {list(self.arms)}")
        check_timeout(self.job_timeout_s)

    def jobs(self, base_seed: int = 0) -> list[tuple[str, int]]:
        """``(arm, seed)`` pairs, longest first (three-stream arms), for the worker pool."""
        jobs = [
            (arm, base_seed + s)
            for arm in ("full", "plain")
            if arm in self.arms
            for s in range(self.seeds)
        ]
        return jobs + [(arm, base_seed) for arm in ("nofreq", "nonoise", "rgb") if arm in self.arms]


def run_arm(
    arm: str,
    seed: int,
    config: ValidationConfig,
    train_set,
    test_set,
    device: str = "cpu",
    robustness: bool = False,
) -> dict[str, Any]:
    """Train one arm with one seed and score it on the test set (and, when ``robustness``, after
    JPEG 75 and 0.5x resizing). Returns metrics and the trained weights."""
    import torch
    from torch.utils.data import DataLoader

    from paperzoo.tripinet.data import ForgeryDataset
    from paperzoo.tripinet.model import create_model
    from paperzoo.tripinet.pipeline import evaluate_localizer, train_localizer

    torch.manual_seed(seed)
    net = create_model(config.preset, **{**config.model_overrides, **ARMS[arm]})
    loader = DataLoader(
        ForgeryDataset(train_set, augment=True, seed=seed),
        batch_size=config.batch_size,
        shuffle=True,
        drop_last=True,
        generator=torch.Generator().manual_seed(seed),
    )
    result = train_localizer(
        net, loader, steps=config.steps, lr=config.lr, device=device, seed=seed, progress_bar=False
    )
    test_loader = DataLoader(ForgeryDataset(test_set), batch_size=50)
    metrics = evaluate_localizer(net, test_loader, device=device).metrics
    out = {
        "arm": arm,
        "seed": seed,
        "seconds": result.seconds,
        "final_loss": result.losses[-1],
        **metrics,
    }
    if robustness:
        for name, spec in ROBUSTNESS.items():
            robust = evaluate_localizer(net, test_loader, device=device, perturbation=spec).metrics
            out.update(
                {
                    f"robust_{name}_{k}": v
                    for k, v in robust.items()
                    if k in ("f1", "auc", "image_auc")
                }
            )
    out["state_dict"] = {k: v.cpu() for k, v in net.state_dict().items()}
    return out


def run_validation(
    config: ValidationConfig,
    train_set,
    test_set,
    workers: int = 1,
    base_seed: int = 0,
    device: str = "cpu",
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Every (arm, seed) job, in ``workers`` processes (one torch thread each) or, with
    ``workers=1`` or a device other than the CPU, one after another in this process on one
    thread. Returns one dict per job in ``config.jobs`` order: ``run_arm``'s result, or
    ``{"arm", "seed", "error"}`` for a job that failed; each with the job's ``job_seconds``,
    ``job_cpu_seconds`` and ``worker`` (process id)."""
    from paperzoo.core.runtime import progress as bar
    from paperzoo.core.runtime import torch_threads

    check_workers(workers)
    jobs = config.jobs(base_seed)
    robust_job = ("full", base_seed) if "full" in config.arms else None
    names = [f"{arm} seed {seed}" for arm, seed in jobs]
    in_process = workers == 1 or device != "cpu"
    with (
        torch_threads(1 if device == "cpu" else 0),
        JobRunner(1 if in_process else workers, config.job_timeout_s) as runner,
    ):
        submissions = zip(names, jobs, strict=True)
        if in_process and progress:  # the jobs run as they are submitted
            submissions = bar(list(submissions), desc="arms", total=len(jobs))
        for name, (arm, seed) in submissions:
            job = (arm, seed, config, train_set, test_set, device, (arm, seed) == robust_job)
            runner.submit(name, run_arm, *job)
        waits = bar(names, desc="arms", total=len(names)) if progress and not in_process else names
        done = {name: runner.wait([name])[name] for name in waits}
        records = {record.name: record for record in runner.records}
    results = []
    for name, (arm, seed) in zip(names, jobs, strict=True):
        outcome, record = done[name], records[name]
        if isinstance(outcome, JobFailure):
            outcome = {"arm": arm, "seed": seed, "error": outcome.reason}
        outcome.update(job_seconds=record.wall_s, job_cpu_seconds=record.cpu_s, worker=record.pid)
        results.append(outcome)
    return results


def baseline_scores(test_set) -> dict[str, float]:
    """The training-free noise-variance baseline on the test set."""
    from torch.utils.data import DataLoader

    from paperzoo.tripinet.baselines import NoiseVarianceBaseline
    from paperzoo.tripinet.data import ForgeryDataset
    from paperzoo.tripinet.pipeline import evaluate_scores

    return evaluate_scores(
        NoiseVarianceBaseline(), DataLoader(ForgeryDataset(test_set), batch_size=50)
    ).metrics


def summarise(
    results: Sequence[dict[str, Any]], baseline: dict[str, float], seconds: float | None = None
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """The flat metrics of spec section 5 (arm means over seeds, per-seed and per-kind values,
    robustness, pass flags) and one table row per arm. A result with an ``"error"`` (a failed
    job) is counted in ``jobs_failed`` and named in a row; an arm with a failed seed reports its
    other seeds' values (``<arm>_<metric>_seed<s>``) but no mean, and every pass flag that reads
    it is 0."""
    import numpy as np

    names = ("f1", "auc", "image_auc", *(f"f1_{k}" for k in KINDS))
    metrics: dict[str, float] = {}
    rows: list[dict[str, Any]] = []
    failed = [r for r in results if "error" in r]
    incomplete = {r["arm"] for r in failed}
    by_arm: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        by_arm.setdefault(result["arm"], [])
        if "error" not in result:
            by_arm[result["arm"]].append(result)
    for arm, runs in by_arm.items():
        row: dict[str, Any] = {"arm": arm, "seeds": len(runs)}
        if arm in incomplete:
            lost = ", ".join(str(r["seed"]) for r in failed if r["arm"] == arm)
            row["error"] = f"incomplete: seed {lost} failed, no mean"
        for name in names:
            values = [r[name] for r in runs if name in r]
            if values and arm not in incomplete:
                metrics[f"{arm}_{name}"] = float(np.mean(values))
                row[name] = float(np.mean(values))
                if len(runs) > 1:
                    metrics[f"{arm}_{name}_std"] = float(np.std(values, ddof=1))
            if values and (len(runs) > 1 or arm in incomplete):
                for r in runs:
                    if name in r:
                        metrics[f"{arm}_{name}_seed{r['seed']}"] = float(r[name])
        if runs:
            metrics[f"{arm}_train_seconds"] = float(np.mean([r["seconds"] for r in runs]))
            row["train_s"] = metrics[f"{arm}_train_seconds"]
        rows.append(row)
        for r in runs:
            for key, value in r.items():
                if key.startswith("robust_"):
                    metrics[key] = float(value)
    row = {"arm": "noisevar (no training)", "seeds": 0}
    for name in names:
        if name in baseline:
            metrics[f"noisevar_{name}"] = float(baseline[name])
            row[name] = float(baseline[name])
    rows.append(row)
    robust_seed = next((r["seed"] for r in results if any(k.startswith("robust_") for k in r)), 0)
    for name in ROBUSTNESS:
        if f"robust_{name}_f1" in metrics:
            rows.append(
                {
                    "arm": f"full seed {robust_seed} after {ROBUSTNESS[name]}",
                    "seeds": 1,
                    **{
                        k: metrics[f"robust_{name}_{k}"]
                        for k in ("f1", "auc", "image_auc")
                        if f"robust_{name}_{k}" in metrics
                    },
                }
            )
    if "full_f1" in metrics and "plain_f1" in metrics:
        metrics["full_minus_plain_f1"] = metrics["full_f1"] - metrics["plain_f1"]
    metrics.update(pass_flags(metrics))
    for flag, (arms, _, _) in PASS_RULES.items():
        if incomplete & set(arms):
            metrics[flag] = 0  # never judged on a missing seed
    for r in failed:
        rows.append(
            {"arm": f"job {r['arm']} seed {r['seed']}", "seeds": 0, "error": _first_line(r)}
        )
    metrics["jobs_failed"] = len(failed)
    metrics["jobs_cpu_seconds"] = float(
        sum(r.get("job_cpu_seconds", 0.0) for r in results if "error" not in r)
    )
    if seconds is not None:
        metrics["seconds"] = seconds
    return metrics, rows


def _first_line(result: dict[str, Any]) -> str:
    return str(result["error"]).splitlines()[0]


def failure_summary(results: Sequence[dict[str, Any]]) -> str:
    """One line naming every failed (arm, seed) job and its error ("" when none failed)."""
    failed = [r for r in results if "error" in r]
    if not failed:
        return ""
    return (
        f"{len(failed)} validation job(s) failed ("
        + "; ".join(f"{r['arm']} seed {r['seed']}: {_first_line(r)}" for r in failed)
        + ")"
    )


# pass line of spec section 5 -> (the arms it reads, the metrics it needs, the rule)
PASS_RULES: dict[str, tuple[tuple[str, ...], tuple[str, ...], Any]] = {
    "pass_rgb_f1_le_0.3": (("rgb",), ("rgb_f1",), lambda m: m["rgb_f1"] <= 0.3),
    "pass_nofreq_f1_ge_0.5": (("nofreq",), ("nofreq_f1",), lambda m: m["nofreq_f1"] >= 0.5),
    "pass_nofreq_auc_ge_0.9": (("nofreq",), ("nofreq_auc",), lambda m: m["nofreq_auc"] >= 0.9),
    "pass_full_f1_ge_0.5": (("full",), ("full_f1",), lambda m: m["full_f1"] >= 0.5),
    "pass_full_auc_ge_0.9": (("full",), ("full_auc",), lambda m: m["full_auc"] >= 0.9),
    "pass_full_image_auc_ge_0.8": (
        ("full",),
        ("full_image_auc",),
        lambda m: m["full_image_auc"] >= 0.8,
    ),
    "pass_full_minus_plain_ge_-0.02": (
        ("full", "plain"),
        ("full_minus_plain_f1",),
        lambda m: m["full_minus_plain_f1"] >= -0.02,
    ),
    "pass_nonoise_lower_on_noise": (
        ("full", "nonoise"),
        ("full_f1_noise", "nonoise_f1_noise"),
        lambda m: m["nonoise_f1_noise"] < m["full_f1_noise"],
    ),
    "pass_nofreq_lower_on_jpeg": (
        ("full", "nofreq"),
        ("full_f1_jpeg", "nofreq_f1_jpeg"),
        lambda m: m["nofreq_f1_jpeg"] < m["full_f1_jpeg"],
    ),
    "pass_full_beats_noisevar": (
        ("full",),
        ("full_f1", "noisevar_f1", "full_auc", "noisevar_auc"),
        lambda m: m["full_f1"] > m["noisevar_f1"] and m["full_auc"] > m["noisevar_auc"],
    ),
}


def pass_flags(m: dict[str, float]) -> dict[str, int]:
    """The pass lines of spec section 5 that the metrics present allow to judge (1 = pass)."""
    return {
        name: int(rule(m))
        for name, (_, needs, rule) in PASS_RULES.items()
        if all(k in m for k in needs)
    }
