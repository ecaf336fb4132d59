"""The spec's validation experiment (section 5): V1 baselines, V2 self-supervised physics SR
against the same network without physics, V3 RWAE uncertainty. Arms, seeds and statistics only:
a flat metrics dict and table rows; no argument parsing and no files written.

Training and the weight selection see only the ``*_lr.npz`` files; the HR of the test split is
read by the scoring step alone, in the calling process. The trainings are independent jobs
(the three hold-out candidates, every no-physics seed and the least squares first; every
physics seed and the RWAE once the hold-out has chosen), so ``workers > 1`` runs them in worker
processes (``paperzoo.core.jobs.JobRunner``) with the same numbers as ``workers=1``: each job reseeds what it
uses. A job that fails is recorded (``jobs_failed``, a row naming it) and the experiment goes
on without it; no gate passes on a missing arm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from paperzoo.advdiffsr import metrics as M
from paperzoo.advdiffsr.baselines import bicubic_baseline, physics_least_squares, projected_bicubic
from paperzoo.advdiffsr.data import EvalDataset, load_lr
from paperzoo.advdiffsr.pipeline import (
    LAMBDA_CANDIDATES,
    MID_WINDOW,
    TrainConfig,
    choose_candidate,
    evaluate_candidate,
    holdout_candidates,
    score,
    super_resolve,
    train_sr,
)
from paperzoo.advdiffsr.uncertainty import (
    latent_diagnostics,
    sample_ensemble,
    spread_map,
    spread_ratio,
)
from paperzoo.core.jobs import JobFailure, JobRunner, check_timeout

PASS_OVER_BICUBIC = 0.85
PASS_OVER_NOPHYSICS = 0.9
PASS_LR_CONSISTENCY = 1e-3
COLLAPSE_THRESHOLD = 0.01


@dataclass
class ValidationConfig:
    """Sizes of the experiment (the ``validate`` command passes its own defaults: two seeds at
    ``N = 64`` on two workers; these, three seeds in one process, are the ``N = 32`` run).
    ``workers``: processes for the independent trainings (1: all in this process);
    ``job_timeout_s``: the longest a job may run in a worker before it is recorded as failed;
    ``seed``: the first training seed: the arms train with seeds ``seed .. seed + seeds - 1``,
    and the hold-out weight choice, the RWAE, its ensemble draw, its latent diagnostics and the
    oracle use ``seed`` (0: the seeds 0, 1, ... the experiment has always used)."""

    seeds: int = 3
    steps: int = 200
    rwae_steps: int = 200
    samples: int = 16
    preset: str = "small"
    ls_sequences: int = 4
    ls_iterations: int = 300
    lambda_pde: str = "auto"
    selection_steps: int | None = None
    workers: int = 1
    job_timeout_s: float = 3600.0
    seed: int = 0

    def __post_init__(self) -> None:
        self.selection_steps = self.steps if self.selection_steps is None else self.selection_steps
        for name in (
            "seeds",
            "steps",
            "selection_steps",
            "rwae_steps",
            "samples",
            "ls_sequences",
            "ls_iterations",
            "workers",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or value < (2 if name == "samples" else 1):
                raise ValueError(f"{name} must be a positive integer (samples >= 2), got {value!r}")
        check_timeout(self.job_timeout_s)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        if self.lambda_pde != "auto":
            try:
                if float(self.lambda_pde) < 0:
                    raise ValueError
            except ValueError:
                raise ValueError(
                    f"lambda_pde must be 'auto' or a float >= 0, got {self.lambda_pde!r}"
                ) from None


@dataclass
class ValidationResult:
    metrics: dict[str, float]
    rows: list[dict]
    figures: dict = field(default_factory=dict)
    collapsed: bool = False
    failed: list[JobFailure] = field(default_factory=list)


def _frames(truth: torch.Tensor) -> slice:
    return MID_WINDOW if truth.shape[1] > MID_WINDOW.start + 1 else slice(0, truth.shape[1])


# Jobs: module-level so that a spawned worker can import them; LR files only (no HR, except the
# oracle's training HR, which only ``--oracle`` passes).


def candidate_job(
    train_path: Path, val_path: Path, config: TrainConfig, fraction: float, device: str, options
) -> tuple[float, torch.Tensor, float]:
    """One hold-out candidate: ``(pooled hidden-cell error, per-sequence errors, seconds)``."""
    run, error, errors = evaluate_candidate(
        load_lr(train_path), load_lr(val_path), config, fraction, device, **options
    )
    return error, errors, run.seconds


def sr_job(train_path: Path, test_path: Path, config: TrainConfig, device: str, options) -> dict:
    """Train one arm on the training LR and super-resolve the test LR."""
    run = train_sr(load_lr(train_path), config, device=device, **options)
    return {
        "prediction": super_resolve(run.model, load_lr(test_path), device),
        "history": run.history,
        "seconds": run.seconds,
    }


def least_squares_job(test_path: Path, count: int, iterations: int) -> torch.Tensor:
    """Physics least squares on the first ``count`` test sequences (LR only)."""
    return physics_least_squares(load_lr(test_path).subset(range(count)), iterations)


def rwae_job(
    train_path: Path, test_path: Path, config: TrainConfig, samples: int, device: str, options
) -> dict:
    """Train the RWAE, draw ``samples`` prior trajectories of the test LR and its latent
    diagnostics (LR only); the draws are seeded with the RWAE's training seed ``config.seed``."""
    test = load_lr(test_path)
    run = train_sr(load_lr(train_path), config, device=device, **options)
    return {
        "samples": sample_ensemble(run.model, test, samples, seed=config.seed, device=device),
        "diagnostics": latent_diagnostics(run.model, test, seed=config.seed, device=device),
        "history": run.history,
        "seconds": run.seconds,
    }


