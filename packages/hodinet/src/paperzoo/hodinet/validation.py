"""The spec's validation experiment (section 5) on the generated RGB-D scenes.

Arms with the same data, data order and budget: ``rgb_only`` (seed 0), ``add_fusion`` and
``hodinet_tiny`` (seeds 0, 1); causal checks on HODINet (each test RGB with another same-kind
scene's depth; zero depth) and a metric self-test. Returns a flat metrics dict and table rows; no
argument parsing, no file writing.

Every (arm, seed) is an independent job on the core's :class:`~paperzoo.core.jobs.JobRunner`
(``workers`` spawned processes, or this process with one worker or a device other than the CPU);
each job seeds what it draws from, so the metrics do not depend on ``workers``. A job that raises,
runs past ``job_timeout_s`` or loses its worker is recorded (``jobs_failed``, a row and a log line
naming it) and the other jobs are still scored; an arm with a failed seed keeps its other seeds'
``_seed<s>`` values but gets no mean, and every derived metric and pass flag that reads it is
absent or 0.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from paperzoo.core.jobs import JobFailure, JobRunner, check_timeout
from paperzoo.hodinet.pipeline import METRIC_NAMES, EvalResult, evaluate_sod, train_sod
from paperzoo.hodinet.scenes import KINDS, SyntheticRGBDScenes

ARMS = (("rgbonly", "rgb_only_tiny"), ("addfusion", "add_fusion_tiny"), ("hodinet", "tiny"))
PREFIX = {preset: prefix for prefix, preset in ARMS}


@dataclass
class ValidationConfig:
    """Sizes of the experiment (spec section 5 defaults). ``job_timeout_s``: the longest one
    (arm, seed) job may run in a worker process before it is recorded as failed."""

    n_train: int = 900
    n_test: int = 300
    size: int = 64
    steps: int = 300
    batch_size: int = 16
    lr: float = 2e-3
    clip: float = 0.5
    seeds: int = 2
    rgb_only_seeds: int = 1
    data_seed: int = 0
    threads: int = 1
    workers: int = 1
    time_budget_s: float = 540.0
    fallback_steps: int = 250
    job_timeout_s: float = 3600.0

    def check(self) -> None:
        for name in ("n_train", "n_test", "steps", "batch_size", "seeds", "rgb_only_seeds", "threads", "workers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.n_test < 2 * len(KINDS):
            raise ValueError(f"n_test must be >= {2 * len(KINDS)} (two scenes per kind for the shuffle), got {self.n_test}")
        if self.size != 64:
            raise ValueError(f"size must be 64 (the tiny preset's Swin input), got {self.size}")
        if not (self.lr > 0 and self.clip >= 0):
            raise ValueError(f"lr must be > 0 and clip >= 0, got lr={self.lr}, clip={self.clip}")
        if not (self.time_budget_s >= 0 and math.isfinite(self.time_budget_s)):
            raise ValueError(f"time_budget_s must be a finite number >= 0 (0: no budget), got {self.time_budget_s}")
        if self.fallback_steps < 1:
            raise ValueError(f"fallback_steps must be >= 1, got {self.fallback_steps}")
        check_timeout(self.job_timeout_s)


@dataclass
class ValidationResult:
    metrics: dict[str, float]
    rows: list[dict]
    test: SyntheticRGBDScenes
    probs: dict[str, torch.Tensor] = field(default_factory=dict)
    curves: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    losses: dict[str, list[float]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)  # failed job's name -> its error


def same_kind_derangement(kinds: Sequence[str], seed: int = 0) -> torch.Tensor:
    """A seeded permutation that maps every scene to *another* scene of the same kind."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.arange(len(kinds))
    for kind in dict.fromkeys(kinds):
        index = torch.tensor([i for i, k in enumerate(kinds) if k == kind])
        if len(index) < 2:
            raise ValueError(f"kind {kind!r} has {len(index)} scene(s); a derangement needs two")
        # a random cyclic shift of a random order has no fixed point
        perm = index[torch.randperm(len(index), generator=generator)]
        order[perm] = perm.roll(1)
    return order


