"""The spec's validation experiment (section 5): V1 baselines, V2 self-supervised physics SR
against the same network without physics, V3 RWAE uncertainty. Arms, seeds and statistics only:
a flat metrics dict and table rows; no argument parsing and no files written.

Training and the weight selection see only the ``*_lr.npz`` files; the HR of the test split is
read by the scoring step alone.
"""

from __future__ import annotations

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
    score,
    select_lambda,
    super_resolve,
    train_sr,
)
from paperzoo.advdiffsr.uncertainty import (
    latent_diagnostics,
    sample_ensemble,
    spread_map,
    spread_ratio,
)

PASS_OVER_BICUBIC = 0.85
PASS_OVER_NOPHYSICS = 0.9
PASS_LR_CONSISTENCY = 1e-3
COLLAPSE_THRESHOLD = 0.01


@dataclass
class ValidationConfig:
    """Sizes of the experiment; defaults fit about ten minutes on two idle cores at ``N = 32``."""

    seeds: int = 3
    steps: int = 200
    rwae_steps: int = 200
    samples: int = 16
    preset: str = "small"
    ls_sequences: int = 4
    ls_iterations: int = 300
    lambda_pde: str = "auto"
    selection_steps: int | None = None

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
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or value < (2 if name == "samples" else 1):
                raise ValueError(f"{name} must be a positive integer (samples >= 2), got {value!r}")
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


def _frames(truth: torch.Tensor) -> slice:
    return MID_WINDOW if truth.shape[1] > MID_WINDOW.start + 1 else slice(0, truth.shape[1])