def oracle_job(
    train_path: Path, test_path: Path, hr: torch.Tensor, config: TrainConfig, device: str, options
) -> dict:
    """The HR-supervised upper bound (``oracle.py``): trained on the training HR it is given."""
    from paperzoo.advdiffsr.oracle import train_oracle

    run = train_oracle(load_lr(train_path), hr, config, device, **options)
    return {
        "prediction": super_resolve(run.model, load_lr(test_path), device),
        "seconds": run.seconds,
    }


def _mean(values: list[float]) -> float:
    return float(sum(values) / len(values)) if values else math.nan


def _max(values) -> float:
    values = list(values)
    return float(max(values)) if values else math.nan


RWAE_NAMES = (
    "rwae_sample_lr_consistency_max",
    "rwae_spread_ratio",
    "rwae_coverage_50",
    "rwae_coverage_90",
    "rwae_crps",
    "rwae_rel_l2",
)


def run_validation(
    data_dir: str | Path,
    config: ValidationConfig | None = None,
    device: str = "cpu",
    oracle_hr: torch.Tensor | None = None,
    **trainer_options,
) -> ValidationResult:
    """V1-V3 on ``data_dir`` (the files ``simulate`` writes). ``oracle_hr``, the HR of the training
    split (``oracle.oracle_training_hr``), adds the HR-supervised upper bound as a reported row
    (``oracle_*`` metrics); it gates nothing and no other arm sees it. ``config.workers``
    processes run the independent trainings; the numbers do not depend on it."""
    config = config or ValidationConfig()
    data_dir = Path(data_dir)
    paths = {split: data_dir / f"{split}_lr.npz" for split in ("train", "val", "test")}
    train, val, test = (load_lr(paths[split]) for split in ("train", "val", "test"))
    truth = EvalDataset(data_dir / "test_hr.npz").hr  # scoring only
    if tuple(truth.shape[:2]) != tuple(test.lr.shape[:2]) or truth.shape[-1] != test.hr_size:
        raise ValueError(
            f"{data_dir / 'test_hr.npz'}: hr {tuple(truth.shape)} does not match test LR "
            f"{tuple(test.lr.shape)} at scale {test.scale}"
        )
    frames = _frames(truth)
    with JobRunner(config.workers, config.job_timeout_s) as runner:
        return _run(
            runner,
            paths,
            train,
            val,
            test,
            truth,
            frames,
            config,
            device,
            oracle_hr,
            trainer_options,
        )