def metric_selftest() -> dict[str, bool]:
    """The metrics on maps with hand-known values (spec section 5)."""
    from paperzoo.hodinet import metrics as M

    gt = torch.zeros(1, 1, 10, 12)
    gt[..., 2:7, 3:9] = 1
    n = gt.numel()
    checks = {
        "perfect_s": math.isclose(float(M.s_measure(gt, gt)), 1.0, abs_tol=1e-12),
        "perfect_mae": float(M.mae(gt, gt)) == 0.0,
        "perfect_maxf": math.isclose(float(M.f_measure_curves(gt, gt)[2].max()), 1.0, abs_tol=1e-12),
        "perfect_maxe": math.isclose(float(M.e_measure_curves(gt, gt).max()), n / (n - 1), rel_tol=1e-12),
    }
    pred = torch.linspace(0, 1, n).view(1, 1, 10, 12)
    p = M.prepare(pred, gt)[0]
    checks["zero_gt_s"] = math.isclose(float(M.s_measure(pred, torch.zeros_like(gt))), 1 - float(p.mean()), abs_tol=1e-12)
    checks["one_gt_s"] = math.isclose(float(M.s_measure(pred, torch.ones_like(gt))), float(p.mean()), abs_tol=1e-12)
    return checks


def _train_and_score(config: ValidationConfig, train: SyntheticRGBDScenes, test: SyntheticRGBDScenes,
                     preset: str, seed: int, device: str, causal: bool) -> dict:
    """One arm and seed: train, score per kind; with ``causal`` also shuffled and zero depth."""
    from paperzoo.core.runtime import seed_everything
    from paperzoo.hodinet.model import create_model

    torch.set_num_threads(config.threads)
    seed_everything(seed)
    model = create_model(preset)
    run = train_sod(model, train, steps=config.steps, batch_size=config.batch_size, lr=config.lr,
                    clip=config.clip, seed=seed, device=device)
    record = {"preset": preset, "seed": seed, "run": (run.steps, run.seconds, run.losses),
              "result": evaluate_sod(model, test, device, keep_probs=seed == 0)}
    if causal:
        shuffle = same_kind_derangement(test.kinds, seed=seed)
        record["shuffled"] = evaluate_sod(model, test, device, depth_fn=lambda d: d[shuffle], keep_probs=seed == 0)
        # zero_depth_finite records whether these maps are finite: NaN maps must not abort validate
        record["zero"] = evaluate_sod(model, test, device, depth_fn=torch.zeros_like, keep_probs=True,
                                      allow_nonfinite=True)
    summary = {g: round(v["s"], 4) for g, v in record["result"].scores.items()}
    if causal:
        summary["camo_shuffled"] = round(record["shuffled"].scores["camo"]["s"], 4)
    print(f"{preset} seed {seed}: {run.seconds:.0f} s training, S {summary}", flush=True)
    return record


def _jobs(config: ValidationConfig) -> list[tuple[str, int, bool]]:
    """Every (preset, seed, causal checks) of the experiment."""
    return [(preset, seed, prefix == "hodinet") for prefix, preset in ARMS
            for seed in range(config.rgb_only_seeds if prefix == "rgbonly" else config.seeds)]


def seconds_per_step(preset: str, train: SyntheticRGBDScenes, batch_size: int, threads: int,
                     probe_steps: int = 4) -> float:
    """Measured cost of one Adam step of ``preset`` (forward, hybrid loss, backward, update) on
    ``threads`` threads, after one untimed step; the model is thrown away."""
    from paperzoo.hodinet.loss import hybrid_loss
    from paperzoo.hodinet.model import create_model

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        generator = torch.Generator().manual_seed(0)
        model = create_model(preset)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        index = torch.randint(len(train), (batch_size,), generator=generator).tolist()
        rgb, depth, gt = train.rgb[index], train.depth[index], train.gt[index]
        started = 0.0
        for step in range(probe_steps + 1):
            if step == 1:
                started = time.perf_counter()
            optimizer.zero_grad()
            hybrid_loss(model(rgb, depth)["side"], gt).backward()
            optimizer.step()
        return (time.perf_counter() - started) / probe_steps
    finally:
        torch.set_num_threads(previous)


def projected_training_seconds(config: ValidationConfig, step_seconds: dict[str, float]) -> float:
    """Training time of every job at ``config.steps``, the jobs shared by ``config.workers``
    processes (each job's steps times its preset's measured step cost)."""
    total = sum(config.steps * step_seconds[preset] for preset, _, _ in _jobs(config))
    return total / min(config.workers, len(_jobs(config)))


def choose_steps(config: ValidationConfig, step_seconds: dict[str, float]) -> tuple[int, float]:
    """Spec section 5: about 7 minutes at 300 steps; past 9 (``time_budget_s``), every arm drops to
    ``fallback_steps``. The choice is made once, before any arm trains, so every arm keeps the same
    budget. Returns (steps, projected seconds at ``config.steps``)."""
    projected = projected_training_seconds(config, step_seconds)
    if config.time_budget_s and projected > config.time_budget_s and config.fallback_steps < config.steps:
        return config.fallback_steps, projected
    return config.steps, projected