def run_validation(
    data_dir: str | Path,
    config: ValidationConfig | None = None,
    device: str = "cpu",
    oracle_hr: torch.Tensor | None = None,
    **trainer_options,
) -> ValidationResult:
    """V1-V3 on ``data_dir`` (the files ``simulate`` writes). ``oracle_hr``, the HR of the training
    split (``oracle.oracle_training_hr``), adds the HR-supervised upper bound as a reported row
    (``oracle_*`` metrics); it gates nothing and no other arm sees it."""
    config = config or ValidationConfig()
    data_dir = Path(data_dir)
    train, val, test = (load_lr(data_dir / f"{split}_lr.npz") for split in ("train", "val", "test"))
    truth = EvalDataset(data_dir / "test_hr.npz").hr  # scoring only
    if tuple(truth.shape[:2]) != tuple(test.lr.shape[:2]) or truth.shape[-1] != test.hr_size:
        raise ValueError(
            f"{data_dir / 'test_hr.npz'}: hr {tuple(truth.shape)} does not match test LR "
            f"{tuple(test.lr.shape)} at scale {test.scale}"
        )
    frames = _frames(truth)
    metrics: dict[str, float] = {}
    rows: list[dict] = []
    figures: dict = {"truth": truth, "curves": {}, "lr": test.lr}

    def record(name: str, pred: torch.Tensor, extra: dict | None = None) -> dict:
        scores = score(pred.double(), truth, test)
        figures["curves"][name] = scores.pop("per_frame")
        rows.append(
            {
                "check": name,
                **{
                    k: scores[k]
                    for k in (
                        "rel_l2",
                        "rel_l2_first",
                        "mae",
                        "ssim",
                        "high_k_ratio",
                        "pde_residual",
                        "lr_consistency",
                    )
                },
                **(extra or {}),
            }
        )
        return scores

    # V1 baselines
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
    ls_count = min(config.ls_sequences, test.num_sequences)
    subset = test.subset(range(ls_count))
    least_squares = physics_least_squares(subset, config.ls_iterations)
    ls_truth = truth[:ls_count]
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

    # V2 physics (weight chosen on LR hold-out with seed 0) and no-physics, same seeds
    base = TrainConfig(
        preset=config.preset, steps=config.steps, window=min(16, train.frames), seed=0
    )
    if config.lambda_pde == "auto":
        selection = select_lambda(
            train, val, replace(base, steps=config.selection_steps), device, **trainer_options
        )
        winner = replace(selection.config, steps=config.steps)
        metrics["physics_candidate"] = [name for name, _, _ in LAMBDA_CANDIDATES].index(
            selection.candidate
        )
        metrics["holdout_tolerance"] = selection.candidates[0]["tolerance"]
        for cand in selection.candidates:
            metrics[f"holdout_error_{cand['candidate']}"] = cand["holdout_error"]
            rows.append(
                {
                    "check": f"V2 selection {cand['candidate']}",
                    "holdout_error": cand["holdout_error"],
                }
            )
    else:
        winner = replace(base, projection="hard", lambda_pde=float(config.lambda_pde))
        metrics["physics_candidate"] = 0
    physics_runs = [
        train_sr(train, replace(winner, seed=s), device=device, **trainer_options)
        for s in range(config.seeds)
    ]
    nophysics_runs = [
        train_sr(train, replace(base, arm="nophysics", seed=s), device=device, **trainer_options)
        for s in range(config.seeds)
    ]
    phys_scores, noph_scores = [], []
    for seed, (phys_run, noph_run) in enumerate(zip(physics_runs, nophysics_runs)):
        phys_pred = super_resolve(phys_run.model, test, device)
        noph_pred = super_resolve(noph_run.model, test, device)
        phys_scores.append(
            record(f"V2 physics seed {seed}", phys_pred, {"seconds": phys_run.seconds})
        )
        noph_scores.append(
            record(f"V2 no-physics seed {seed}", noph_pred, {"seconds": noph_run.seconds})
        )
        metrics[f"physics_rel_l2_seed{seed}"] = phys_scores[-1]["rel_l2"]
        metrics[f"nophysics_rel_l2_seed{seed}"] = noph_scores[-1]["rel_l2"]
        if seed == 0:
            figures["physics"], figures["nophysics"] = phys_pred, noph_pred
            figures["physics_history"] = phys_run.history
            metrics["physics_on_ls_subset_rel_l2"] = M.rel_l2(
                phys_pred[:ls_count, frames], ls_truth[:, frames]
            )

    if (
        oracle_hr is not None
    ):  # the upper bound: reported beside the arms, never a baseline or a gate
        from paperzoo.advdiffsr.oracle import train_oracle

        oracle_run = train_oracle(train, oracle_hr, base, device, **trainer_options)
        oracle = record(
            "V2 oracle (HR-supervised upper bound)",
            super_resolve(oracle_run.model, test, device),
            {"seconds": oracle_run.seconds},
        )
        metrics.update(
            oracle_rel_l2=oracle["rel_l2"],
            oracle_pde_residual=oracle["pde_residual"],
            oracle_lr_consistency=oracle["lr_consistency"],
            oracle_ssim=oracle["ssim"],
            oracle_over_bicubic=oracle["rel_l2"] / bic["rel_l2"],
        )

    def mean(values):
        return float(sum(values) / len(values))

    metrics["physics_rel_l2"] = mean([s["rel_l2"] for s in phys_scores])
    metrics["nophysics_rel_l2"] = mean([s["rel_l2"] for s in noph_scores])
    metrics["physics_rel_l2_first"] = mean([s["rel_l2_first"] for s in phys_scores])
    metrics["physics_over_bicubic_max"] = max(s["rel_l2"] for s in phys_scores) / bic["rel_l2"]
    metrics["physics_over_projected_max"] = max(s["rel_l2"] for s in phys_scores) / proj["rel_l2"]
    metrics["physics_over_nophysics_max"] = max(
        p["rel_l2"] / n["rel_l2"] for p, n in zip(phys_scores, noph_scores)
    )
    metrics["physics_pde_residual"] = mean([s["pde_residual"] for s in phys_scores])
    metrics["nophysics_pde_residual"] = mean([s["pde_residual"] for s in noph_scores])
    metrics["physics_pde_residual_all"] = mean([s["pde_residual_all"] for s in phys_scores])
    metrics["physics_over_bicubic_pde_residual_max"] = (
        max(s["pde_residual"] for s in phys_scores) / bic["pde_residual"]
    )
    metrics["physics_lr_consistency"] = max(s["lr_consistency"] for s in phys_scores)
    metrics["physics_high_k_ratio"] = mean([s["high_k_ratio"] for s in phys_scores])
    metrics["physics_ssim"] = mean([s["ssim"] for s in phys_scores])
    metrics["physics_mae"] = mean([s["mae"] for s in phys_scores])
    if oracle_hr is not None:
        metrics["physics_over_oracle_max"] = (
            max(s["rel_l2"] for s in phys_scores) / metrics["oracle_rel_l2"]
        )
    metrics["physics_steps"] = config.steps
    metrics["seeds"] = config.seeds
    # a physics net far better than the least-squares optimum of its own loss suggests leakage
    metrics["warning_physics_beats_ls"] = int(
        metrics["physics_on_ls_subset_rel_l2"] < 0.9 * metrics["physics_ls_rel_l2"]
    )
    metrics["pass_physics_over_bicubic"] = int(
        metrics["physics_over_bicubic_max"] <= PASS_OVER_BICUBIC
    )
    metrics["pass_physics_over_nophysics"] = int(
        metrics["physics_over_nophysics_max"] <= PASS_OVER_NOPHYSICS
    )
    metrics["pass_pde_residual"] = int(
        all(s["pde_residual"] < bic["pde_residual"] for s in phys_scores)
    )
    metrics["pass_lr_consistency"] = int(metrics["physics_lr_consistency"] <= PASS_LR_CONSISTENCY)

    # V3 RWAE (the winner's projection and weight), K prior trajectories
    rwae_config = replace(winner, arm="rwae", steps=config.rwae_steps, seed=0)
    rwae = train_sr(train, rwae_config, device=device, **trainer_options)
    samples = sample_ensemble(rwae.model, test, config.samples, seed=0, device=device)
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
        rwae_steps=config.rwae_steps,
        rwae_samples=config.samples,
    )
    # why the ensemble is as wide as it is (LR only): latent stds, the PDE gain of the latent
    metrics.update(
        {f"rwae_{k}": v for k, v in latent_diagnostics(rwae.model, test, device=device).items()}
    )
    collapsed = not ratio >= COLLAPSE_THRESHOLD
    metrics["rwae_collapse"] = int(collapsed)
    metrics["pass_rwae_lr_consistency"] = int(
        metrics["rwae_sample_lr_consistency_max"] <= PASS_LR_CONSISTENCY
    )
    metrics["pass_rwae_crps_below_bicubic_mae"] = int(metrics["rwae_crps"] < metrics["bicubic_mae"])
    metrics["pass_rwae_coverage_order"] = int(
        metrics["rwae_coverage_90"] > metrics["rwae_coverage_50"]
    )
    rows.append(
        {
            "check": "V3 RWAE ensemble mean",
            "rel_l2": metrics["rwae_rel_l2"],
            "crps": metrics["rwae_crps"],
            "coverage_50": metrics["rwae_coverage_50"],
            "coverage_90": metrics["rwae_coverage_90"],
            "spread_ratio": ratio,
            "lr_consistency": metrics["rwae_sample_lr_consistency_max"],
        }
    )
    figures.update(samples=samples, spread=spread, rank_hist=hist, rwae_history=rwae.history)
    return ValidationResult(metrics, rows, figures, collapsed)
