"""The spec's validation experiment (section 5): unit facts, the shortcut probe, searched vs
vanilla vs random cells vs a hand CNN vs timm, in- vs cross-dataset search, the mechanism and the
partial-channel memory. Returns a flat metrics dict and table rows; writes nothing.

The independent units of work are jobs on the core's :class:`~paperzoo.core.jobs.JobRunner`:
one per (seed, arm) (a search arm's search and its retraining; each of the ``random`` arm's two
genotypes; the CNN; timm) and the V4 colour-cast control search. ``workers`` processes with one
torch thread each run them (1: one after another in this process); the unit facts, the memory
ratio and the probes run in this process. Every job seeds what it draws from, so the
metrics do not depend on ``workers``. A job that raises, runs past ``job_timeout_s`` or loses its
worker is recorded (``jobs_failed``, a row naming it) and the rest goes on: an arm with a missing
seed reports its other seeds but no mean, and ``pass_in_auc`` is 0. ``pass_in_auc`` is also 0 for
a run over a subset of the arms (``arms_run``, ``arm_ran_<arm>``, ``pass_in_auc_complete``), and a
one-seed ``_std`` is NaN (``null`` in metrics.json), not a zero spread. With ``workers=1`` or a
device other than the CPU the jobs run in this process and ``job_timeout_s`` does not apply."""

from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from paperzoo.core.jobs import JobFailure, JobRunner, check_timeout
from paperzoo.core.runtime import progress, torch_threads
from paperzoo.forgerynas.data import TensorFrames
from paperzoo.forgerynas.forgeries import make_domain, source_pools
from paperzoo.forgerynas.ops import CDCConv2d, cdc_explicit
from paperzoo.forgerynas.pipeline import (
    SearchConfig,
    TrainConfig,
    build_detector,
    check_restarts,
    evaluate_detector,
    search_architecture,
    split_halves,
    train_detector,
    warmup_steps,
)
from paperzoo.forgerynas.probe import shortcut_probe_auc
from paperzoo.forgerynas.search import architecture_step, weight_step
from paperzoo.forgerynas.search_space import Genotype, random_genotype
from paperzoo.forgerynas.supernet import CELL_TYPES, Supernet, saved_activation_bytes

__all__ = [
    "ValidationConfig",
    "ValidationResult",
    "run_validation",
    "unit_facts",
    "pc_memory_ratio",
    "ARMS",
    "cdc_share",
    "merge_metrics",
    "arm_detector",
]

ARMS = ("cdc_in", "cdc_cross", "vanilla", "random", "cnn", "timm")
# The ``random`` arm retrains two random genotypes of the forgery space per seed s (spec V3),
# drawn with seeds 100 + s and 200 + s; its per-seed AUC is their mean.
RANDOM_GENOTYPE_SEEDS = (100, 200)