def _run(runner, paths, train, val, test, truth, frames, config, device, oracle_hr, options):
    metrics: dict[str, float] = {}
    rows: list[dict] = []
    figures: dict = {"truth": truth, "curves": {}, "lr": test.lr}
    seeds = range(config.seed, config.seed + config.seeds)

    def record(name: str, pred: torch.Tensor, extra: dict | None = None) -> dict:
        scores = score(pred.double(), truth, test)
        figures["curves"][name] = scores.pop("per_frame")
        keys = ("rel_l2", "rel_l2_first", "mae", "ssim", "high_k_ratio", "pde_residual")
        rows.append(
            {
                "check": name,
                **{k: scores[k] for k in (*keys, "lr_consistency")},
                **(extra or {}),
            }
        )
        return scores

    # Jobs that need nothing but the LR files: the hold-out candidates first (they gate the
    # physics seeds and the RWAE), then the no-physics seeds, the least squares, the oracle.
    base = TrainConfig(
        preset=config.preset, steps=config.steps, window=min(16, train.frames), seed=config.seed
    )
    fraction = 0.1
    candidates = []
    if config.lambda_pde == "auto":
        for name, run_config in holdout_candidates(
            replace(base, steps=config.selection_steps), fraction
        ):
            candidates.append((name, f"candidate {name}"))
            runner.submit(
                f"candidate {name}",
                candidate_job,
                paths["train"],
                paths["val"],
                run_config,
                fraction,
                device,
                options,
            )
    for seed in seeds:
        runner.submit(
            f"nophysics seed {seed}",
            sr_job,
            paths["train"],
            paths["test"],
            replace(base, arm="nophysics", seed=seed),
            device,
            options,
        )
    ls_count = min(config.ls_sequences, test.num_sequences)
    runner.submit("least squares", least_squares_job, paths["test"], ls_count, config.ls_iterations)
    if oracle_hr is not None:  # the upper bound: reported beside the arms, never a gate
        runner.submit(
            "oracle", oracle_job, paths["train"], paths["test"], oracle_hr, base, device, options
        )

    # V1 baselines (in this process while the workers train)
    bicubic = bicubic_baseline(test)
    bic = record("V1 bicubic", bicubic)
    proj = record("V1 projected bicubic", projected_bicubic(test))
    smooth = record("V1 projected bicubic (smooth lift)", projected_bicubic(test, lift="bicubic"))
    metrics["projected_bicubic_smooth_rel_l2"] = smooth["rel_l2"]
    figures["bicubic"] = bicubic
    metrics.update(
        bicubic_rel_l2=bic["rel_l2"],
        bicubic_mae=bic["mae"],
        bicubic_pde_residual=bic["pde_residual"],
        bicubic_rel_l2_first=bic["rel_l2_first"],
        bicubic_pde_residual_all=bic["pde_residual_all"],
        bicubic_high_k_ratio=bic["high_k_ratio"],
        projected_bicubic_rel_l2=proj["rel_l2"],
        projected_bicubic_pde_residual=proj["pde_residual"],
    )

    # V2 weight choice on LR hold-out (the first seed), then the jobs that need the winner
    selection_rows = []
    if candidates:
        done = runner.wait(job for _, job in candidates)
        outcomes = [
            (name, *done[job]) for name, job in candidates if not isinstance(done[job], JobFailure)
        ]
        if outcomes:
            selection = choose_candidate(base, outcomes)
            winner = replace(selection.config, steps=config.steps)
            metrics["physics_candidate"] = [name for name, _, _ in LAMBDA_CANDIDATES].index(
                selection.candidate
            )
            metrics["holdout_tolerance"] = selection.candidates[0]["tolerance"]
            for cand in selection.candidates:
                metrics[f"holdout_error_{cand['candidate']}"] = cand["holdout_error"]
                selection_rows.append(
                    {
                        "check": f"V2 selection {cand['candidate']}",
                        "holdout_error": cand["holdout_error"],
                    }
                )
        else:  # every candidate failed (recorded below): train the spec's first candidate
            winner = replace(base, projection="hard", lambda_pde=1.0)
            metrics["physics_candidate"] = math.nan
    else:
        winner = replace(base, projection="hard", lambda_pde=float(config.lambda_pde))
        metrics["physics_candidate"] = 0
    rwae_config = replace(winner, arm="rwae", steps=config.rwae_steps, seed=config.seed)
    # front of the queue, longest first: the RWAE, then the physics seeds in order
    for seed in reversed(seeds):
        runner.submit(
            f"physics seed {seed}",
            sr_job,
            paths["train"],
            paths["test"],
            replace(winner, seed=seed),
            device,
            options,
            first=True,
        )
    runner.submit(
        "rwae",
        rwae_job,
        paths["train"],
        paths["test"],
        rwae_config,
        config.samples,
        device,
        options,
        first=True,
    )
    names = [
        *(job for _, job in candidates),
        *(f"nophysics seed {s}" for s in seeds),
        "least squares",
        *(["oracle"] if oracle_hr is not None else []),
        *(f"physics seed {s}" for s in seeds),
        "rwae",
    ]
    done = runner.wait(names)
    failed = [done[name] for name in names if isinstance(done[name], JobFailure)]

    # V1 physics least squares (a reference)
    least_squares = done["least squares"]
    ls_truth = truth[:ls_count]
    if isinstance(least_squares, JobFailure):
        for key in ("physics_ls_rel_l2", "physics_ls_rel_l2_first", "physics_ls_pde_residual"):
            metrics[key] = math.nan
    else:
        subset = test.subset(range(ls_count))
        metrics["physics_ls_rel_l2"] = M.rel_l2(least_squares[:, frames], ls_truth[:, frames])
        metrics["physics_ls_rel_l2_first"] = M.rel_l2(least_squares[:, 0], ls_truth[:, 0])
        metrics["physics_ls_pde_residual"] = M.pde_residual_rms(
            least_squares, subset.u, subset.kappa, subset.dt_obs, subset.lr
        )
    rows.append(
        {
            "check": f"V1 physics least squares ({ls_count} sequences)",
            "rel_l2": metrics["physics_ls_rel_l2"],
            "rel_l2_first": metrics["physics_ls_rel_l2_first"],
            "pde_residual": metrics["physics_ls_pde_residual"],
        }
    )
    rows.extend(selection_rows)

    # V2 physics and no-physics, same seeds
    phys_scores, noph_scores = {}, {}
    for seed in seeds:
        for arm, scores in (("physics", phys_scores), ("nophysics", noph_scores)):
            run = done[f"{arm} seed {seed}"]
            if isinstance(run, JobFailure):
                continue
            label = "physics" if arm == "physics" else "no-physics"
            scores[seed] = record(
                f"V2 {label} seed {seed}", run["prediction"], {"seconds": run["seconds"]}
            )
            metrics[f"{arm}_rel_l2_seed{seed}"] = scores[seed]["rel_l2"]
            if arm not in figures:  # the first seed unless it failed
                figures[arm] = run["prediction"]
                if arm == "physics":
                    figures["physics_history"] = run["history"]
                    metrics["physics_on_ls_subset_rel_l2"] = M.rel_l2(
                        run["prediction"][:ls_count, frames], ls_truth[:, frames]
                    )

    oracle_run = done.get("oracle")
    if oracle_run is not None and not isinstance(oracle_run, JobFailure):
        oracle = record(
            "V2 oracle (HR-supervised upper bound)",
            oracle_run["prediction"],
            {"seconds": oracle_run["seconds"]},
        )
        metrics.update(
            oracle_rel_l2=oracle["rel_l2"],
            oracle_pde_residual=oracle["pde_residual"],
            oracle_lr_consistency=oracle["lr_consistency"],
            oracle_ssim=oracle["ssim"],
            oracle_over_bicubic=oracle["rel_l2"] / bic["rel_l2"],
        )

    phys, noph = list(phys_scores.values()), list(noph_scores.values())
    complete = len(phys_scores) == len(noph_scores) == config.seeds
    metrics["physics_rel_l2"] = _mean([s["rel_l2"] for s in phys])
    metrics["nophysics_rel_l2"] = _mean([s["rel_l2"] for s in noph])
    metrics["physics_rel_l2_first"] = _mean([s["rel_l2_first"] for s in phys])
    metrics["physics_over_bicubic_max"] = _max(s["rel_l2"] for s in phys) / bic["rel_l2"]
    metrics["physics_over_projected_max"] = _max(s["rel_l2"] for s in phys) / proj["rel_l2"]
    metrics["physics_over_nophysics_max"] = _max(
        phys_scores[s]["rel_l2"] / noph_scores[s]["rel_l2"]
        for s in seeds
        if s in phys_scores and s in noph_scores
    )
    metrics["physics_pde_residual"] = _mean([s["pde_residual"] for s in phys])
    metrics["nophysics_pde_residual"] = _mean([s["pde_residual"] for s in noph])
    metrics["physics_pde_residual_all"] = _mean([s["pde_residual_all"] for s in phys])
    metrics["physics_over_bicubic_pde_residual_max"] = (
        _max(s["pde_residual"] for s in phys) / bic["pde_residual"]
    )
    metrics["physics_lr_consistency"] = _max(s["lr_consistency"] for s in phys)
    metrics["physics_high_k_ratio"] = _mean([s["high_k_ratio"] for s in phys])
    metrics["physics_ssim"] = _mean([s["ssim"] for s in phys])
    metrics["physics_mae"] = _mean([s["mae"] for s in phys])
    if "oracle_rel_l2" in metrics:
        metrics["physics_over_oracle_max"] = (
            _max(s["rel_l2"] for s in phys) / metrics["oracle_rel_l2"]
        )
    metrics["physics_steps"] = config.steps
    metrics["seeds"] = config.seeds
    # a physics net far better than the least-squares optimum of its own loss suggests leakage
    on_subset = metrics.get("physics_on_ls_subset_rel_l2", math.nan)
    metrics["warning_physics_beats_ls"] = (
        int(on_subset < 0.9 * metrics["physics_ls_rel_l2"])
        if math.isfinite(on_subset) and math.isfinite(metrics["physics_ls_rel_l2"])
        else math.nan
    )
    # "in every seed": a gate passes only when every seed of the arms it compares ran
    metrics["pass_physics_over_bicubic"] = int(
        len(phys_scores) == config.seeds
        and metrics["physics_over_bicubic_max"] <= PASS_OVER_BICUBIC
    )
    metrics["pass_physics_over_nophysics"] = int(
        complete and metrics["physics_over_nophysics_max"] <= PASS_OVER_NOPHYSICS
    )
    metrics["pass_pde_residual"] = int(
        len(phys_scores) == config.seeds
        and all(s["pde_residual"] < bic["pde_residual"] for s in phys)
    )
    metrics["pass_lr_consistency"] = int(
        len(phys_scores) == config.seeds
        and metrics["physics_lr_consistency"] <= PASS_LR_CONSISTENCY
    )

    # V3 RWAE (the winner's projection and weight), K prior trajectories
    rwae = done["rwae"]
    metrics.update(rwae_steps=config.rwae_steps, rwae_samples=config.samples)
    collapsed = False
    if isinstance(rwae, JobFailure):
        metrics.update({name: math.nan for name in (*RWAE_NAMES, "rwae_collapse")})
        for name in (
            "pass_rwae_lr_consistency",
            "pass_rwae_crps_below_bicubic_mae",
            "pass_rwae_coverage_order",
        ):
            metrics[name] = 0
    else:
        samples = rwae["samples"]
        mid_samples, mid_truth = samples[:, :, frames].double(), truth[:, frames]
        consistency = M.lr_consistency_per_sample(samples, test.lr, test.scale, test.downsample)
        spread = spread_map(samples)
        ratio = spread_ratio(samples)
        skill = M.spread_skill(mid_samples, mid_truth)
        hist = M.rank_histogram(mid_samples, mid_truth)
        metrics.update(
            rwae_sample_lr_consistency_max=float(consistency.max()),
            rwae_spread_ratio=ratio,
            rwae_coverage_50=M.coverage(mid_samples, mid_truth, 0.5),
            rwae_coverage_90=M.coverage(mid_samples, mid_truth, 0.9),
            rwae_crps=M.crps_fair(mid_samples, mid_truth),
            rwae_rel_l2=M.rel_l2(samples.mean(0)[:, frames], mid_truth),
            rwae_spread_skill_ratio=skill["ratio"],
            rwae_spread_skill_slope=skill["slope"],
            rwae_spread_skill_spearman=skill["spearman"],
            rwae_rank_hist_max_dev=float((hist * hist.numel() - 1).abs().max()),
            rwae_spread_first_over_mid=float(spread[:, 0].mean() / spread[:, frames].mean()),
        )
        # why the ensemble is as wide as it is (LR only): latent stds, the PDE gain of the latent
        metrics.update({f"rwae_{k}": v for k, v in rwae["diagnostics"].items()})
        collapsed = not ratio >= COLLAPSE_THRESHOLD
        metrics["rwae_collapse"] = int(collapsed)
        metrics["pass_rwae_lr_consistency"] = int(
            metrics["rwae_sample_lr_consistency_max"] <= PASS_LR_CONSISTENCY
        )
        metrics["pass_rwae_crps_below_bicubic_mae"] = int(
            metrics["rwae_crps"] < metrics["bicubic_mae"]
        )
        metrics["pass_rwae_coverage_order"] = int(
            metrics["rwae_coverage_90"] > metrics["rwae_coverage_50"]
        )
        figures.update(samples=samples, spread=spread, rank_hist=hist, rwae_history=rwae["history"])
    rows.append(
        {
            "check": "V3 RWAE ensemble mean",
            "rel_l2": metrics["rwae_rel_l2"],
            "crps": metrics["rwae_crps"],
            "coverage_50": metrics["rwae_coverage_50"],
            "coverage_90": metrics["rwae_coverage_90"],
            "spread_ratio": metrics["rwae_spread_ratio"],
            "lr_consistency": metrics["rwae_sample_lr_consistency_max"],
        }
    )

    # what each job cost and where it ran; failures named
    records = {record.name: record for record in runner.records}
    for name in names:
        entry = records[name]
        rows.append(
            {
                "check": f"job {name}",
                "seconds": entry.wall_s,
                "cpu_seconds": entry.cpu_s,
                "worker": entry.pid,
                **({"error": done[name].reason.splitlines()[0]} if not entry.ok else {}),
            }
        )
    metrics["workers"] = config.workers
    metrics["jobs_failed"] = len(failed)
    metrics["jobs_cpu_seconds"] = float(
        sum(records[name].cpu_s for name in names if records[name].ok)
    )
    return ValidationResult(metrics, rows, figures, collapsed, failed)