def job_name(preset: str, seed: int) -> str:
    """The name of one (arm, seed) job, e.g. ``hodinet seed 1``."""
    return f"{PREFIX[preset]} seed {seed}"


def _all_runs(config: ValidationConfig, train: SyntheticRGBDScenes, test: SyntheticRGBDScenes,
              device: str, log: Callable[[str], None]) -> list[dict]:
    """Every (arm, seed) on the core's JobRunner: ``config.workers`` spawned processes
    (``config.threads`` torch threads each) or, with one worker or a device other than the CPU,
    this process, one job after another. A job that raises, runs past ``config.job_timeout_s``
    (workers only) or loses its worker gives ``{"preset", "seed", "error"}``; the others go on.
    Returns one dict per job in ``_jobs`` order."""
    from paperzoo.core.runtime import torch_threads

    jobs = _jobs(config)
    names = [job_name(preset, seed) for preset, seed, _ in jobs]
    in_process = config.workers == 1 or device != "cpu"
    # the jobs set config.threads; in this process the caller's setting comes back afterwards
    with torch_threads(0), JobRunner(1 if in_process else config.workers, config.job_timeout_s) as runner:
        for name, (preset, seed, causal) in zip(names, jobs):
            runner.submit(name, _train_and_score, config, train, test, preset, seed, device, causal)
        done = runner.wait(names)
    records = []
    for name, (preset, seed, _) in zip(names, jobs):
        r = done[name]
        if isinstance(r, JobFailure):
            records.append({"preset": preset, "seed": seed, "error": r.reason})
            log(f"{name}: FAILED, {_first_line(r.reason)}")
            continue
        records.append(r)
        steps, seconds, losses = r["run"]
        log(f"{r['preset']} seed {r['seed']}: {steps} steps in {seconds:.0f} s, "
            f"loss {losses[0]:.3f} -> {losses[-1]:.3f}")
    return records


def _first_line(text: str) -> str:
    return str(text).splitlines()[0] if str(text).strip() else "(no message)"


def _mean_scores(results: Sequence[EvalResult]) -> dict[str, dict[str, float]]:
    groups = results[0].scores.keys()
    return {g: {m: float(np.mean([r.scores[g][m] for r in results])) for m in METRIC_NAMES} for g in groups}