@dataclass
class ValidationConfig:
    """Sizes of the reduced run (defaults measured to fit the time budget; see the README).
    ``workers``: processes for the independent searches and retrainings, one torch thread each
    (1: all in this process, on ``threads`` threads); ``job_timeout_s``: the longest one job may
    run in a worker before it is recorded as failed."""

    seeds: int = 3
    first_seed: int = 0
    size: int = 32
    n_train: int = 1600
    n_val: int = 400
    n_test: int = 600
    n_b: int = 600
    n_c: int = 800
    search_C: int = 4
    search_layers: int = 3
    search_steps: int = 2
    search_K: int = 2
    search_epochs: int = 3
    search_batches: int = 8
    search_batch_size: int = 32
    eval_C: int = 8
    eval_layers: int = 8
    train_epochs: int = 4
    train_batch_size: int = 32
    train_flips: bool = False
    train_lr_warmup_epochs: float = 0.0
    train_restarts: int = 0
    train_restart_check_epoch: int = 2
    train_restart_min_val_auc: float = 0.75
    train_restart_init: bool = False
    cnn_C: int = 16
    arms: tuple[str, ...] = ARMS
    mechanism: bool = True
    threads: int = 1
    workers: int = 1
    job_timeout_s: float = 3600.0

    def __post_init__(self) -> None:
        for name in (
            "seeds",
            "n_train",
            "n_val",
            "n_test",
            "n_b",
            "n_c",
            "search_C",
            "search_layers",
            "search_steps",
            "search_K",
            "search_epochs",
            "search_batches",
            "search_batch_size",
            "eval_C",
            "eval_layers",
            "train_epochs",
            "train_batch_size",
            "cnn_C",
            "threads",
            "workers",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(
                    f"validate option {name} must be a positive integer, got {value!r}"
                )
        if not isinstance(self.first_seed, int) or self.first_seed < 0:
            raise ValueError(
                f"validate option first_seed must be a non-negative integer, got {self.first_seed!r}"
            )
        if self.eval_C % 2:
            raise ValueError(
                f"validate option eval_C must be even (the pyramid net's reductions halve it), "
                f"got {self.eval_C}"
            )
        unknown = [a for a in self.arms if a not in ARMS]
        if unknown or not self.arms:
            raise ValueError(f"unknown arm(s) {unknown}; choose from {', '.join(ARMS)}")
        warmup_steps(
            self.train_lr_warmup_epochs,
            1,
            self.train_epochs,
            "validate option train_lr_warmup_epochs",
        )
        if not isinstance(self.train_restart_init, bool):
            raise ValueError(
                f"validate option train_restart_init must be true or false, "
                f"got {self.train_restart_init!r}"
            )
        check_restarts(
            self.train_restarts,
            self.train_restart_check_epoch,
            self.train_restart_min_val_auc,
            self.train_epochs,
            prefix="validate option train_",
        )
        if self.search_epochs < 2:
            raise ValueError(
                "validate option search_epochs must be >= 2 (one warm-up epoch, then search)"
            )
        check_timeout(self.job_timeout_s)

    def search_config(self, space: str) -> SearchConfig:
        prune = tuple(range(2, self.search_epochs + 1))
        return SearchConfig(
            preset="tiny",
            space=space,
            C=self.search_C,
            layers=self.search_layers,
            steps=self.search_steps,
            K=self.search_K,
            epochs=self.search_epochs,
            warmup=1,
            prune_at=prune,
            size=self.size,
            batch_size=self.search_batch_size,
            batches_per_epoch=self.search_batches,
        )

    def train_config(self) -> TrainConfig:
        return TrainConfig(
            preset="tiny",
            epochs=self.train_epochs,
            batch_size=self.train_batch_size,
            flips=self.train_flips,
            lr_warmup_epochs=self.train_lr_warmup_epochs,
            restarts=self.train_restarts,
            restart_check_epoch=self.train_restart_check_epoch,
            restart_min_val_auc=self.train_restart_min_val_auc,
        )


@dataclass
class ValidationResult:
    metrics: dict[str, float]
    rows: list[dict]
    genotypes: dict[str, Genotype] = field(default_factory=dict)
    traces: dict[str, dict] = field(default_factory=dict)
    curves: dict[str, tuple] = field(default_factory=dict)
    failed: list[JobFailure] = field(default_factory=list)


def unit_facts(seed: int = 0) -> dict[str, float]:
    """V1: CDC(t=0) vs Conv2d, CDC vs its explicit formula (float64), gradient leak, genotype round
    trip. The layers' initial weights are drawn under ``seed``, not the caller's random state."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 6, 11, 11, generator=g)
    cdc = CDCConv2d(6, 6, 3, 1, 1, theta=0.0, bias=True)
    conv = torch.nn.Conv2d(6, 6, 3, 1, 1, bias=True)
    conv.load_state_dict(cdc.state_dict())
    with torch.no_grad():
        theta0 = float((cdc(x) - conv(x)).abs().max())
    worst = 0.0
    x64 = x.double()
    for theta in (0.5, 0.8):
        for stride, dilation, groups in ((1, 1, 1), (2, 1, 1), (1, 2, 6), (2, 2, 6), (1, 1, 6)):
            layer = CDCConv2d(
                6, 6, 3, stride, dilation, dilation, groups, bias=True, theta=theta
            ).double()
            reference = cdc_explicit(
                x64, layer.weight, layer.bias, stride, dilation, dilation, groups, theta
            )
            worst = max(worst, float((layer(x64) - reference).abs().max().detach()))
    return {
        "cdc_theta0_max_err": theta0,
        "cdc_closed_form_max_err": worst,
        "arch_grad_leak": arch_grad_leak(seed),
        "genotype_roundtrip": int(genotype_roundtrip(seed)),
    }


def arch_grad_leak(seed: int = 0) -> int:
    """Parameters that held a gradient outside their own step after one tiny search iteration."""
    torch.manual_seed(seed)
    net = Supernet(C=4, layers=2, steps=2, K=2, seed=seed)
    arch_opt = torch.optim.Adam(net.arch_parameters(), lr=6e-4, betas=(0.5, 0.999))
    weight_opt = torch.optim.SGD(net.weight_parameters(), lr=0.1, momentum=0.9)
    x, y = torch.rand(4, 3, 16, 16), torch.tensor([0, 1, 0, 1])
    before = [p.detach().clone() for p in net.weight_parameters()]
    leaks = 0
    architecture_step(net, arch_opt, x, y)
    leaks += sum(p.grad is not None for p in net.parameters())
    leaks += sum(int(not torch.equal(a, p)) for a, p in zip(before, net.weight_parameters()))
    before_arch = [p.detach().clone() for p in net.arch_parameters()]
    weight_step(net, weight_opt, x, y)
    leaks += sum(p.grad is not None for p in net.parameters())
    leaks += sum(int(not torch.equal(a, p)) for a, p in zip(before_arch, net.arch_parameters()))
    return int(leaks)


def genotype_roundtrip(seed: int = 0) -> bool:
    import tempfile
    from pathlib import Path

    from paperzoo.forgerynas.model import CascadedPyramidNet
    from paperzoo.forgerynas.search_space import load_genotype

    genotype = random_genotype("forgery", 3, seed)
    with tempfile.TemporaryDirectory() as folder:
        path = genotype.save(Path(folder) / "g.json")
        loaded = load_genotype(path)
    torch.manual_seed(seed)
    a = CascadedPyramidNet(genotype, C=4, layers=4).eval()
    b = CascadedPyramidNet(loaded, C=4, layers=4).eval()
    b.load_state_dict(a.state_dict())
    x = torch.rand(2, 3, 16, 16)
    same_keys = {k: v.shape for k, v in a.state_dict().items()} == {
        k: v.shape for k, v in b.state_dict().items()
    }
    return bool(loaded == genotype and same_keys and torch.equal(a(x), b(x)))


def pc_memory_ratio(K: int = 4, C: int = 8, seed: int = 0) -> float:
    """V5: saved-for-backward bytes of a tiny supernet iteration with K over K = 1."""
    x = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(seed))
    y = torch.arange(8) % 2
    used = {}
    for k in (1, K):
        torch.manual_seed(seed)
        used[k] = saved_activation_bytes(Supernet(C=C, layers=3, steps=2, K=k, seed=seed), x, y)
    return used[K] / used[1]


def cdc_share(importance_record: dict, ops: list[str]) -> float:
    """V4: share of the enabled ops' importance held by CDC ops with theta > 0 (both cell types)."""
    total = cdc = 0.0
    for kind in CELL_TYPES:
        scores = np.array(importance_record[f"importance_{kind}"]) * np.array(
            importance_record[f"mask_{kind}"]
        )
        total += scores.sum()
        cdc += sum(
            scores[:, o].sum()
            for o, name in enumerate(ops)
            if "CDC" in name and not name.endswith("_0.0")
        )
    return float(cdc / total) if total else float("nan")


def _colour_cast_control(n: int, size: int, seed: int, pools) -> TensorFrames:
    """Control for V4: fakes differ from reals by a global colour cast only (no local gradient cue)."""
    domain = make_domain("A", "train", n=n, size=size, seed=seed + 50, pools=pools)
    images = domain.images.clone()
    crops = make_domain("A", "train", n=n, size=size, seed=seed + 51, pools=pools).images
    cast = torch.tensor([0.08, -0.04, -0.06]).view(1, 3, 1, 1)
    fakes = domain.labels == 1
    images[~fakes] = crops[~fakes]
    images[fakes] = (crops[fakes] + cast).clamp(0, 1)
    return TensorFrames(images, domain.labels, domain.video_ids, name="colour-cast")


def arm_detector(name: str, seed: int, genotype: Genotype | None = None, **overrides):
    """The detector of one arm and seed, its initial weights drawn under ``seed`` alone, so they
    do not depend on which arms or seeds ran before in the same process."""
    torch.manual_seed(seed)
    return build_detector(name, genotype, **overrides)


def _frames(domain) -> TensorFrames:
    return TensorFrames(
        domain.images,
        domain.labels,
        domain.video_ids,
        name=f"synthetic-{domain.name}-{domain.split}",
    )


def run_validation(config: ValidationConfig | None = None, device: str = "cpu") -> ValidationResult:
    """Run every arm for every seed; ``metrics`` holds seed means with ``_std`` companions.
    ``config.workers`` processes run the searches and retrainings (a device other than the CPU
    runs them in this process); the numbers do not depend on it."""
    config = config or ValidationConfig()
    started = time.perf_counter()
    workers = config.workers if device == "cpu" else 1
    with (
        torch_threads(config.threads),
        JobRunner(workers, config.job_timeout_s) as runner,
    ):
        return _run(runner, config, device, started)


# Jobs: module-level so that a spawned worker can import them. ``data`` holds the frames.


def arm_job(
    arm: str, seed: int, config: ValidationConfig, data: dict, device: str, part: int = 0
) -> dict:
    """One arm and seed (``part``: which of the ``random`` arm's genotypes): the search when the
    arm has one, then the retraining on A-train and the AUCs on A-test and B-test."""
    t0 = time.perf_counter()
    out: dict = {}
    if arm in ("cdc_in", "cdc_cross", "vanilla"):
        space = "darts" if arm == "vanilla" else "forgery"
        arch = data["c_aux"] if arm == "cdc_cross" else data["arch_half"]
        search = search_architecture(
            data["weight_half"],
            arch,
            config.search_config(space),
            seed=seed,
            device=device,
            test_domains=(data["b_test"].name, data["a_test"].name),
        )
        genotype = search.genotype
        out["genotype"], out["trace"] = genotype, search.trace
        if arm == "cdc_in":
            out["share"] = cdc_share(search.trace["epochs"][-1], search.trace["ops"])
        detector = ("tiny", genotype, dict(C=config.eval_C, layers=config.eval_layers))
    elif arm == "random":
        genotype = random_genotype(
            "forgery", config.search_steps, RANDOM_GENOTYPE_SEEDS[part] + seed
        )
        out["genotype"] = genotype
        detector = ("tiny", genotype, dict(C=config.eval_C, layers=config.eval_layers))
    elif arm == "cnn":
        detector = ("hand_cnn", None, dict(C=config.cnn_C))
    else:
        detector = ("timm_resnet10t", None, {})

    def rebuild(init_seed: int):
        # a restarted retraining draws new initial weights under its own seed (train_restart_init)
        return arm_detector(detector[0], init_seed, detector[1], **detector[2])

    model = rebuild(seed)
    torch.manual_seed(seed)
    run = train_detector(
        model,
        data["a_train"],
        data["a_val"],
        config.train_config(),
        seed=seed,
        device=device,
        rebuild=rebuild if config.train_restart_init else None,
    )
    scores_in = evaluate_detector(run.model, data["a_test"], device)
    scores_cross = evaluate_detector(run.model, data["b_test"], device)
    # validation AUC per epoch of every attempt (the restart rule read the check epoch's)
    out["attempt_val_auc"] = [a["val_auc"] for a in run.attempts]
    out["in_auc"] = scores_in.scores["auc"]
    out["cross_auc"] = scores_cross.scores["auc"]
    out["params"] = sum(p.numel() for p in run.model.parameters())
    if seed == config.first_seed and part == 0:
        from torchmetrics.functional.classification import binary_roc

        fpr, tpr, _ = binary_roc(scores_cross.probs, scores_cross.labels)
        out["roc"] = (fpr.numpy(), tpr.numpy(), scores_cross.scores["auc"])
    out["seconds"] = time.perf_counter() - t0
    return out


def mechanism_job(control: TensorFrames, config: ValidationConfig, device: str) -> float:
    """V4's control: the CDC importance share of a search on the colour-cast frames."""
    cw, ca = split_halves(control, seed=0)
    search = search_architecture(cw, ca, config.search_config("forgery"), seed=0, device=device)
    return cdc_share(search.trace["epochs"][-1], search.trace["ops"])


def _job_name(arm: str, seed: int, part: int) -> str:
    return f"{arm} seed {seed}" if arm != "random" else f"random{part + 1} seed {seed}"


def _run(runner: JobRunner, config: ValidationConfig, device: str, started: float):
    # V1 and V5 first, in this process
    metrics: dict[str, float] = dict(unit_facts())
    metrics["pc_act_mem_ratio_k4"] = pc_memory_ratio(4)
    pools = source_pools(config.size)
    a_train = _frames(make_domain("A", "train", config.n_train, config.size, 0, pools))
    a_val = _frames(make_domain("A", "val", config.n_val, config.size, 0, pools))
    a_test = _frames(make_domain("A", "test", config.n_test, config.size, 0, pools))
    b_test = _frames(make_domain("B", "test", config.n_b, config.size, 0, pools))
    c_aux = _frames(make_domain("C", "train", config.n_c, config.size, 0, pools))
    weight_half, arch_half = split_halves(a_train, seed=0)
    data = {
        "a_train": a_train,
        "a_val": a_val,
        "a_test": a_test,
        "b_test": b_test,
        "c_aux": c_aux,
        "weight_half": weight_half,
        "arch_half": arch_half,
    }
    seeds = range(config.first_seed, config.first_seed + config.seeds)
    jobs = [(seed, arm) for seed in seeds for arm in config.arms]
    parts = {arm: range(len(RANDOM_GENOTYPE_SEEDS) if arm == "random" else 1) for arm in ARMS}
    in_process = runner.workers == 1  # then a job runs as it is submitted
    submitted = []
    # the jobs start now; the probes below run in this process meanwhile
    for seed, arm in progress(jobs, desc="validate arms", total=len(jobs)) if in_process else jobs:
        for part in parts[arm]:
            submitted.append(_job_name(arm, seed, part))
            runner.submit(submitted[-1], arm_job, arm, seed, config, data, device, part)
    mechanism = config.mechanism and "cdc_in" in config.arms
    if mechanism:
        control = _colour_cast_control(config.n_train // 2, config.size, 0, pools)
        submitted.append("colour-cast control")
        runner.submit(submitted[-1], mechanism_job, control, config, device)

    # V2: the shortcut probe per domain (A: train -> test; B, C: first half -> second half)
    probes = {"A": shortcut_probe_auc(a_train.images, a_train.labels, a_test.images, a_test.labels)}
    for name, frames in (("B", b_test), ("C", c_aux)):
        half = len(frames) // 2
        probes[name] = shortcut_probe_auc(
            frames.images[:half], frames.labels[:half], frames.images[half:], frames.labels[half:]
        )
    metrics.update({f"probe_auc_{k}": v for k, v in probes.items()})
    metrics["probe_auc_max"] = max(probes.values())

    results: dict[str, dict[str, list[float]]] = {
        arm: {"in": [], "cross": [], "params": [], "seconds": [], "seeds": []}
        for arm in config.arms
    }
    genotypes: dict[str, Genotype] = {}
    traces: dict[str, dict] = {}
    curves: dict[str, tuple] = {}
    shares: list[float] = []
    failed: list[JobFailure] = []
    incomplete: set[str] = set()
    restarts_done = 0
    retrain_rows: list[dict] = []
    for seed, arm in jobs if in_process else progress(jobs, desc="validate arms", total=len(jobs)):
        names = [_job_name(arm, seed, part) for part in parts[arm]]
        done = runner.wait(names)
        lost = [done[name] for name in names if isinstance(done[name], JobFailure)]
        if lost:
            failed.extend(lost)
            incomplete.add(arm)
            print(
                f"validate: seed {seed} {arm}: failed ({lost[0].reason.splitlines()[0]})",
                file=sys.stderr,
                flush=True,
            )
            continue
        scored = [done[name] for name in names]
        for j, out in enumerate(scored):
            if "genotype" in out:
                key = f"{arm}_seed{seed}" if j == 0 else f"{arm}{j + 1}_seed{seed}"
                genotypes[key] = out["genotype"]
            if "trace" in out:
                traces[f"{arm}_seed{seed}"] = out["trace"]
            if "share" in out:
                shares.append(out["share"])
            if len(scored) > 1:
                # each random genotype's own AUCs (the arm's per-seed value is their mean)
                metrics[f"{arm}{j + 1}_genotype_in_auc_seed{seed}"] = out["in_auc"]
                metrics[f"{arm}{j + 1}_genotype_cross_auc_seed{seed}"] = out["cross_auc"]
        r = results[arm]
        r["in"].append(float(np.mean([out["in_auc"] for out in scored])))
        r["cross"].append(float(np.mean([out["cross_auc"] for out in scored])))
        r["params"].append(float(np.mean([out["params"] for out in scored])))
        r["seconds"].append(float(sum(out["seconds"] for out in scored)))
        r["seeds"].append(seed)
        attempts = [len(out["attempt_val_auc"]) for out in scored]
        metrics[f"retrain_attempts_{arm}_seed{seed}"] = sum(attempts)
        restarts_done += sum(attempts) - len(attempts)
        for j, out in enumerate(scored):
            retrain_rows.append(
                {
                    "arm": f"retrain {_job_name(arm, seed, j)}",
                    "attempts": attempts[j],
                    "val_auc_per_epoch": " | ".join(
                        " / ".join(f"{v:.3f}" for v in history)
                        for history in out["attempt_val_auc"]
                    ),
                }
            )
        print(
            f"validate: seed {seed} {arm}: in {r['in'][-1]:.4f} cross {r['cross'][-1]:.4f} "
            f"({r['seconds'][-1]:.0f} s)",
            file=sys.stderr,
            flush=True,
        )
        if "roc" in scored[0]:
            curves[arm] = scored[0]["roc"]
    rows = []
    for arm, r in results.items():
        for key in ("in", "cross"):
            for s, v in zip(r["seeds"], r[key], strict=True):
                metrics[f"{key}_auc_{arm}_seed{s}"] = float(v)
        if arm in incomplete:  # the other seeds only: no mean over a missing seed
            rows.append({"arm": arm, "error": "incomplete: a seed failed, no mean"})
            continue
        for key in ("in", "cross"):
            values = np.array(r[key])
            metrics[f"{key}_auc_{arm}"] = float(values.mean())
            metrics[f"{key}_auc_{arm}_std"] = _seed_std(values)
        metrics[f"params_{arm}"] = float(np.mean(r["params"]))
        metrics[f"seconds_{arm}"] = float(np.mean(r["seconds"]))
        rows.append(
            {
                "arm": arm,
                "in_auc": metrics[f"in_auc_{arm}"],
                "in_std": metrics[f"in_auc_{arm}_std"],
                "cross_auc_B": metrics[f"cross_auc_{arm}"],
                "cross_std": metrics[f"cross_auc_{arm}_std"],
                "params": int(metrics[f"params_{arm}"]),
                "seconds": metrics[f"seconds_{arm}"],
            }
        )
    complete = [arm for arm in results if arm not in incomplete]
    if complete:
        metrics["in_auc_min"] = min(metrics[f"in_auc_{arm}"] for arm in complete)
    if "cdc_in" in complete and "cdc_cross" in complete:
        metrics["cross_minus_in_search"] = (
            metrics["cross_auc_cdc_cross"] - metrics["cross_auc_cdc_in"]
        )
    if "cnn" in complete:
        metrics["cnn_cross_in_band"] = int(0.60 <= metrics["cross_auc_cnn"] <= 0.90)
    if shares and "cdc_in" in complete:
        metrics["cdc_importance_share_A"] = float(np.mean(shares))
    if mechanism:
        share = runner.wait(["colour-cast control"])["colour-cast control"]
        if isinstance(share, JobFailure):
            failed.append(share)
        else:
            metrics["cdc_importance_share_colour_cast"] = share
    # which arms ran; pass_in_auc needs all six, every seed scored (else 0, flagged here)
    all_arms = set(config.arms) == set(ARMS) and not incomplete
    metrics.update({f"arm_ran_{arm}": int(arm in config.arms) for arm in ARMS})
    metrics["arms_run"] = len(set(config.arms))
    metrics["pass_in_auc_complete"] = int(all_arms)
    metrics.update(
        {
            "pass_in_auc": int(all_arms and metrics["in_auc_min"] >= 0.95),
            "pass_probe": int(metrics["probe_auc_max"] <= 0.60),
            "pass_cdc_theta0": int(metrics["cdc_theta0_max_err"] <= 1e-5),
            "pass_cdc_closed_form": int(metrics["cdc_closed_form_max_err"] <= 1e-6),
            "pass_no_grad_leak": int(metrics["arch_grad_leak"] == 0),
            "pass_pc_memory": int(metrics["pc_act_mem_ratio_k4"] <= 0.6),
            "seeds": config.seeds,
            # the retraining recipe the in- and cross-domain AUCs were measured with
            **{name: _number(getattr(config, name)) for name in _RECIPE},
        }
    )
    rows.extend(retrain_rows)
    # what each job cost and where it ran; failures named
    records = {record.name: record for record in runner.records}
    for name in submitted:
        record, outcome = records[name], runner.results[name]
        rows.append(
            {
                "arm": f"job {name}",
                "seconds": record.wall_s,
                "cpu_seconds": record.cpu_s,
                "worker": record.pid,
                **(
                    {"error": outcome.reason.splitlines()[0]}
                    if isinstance(outcome, JobFailure)
                    else {}
                ),
            }
        )
    # retrainings started again by the restart rule (TrainConfig.restarts; 0 without it)
    metrics["retrain_restarts"] = restarts_done
    metrics["workers"] = runner.workers
    metrics["jobs_failed"] = len(failed)
    metrics["jobs_cpu_seconds"] = float(sum(r.cpu_s for r in runner.records if r.ok))
    metrics["validate_seconds"] = time.perf_counter() - started
    return ValidationResult(metrics, rows, genotypes, traces, curves, failed)


_PER_SEED = re.compile(r"^(in|cross)_auc_(\w+?)_seed(\d+)$")
# the retraining recipe, written into metrics.json (absent from files written before it was)
_RECIPE = (
    "eval_C",
    "eval_layers",
    "train_epochs",
    "train_flips",
    "train_lr_warmup_epochs",
    "train_restarts",
    "train_restart_check_epoch",
    "train_restart_min_val_auc",
    "train_restart_init",
)


def _seed_std(values: np.ndarray) -> float:
    """Sample std over seeds; NaN (``null`` in metrics.json) for one seed, never a zero spread."""
    return float(values.std(ddof=1)) if len(values) > 1 else float("nan")


def _number(value: bool | int | float) -> int | float:
    return int(value) if isinstance(value, bool) else value


_SHARED_FACTS = (
    "cdc_theta0_max_err",
    "cdc_closed_form_max_err",
    "arch_grad_leak",
    "genotype_roundtrip",
    "pc_act_mem_ratio_k4",
    "probe_auc_A",
    "probe_auc_B",
    "probe_auc_C",
    *_RECIPE,
)


def merge_metrics(parts: list[dict[str, float]]) -> tuple[dict[str, float], list[dict]]:
    """Combine ``metrics`` of validation runs over disjoint seeds (``--first_seed``) into the
    metrics of one run over all their seeds: seed means and ``_std`` recomputed from the per-seed
    AUCs; parameter counts, seconds and the CDC share averaged with seed weights. Runs must share
    the data, unit facts (same generator) and retraining recipe, and may not repeat a seed of an
    arm (runs over disjoint arms at the same seeds merge too). ``pass_in_auc`` is 1 only when the
    merged runs cover all six arms at every seed and no part had a failed job
    (``pass_in_auc_complete``; ``merged_parts_with_failed_jobs`` counts the parts that had)."""
    if not parts:
        raise ValueError("merge_metrics needs at least one metrics dict")
    for name in _SHARED_FACTS:
        values = {part[name] for part in parts if name in part}
        if len(values) > 1:
            raise ValueError(
                f"runs disagree on {name} ({sorted(values)}): not the same data, code or recipe"
            )
    merged: dict[str, float] = {}
    per_seed: dict[tuple[str, str], dict[int, float]] = {}
    weights: dict[str, list[tuple[float, int]]] = {}
    for part in parts:
        seen: dict[tuple[str, str], set[int]] = {}
        for key, value in part.items():
            match = _PER_SEED.match(key)
            if match:
                kind, arm, seed = match.group(1), match.group(2), int(match.group(3))
                if seed in per_seed.setdefault((kind, arm), {}):
                    raise ValueError(f"seed {seed} of arm {arm} appears in more than one run")
                per_seed[(kind, arm)][seed] = value
                seen.setdefault((kind, arm), set()).add(seed)
                merged[key] = value
        for key, value in part.items():
            if key in ("jobs_failed", "jobs_cpu_seconds", "retrain_restarts"):  # run totals
                merged[key] = merged.get(key, 0) + value
            elif key.startswith(("params_", "seconds_")) or key == "cdc_importance_share_A":
                arm = key.split("_", 1)[1]
                n = len(seen.get(("in", arm), ())) or int(part.get("seeds", 1))
                weights.setdefault(key, []).append((value, n))
            elif key not in merged and not key.startswith(
                ("in_auc_", "cross_auc_", "pass_in_auc", "arm_ran_", "arms_run")
            ):
                merged[key] = value
    for key, pairs in weights.items():
        merged[key] = float(sum(v * n for v, n in pairs) / sum(n for _, n in pairs))
    rows = []
    arms = sorted(
        {arm for _, arm in per_seed}, key=lambda a: ARMS.index(a) if a in ARMS else len(ARMS)
    )
    for arm in arms:
        for kind in ("in", "cross"):
            values = np.array([v for _, v in sorted(per_seed[(kind, arm)].items())])
            merged[f"{kind}_auc_{arm}"] = float(values.mean())
            merged[f"{kind}_auc_{arm}_std"] = _seed_std(values)
        rows.append(
            {
                "arm": arm,
                "in_auc": merged[f"in_auc_{arm}"],
                "in_std": merged[f"in_auc_{arm}_std"],
                "cross_auc_B": merged[f"cross_auc_{arm}"],
                "cross_std": merged[f"cross_auc_{arm}_std"],
                "params": int(merged.get(f"params_{arm}", 0)),
                "seconds": merged.get(f"seconds_{arm}", 0.0),
            }
        )
    merged["in_auc_min"] = min(merged[f"in_auc_{arm}"] for arm in arms)
    if "cdc_in" in arms and "cdc_cross" in arms:
        merged["cross_minus_in_search"] = merged["cross_auc_cdc_cross"] - merged["cross_auc_cdc_in"]
    if "cnn" in arms:
        merged["cnn_cross_in_band"] = int(0.60 <= merged["cross_auc_cnn"] <= 0.90)
    all_seeds = {seed for values in per_seed.values() for seed in values}
    # pass_in_auc only over all six arms, each at every seed (a failed arm job leaves its arm
    # without that seed and so fails this test; a failed job elsewhere, such as the colour-cast
    # control, does not touch in-domain AUC, and a failed seed re-run in another part fills the
    # hole); jobs_failed is summed above and the parts with failures are counted
    failed_parts = sum(1 for part in parts if (part.get("jobs_failed") or 0) > 0)
    complete = set(arms) == set(ARMS) and all(
        set(values) == all_seeds for values in per_seed.values()
    )
    merged.update({f"arm_ran_{arm}": int(arm in arms) for arm in ARMS})
    merged["arms_run"] = len(arms)
    merged["merged_parts_with_failed_jobs"] = failed_parts
    merged["pass_in_auc_complete"] = int(complete)
    merged["pass_in_auc"] = int(complete and merged["in_auc_min"] >= 0.95)
    merged["seeds"] = len(all_seeds)
    merged["validate_seconds"] = float(sum(part.get("validate_seconds", 0.0) for part in parts))
    return dict(sorted(merged.items())), rows