def run_validation(config: ValidationConfig | None = None, device: str = "cpu",
                   log: Callable[[str], None] = print) -> ValidationResult:
    """Train every arm, score it per kind, run the causal checks; flat metrics and table rows."""
    config = config or ValidationConfig()
    config.check()
    started = time.perf_counter()
    train = SyntheticRGBDScenes(config.n_train, config.size, seed=config.data_seed)
    test = SyntheticRGBDScenes(config.n_test, config.size, seed=config.data_seed + 1)
    metrics: dict[str, float] = {}
    rows: list[dict] = []
    out = ValidationResult(metrics, rows, test)
    planned_steps = config.steps
    if config.time_budget_s:
        step_seconds = {preset: seconds_per_step(preset, train, config.batch_size, config.threads)
                        for _, preset in ARMS}
        steps, projected = choose_steps(config, step_seconds)
        metrics["projected_train_seconds"] = projected
        log(f"projected training time at {config.steps} steps: {projected:.0f} s "
            f"(budget {config.time_budget_s:.0f} s){'' if steps == config.steps else f'; every arm drops to {steps} steps'}")
        config = replace(config, steps=steps)
    metrics["steps_reduced_for_time"] = int(config.steps != planned_steps)
    records = _all_runs(config, train, test, device, log)
    failed = [r for r in records if "error" in r]
    out.failures = {job_name(r["preset"], r["seed"]): r["error"] for r in failed}
    incomplete = {PREFIX[r["preset"]] for r in failed}
    for prefix, preset in ARMS:
        mine = sorted((r for r in records if r["preset"] == preset and "error" not in r),
                      key=lambda r: r["seed"])
        first = next((r for r in mine if r["seed"] == 0), None)  # the figures show seed 0
        if first is not None:
            out.probs[preset] = first["result"].probs
            out.losses[prefix] = first["run"][2]
            out.curves[prefix] = first["result"].curves["overall"]
        for r in mine:  # per seed, also for an arm with a failed seed
            for group, scores in r["result"].scores.items():
                for name in METRIC_NAMES:
                    metrics[f"{prefix}_{name}_{group}_seed{r['seed']}"] = scores[name]
        if prefix in incomplete:  # no mean over the seeds that happened to finish
            lost = ", ".join(str(r["seed"]) for r in failed if r["preset"] == preset)
            rows.append({"arm": prefix, "kind": "all",
                         "error": f"incomplete: seed {lost} failed, no mean (per-seed values in metrics.json)"})
        else:
            for group, row in _mean_scores([r["result"] for r in mine]).items():
                for name, value in row.items():
                    metrics[f"{prefix}_{name}_{group}"] = value
                rows.append({"arm": prefix, "kind": group, **row})
        if mine:  # the training time of the runs that finished
            metrics[f"{prefix}_train_seconds"] = float(sum(r["run"][1] for r in mine))
        if prefix == "hodinet":
            if first is not None:
                out.probs[f"{preset}_shuffled"] = first["shuffled"].probs
                out.curves["hodinet_shuffled"] = first["shuffled"].curves["overall"]
            if prefix not in incomplete:
                shuffled = _mean_scores([r["shuffled"] for r in mine])
                zero = _mean_scores([r["zero"] for r in mine])
                for group in shuffled:
                    metrics[f"hodinet_s_{group}_shuffled"] = shuffled[group]["s"]
                    metrics[f"hodinet_s_{group}_zerodepth"] = zero[group]["s"]
                    rows.append({"arm": "hodinet, shuffled depth", "kind": group, **shuffled[group]})
                metrics["zero_depth_finite"] = int(all(torch.isfinite(r["zero"].probs).all() for r in mine))
    checks = metric_selftest()
    metrics["metric_selftest"] = int(all(checks.values()))
    if "hodinet_s_overall" in metrics and "addfusion_s_overall" in metrics:
        metrics["hodinet_minus_addfusion_s"] = metrics["hodinet_s_overall"] - metrics["addfusion_s_overall"]
    if "hodinet_s_camo_shuffled" in metrics and "rgbonly_s_camo" in metrics:
        metrics["shuffle_gap_camo"] = metrics["hodinet_s_camo_shuffled"] - metrics["rgbonly_s_camo"]
    metrics.update(pass_flags(metrics))
    metrics["pass_all"] = int(all(metrics.get(k, 0) for k in (*PASS_RULES, "zero_depth_finite",
                                                               "metric_selftest")))
    for r in failed:
        rows.append({"arm": f"job {job_name(r['preset'], r['seed'])}", "kind": "",
                     "error": _first_line(r["error"])})
    metrics["jobs_failed"] = len(failed)
    metrics["steps"] = config.steps
    metrics["seeds"] = config.seeds
    metrics["seconds"] = time.perf_counter() - started
    return out


# pass line of spec section 5 -> (the metrics it reads, the rule); a line whose metrics are absent
# (an arm with a failed job) is 0, never judged on the seeds that finished
PASS_RULES: dict[str, tuple[tuple[str, ...], Callable[[dict[str, float]], bool]]] = {
    "pass_hodinet_camo_both": (("hodinet_s_camo", "hodinet_s_both"),
                               lambda m: m["hodinet_s_camo"] >= 0.90 and m["hodinet_s_both"] >= 0.90),
    "pass_rgbonly_blind": (("rgbonly_s_camo",), lambda m: m["rgbonly_s_camo"] <= 0.70),
    "pass_vs_addfusion": (("hodinet_minus_addfusion_s",), lambda m: m["hodinet_minus_addfusion_s"] >= -0.01),
    "pass_shuffle": (("hodinet_s_camo_shuffled", "shuffle_gap_camo"),
                     lambda m: m["hodinet_s_camo_shuffled"] <= 0.75 and m["shuffle_gap_camo"] <= 0.05),
}


def pass_flags(metrics: dict[str, float]) -> dict[str, int]:
    """Every pass line of spec section 5: 1 = pass, 0 = fail or not judged (a metric absent)."""
    return {name: int(all(k in metrics for k in needs) and bool(rule(metrics)))
            for name, (needs, rule) in PASS_RULES.items()}


def failure_summary(failures: dict[str, str]) -> str:
    """One line naming every failed job and its error ("" when none failed)."""
    if not failures:
        return ""
    return (f"{len(failures)} validation job(s) failed ("
            + "; ".join(f"{name}: {_first_line(error)}" for name, error in failures.items()) + ")")
