"""Library-level runs: build a VFL run, attack it with CAFE or DLG, score the reconstruction,
train the VFL model with a defence; and a pool of such runs (the core's ``JobRunner``, with a
joblib ``Memory`` store). What a Python user calls; the CLI verbs call the same functions.

Real data reach only the protocol and the metrics, never the attack.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from paperzoo.cafe.attack import CafeAttack
from paperzoo.cafe.baselines import DLGAttack
from paperzoo.cafe.config import CafeConfig, DefenseConfig, Scenario, as_defense, check_positive
from paperzoo.cafe.data import attack_subset, data_value_range, load_dataset
from paperzoo.cafe.metrics import hungarian_match, reconstruction_metrics
from paperzoo.cafe.model import create_model
from paperzoo.cafe.protocol import ObservedRound, VerticalFL, part_shapes, sample_partition
from paperzoo.core.data import VerticalPartition

MODEL_FOR_DATASET = {"digits": "tiny_digits", "mnist": "paper_mnist", "cifar10": "paper_cifar",
                     "linnaeus5": "paper_cifar"}


def model_for(dataset: str, sample_dim: int) -> str:
    """The ``auto`` model preset of a dataset: the paper's models on the real image sets, the
    tiny conv parties on digits and ``npz`` images, MLP parties on tabular arrays."""
    if dataset in MODEL_FOR_DATASET:
        return MODEL_FOR_DATASET[dataset]
    return "tiny_tabular" if sample_dim == 1 else "tiny_digits"


@dataclass
class BuiltRun:
    """The data subset, its partition, the model and the protocol of a scenario."""

    images: torch.Tensor
    labels: torch.Tensor
    partition: VerticalPartition
    model: nn.Module
    vfl: VerticalFL
    data_range: tuple[float, float]


def build_run(scenario: Scenario) -> BuiltRun:
    """Data subset, partition, model and protocol of a scenario (seeded)."""
    scenario.check()
    images, labels = load_dataset(scenario.dataset, scenario.root, "train", scenario.image_size)
    value_range = data_value_range(scenario.dataset, images)
    images, labels = attack_subset(images, labels, scenario.n_samples, scenario.seed)
    partition = sample_partition(scenario.parties, tuple(images.shape[1:]))
    shapes = part_shapes(partition, tuple(images.shape[1:]))
    name = model_for(scenario.dataset, images.dim() - 1) if scenario.model == "auto" else scenario.model
    classes = max(int(labels.max()) + 1, 10)
    model = create_model(name, num_parties=scenario.parties, classes=classes, part_shapes=shapes,
                         seed=scenario.seed)
    if scenario.weights:
        from paperzoo.core.checkpoint import load_weights

        load_weights(model, scenario.weights)  # names the file and key on a wrong or corrupt file
        bad = next((k for k, v in model.state_dict().items()
                    if v.is_floating_point() and not bool(torch.isfinite(v).all())), None)
        if bad is not None:
            raise ValueError(f"{scenario.weights}: {bad} holds NaN or infinite values")
    defense = scenario.defense.build(seed=scenario.seed)
    vfl = VerticalFL(model, partition, images, labels, scenario.batch_size, fl_lr=scenario.fl_lr,
                     defense=defense, schedule=scenario.schedule, seed=scenario.seed)
    return BuiltRun(images, labels, partition, model, vfl, value_range)


@dataclass
class AttackResult:
    """A scored attack: flat ``metrics``, the recovered and true samples (aligned), the
    recovered labels, the PSNR ``trace`` ``(iteration, seconds, psnr)``, the data range the
    attacker used and the warnings of the run."""

    metrics: dict[str, float]
    x_hat: torch.Tensor
    x_true: torch.Tensor
    y_hat: torch.Tensor
    y_true: torch.Tensor
    trace: list[tuple[int, float, float]] = field(default_factory=list)
    data_range: tuple[float, float] | None = None
    warnings: list[str] = field(default_factory=list)


def resolve_data_range(config: CafeConfig, data: torch.Tensor,
                       default: tuple[float, float]) -> tuple[CafeConfig, list[str]]:
    """Fill ``config.data_range`` from the data's range ``default`` when it is unset; warn when
    a given range would cut real values (the projection would then bias every sample)."""
    notes: list[str] = []
    if config.data_range is None:
        return replace(config, data_range=default), notes
    low, high = config.data_range
    outside = float(((data < low) | (data > high)).float().mean())
    if config.clamp_inputs and outside > 0:
        notes.append(f"the data range [{low:g}, {high:g}] cuts {100 * outside:.1f} % of the real values "
                     f"(the data span [{float(data.min()):g}, {float(data.max()):g}]); the projection "
                     "keeps x_hat inside it, so those values cannot be recovered; leave data_range "
                     "unset to take it from the data")
    return config, notes


def attack_rounds(model: nn.Module, rounds: Iterable[ObservedRound], n_samples: int,
                  config: CafeConfig | None = None, iters: int | None = None,
                  labels: torch.Tensor | None = None,
                  merge: Callable[[list[torch.Tensor]], torch.Tensor] | None = None,
                  batch_size: int | None = None, device: str = "cpu",
                  callback: Callable[[CafeAttack], None] | None = None) -> CafeAttack:
    """CAFE on the rounds of any vertical model (see :data:`paperzoo.cafe.model.PROTOCOL`):
    the entry point for one's own model and training loop (``rounds`` are
    :class:`~paperzoo.cafe.protocol.ObservedRound` records). Returns the attack; its
    ``reconstruction()``, ``coverage()`` and ``warnings()`` hold the outcome, and the run warns
    (``RuntimeWarning``) when the result is not a CAFE reconstruction."""
    config = config or CafeConfig()
    if iters is not None:
        check_positive(iters=iters)
    attack = CafeAttack(n_samples, model, config, labels=labels if config.label_mode == "known" else None,
                        batch_size=batch_size, image_merge=merge, device=device)
    return attack.run(rounds, iterations=iters, callback=callback)


def run_cafe(scenario: Scenario, iters: int = 3000, config: CafeConfig | None = None,
             device: str = "cpu", track_every: int = 0,
             callback: Callable[[CafeAttack], None] | None = None) -> AttackResult:
    """Attack ``iters`` rounds of a scenario with CAFE and score it. The metrics carry the
    coverage (rounds per sample, ``closed_form_solved`` for the closed form) and the data range
    used; :attr:`AttackResult.warnings` says when the result is not a CAFE reconstruction."""
    check_positive(iters=iters)
    if track_every < 0:
        raise ValueError(f"track_every must be >= 0, got {track_every}")
    run = build_run(scenario)
    config, notes = resolve_data_range(config or CafeConfig(seed=scenario.seed), run.images, run.data_range)
    merge = run.partition.merge if run.images.dim() == 4 else None
    trace: list[tuple[int, float, float]] = []
    started = time.perf_counter()

    def _track(a: CafeAttack) -> None:
        if track_every and a.iteration % track_every == 0:
            parts, _ = a.reconstruction()
            score = reconstruction_metrics(run.partition.merge(parts), run.images, data_range=config.data_range)
            trace.append((a.iteration, time.perf_counter() - started, score["psnr_db"]))
        if callback is not None:
            callback(a)

    rounds = run.vfl.rounds(iters)
    if config.loop == "nested":
        rounds = list(rounds)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # warned once below, with the range notes
        attack = attack_rounds(run.model, rounds, scenario.n_samples, config, iters, labels=run.labels,
                               merge=merge, batch_size=scenario.batch_size, device=device, callback=_track)
    seconds = time.perf_counter() - started
    parts, label_logits = attack.reconstruction()
    x_hat = run.partition.merge(parts)
    metrics = reconstruction_metrics(x_hat, run.images, label_logits, run.labels, parts,
                                     run.partition.split(run.images), data_range=config.data_range)
    metrics["seconds"] = seconds
    metrics["iters_per_s"] = iters / max(seconds, 1e-9)
    metrics.update(attack.coverage())
    low, high = config.data_range
    metrics.update(data_range_low=low, data_range_high=high, clamp_inputs=float(config.clamp_inputs),
                   fl_lr=scenario.fl_lr)
    notes = notes + attack.warnings()
    for note in notes:
        warnings.warn(f"CAFE: {note}", RuntimeWarning, stacklevel=2)
    return AttackResult(metrics, x_hat, run.images, label_logits.argmax(1), run.labels, trace,
                        config.data_range, notes)


def run_dlg(scenario: Scenario, restarts: int = 2, iters: int = 300, optimizer: str = "lbfgs",
            cost: str = "l2", device: str = "cpu") -> AttackResult:
    """DLG on the first round of the scenario (same model and batch as CAFE sees first),
    scored after Hungarian matching."""
    check_positive(restarts=restarts, iters=iters)
    run = build_run(scenario)
    observed = run.vfl.round()
    started = time.perf_counter()
    result = DLGAttack(observed, run.model, restarts=restarts, optimizer=optimizer, iters=iters,
                       cost=cost, init=CafeConfig(data_range=run.data_range).x_init_range,
                       data_range=run.data_range, seed=scenario.seed, device=device).run()
    seconds = time.perf_counter() - started
    x_hat = run.partition.merge(result.parts)
    x_true = run.images[observed.batch_idx]
    y_true = run.labels[observed.batch_idx]
    perm = hungarian_match(x_hat, x_true, data_range=run.data_range)
    matched_parts = [p[perm] for p in result.parts]
    metrics = reconstruction_metrics(x_hat[perm], x_true, result.label_logits[perm], y_true,
                                     matched_parts, run.partition.split(x_true), data_range=run.data_range)
    metrics.update(seconds=seconds, matching_cost=result.cost)
    return AttackResult(metrics, x_hat[perm], x_true, result.label_logits[perm].argmax(1), y_true,
                        data_range=run.data_range)


@dataclass
class UtilityResult:
    """Test accuracy of a VFL model trained with a defence, with the run's step count and
    sampling rate (for the clip-and-noise epsilon)."""

    test_acc: float
    steps: int
    sample_rate: float


def run_utility(dataset: str = "digits", root: str | None = None, parties: int = 4, epochs: int = 20,
                batch_size: int = 40, seed: int = 0, defense: DefenseConfig | str = "none",
                image_size: int = 32, device: str = "cpu", lr: float = 0.05,
                save_path: str | None = None, devices: int | str = 1, num_nodes: int = 1,
                strategy: str = "auto", precision: str | None = None,
                resume_dir: str | None = None, resume: bool = False) -> UtilityResult:
    """Test accuracy of the VFL model trained on the whole dataset with a defence (paper
    Sec. 6.4); the Lightning scale options pass through to the trainer. ``resume_dir`` keeps
    the training's per-epoch checkpoint there; ``resume`` continues it (see
    :func:`~paperzoo.cafe.module.train_vfl`)."""
    from paperzoo.cafe.module import train_vfl

    check_positive(parties=parties, epochs=epochs, batch_size=batch_size)
    defense = as_defense(defense)
    defense.build()  # fail on bad knobs before loading data
    images, labels = load_dataset(dataset, root, "train", image_size)
    model_name = model_for(dataset, images.dim() - 1)
    knobs = {k: v for k, v in defense.__dict__.items() if k != "name"}
    result = train_vfl(images, labels, epochs=epochs, batch_size=batch_size, seed=seed, device=device,
                       model_name=model_name, num_parties=parties, defense=defense.name, lr=lr,
                       save_path=save_path, devices=devices, num_nodes=num_nodes, strategy=strategy,
                       precision=precision, resume_dir=resume_dir, resume=resume, **knobs)
    return UtilityResult(result["test_acc"], int(result["steps"]), result["sample_rate"])


# ---------------------------------------------------------------- pools of runs
@contextlib.contextmanager
def _one_thread():
    """One torch thread for the duration of a job. Float reductions depend on the thread count,
    and the defended training runs amplify such differences (a naive fake-gradient run moved
    from 0.38 to 0.21 test accuracy between 1 and 2 threads), so every job, in a worker process
    or in this one, runs on exactly one thread and gives the same numbers however it is run."""
    from paperzoo.core.runtime import torch_threads

    with torch_threads(1):
        yield


def call_job(job: tuple[str, dict[str, Any]]) -> Any:
    """Run one named job (``cafe``, ``dlg`` or ``utility``) from picklable arguments, on one
    torch thread (see :func:`_one_thread`)."""
    with _one_thread(), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the results carry their warnings
        return _call_job(job)


def _call_job(job: tuple[str, dict[str, Any]]) -> Any:
    kind, kwargs = job
    kwargs = dict(kwargs)
    if kind == "cafe":
        scenario = Scenario(**kwargs.pop("scenario"))
        config = CafeConfig(**kwargs.pop("config")) if "config" in kwargs else None
        return run_cafe(scenario, config=config, **kwargs)
    if kind == "dlg":
        return run_dlg(Scenario(**kwargs.pop("scenario")), **kwargs)
    if kind == "utility":
        return run_utility(**kwargs)
    raise ValueError(f"unknown job kind {kind!r}")


def _source_hash() -> str:
    """SHA-256 of every ``.py`` file of the installed ``paperzoo/cafe`` package (the core's
    :func:`~paperzoo.core.jobs.source_hash`, cached per process)."""
    from paperzoo.core.jobs import source_hash

    return source_hash("paperzoo.cafe")


def code_version() -> str:
    """The package's version and source hash, and the core's: part of every stored result's key,
    so that an upgraded or edited package (or core) recomputes rather than reuses old results."""
    from paperzoo.core.jobs import code_version as versions

    return versions("paperzoo.cafe", _source_hash())


def _job_name(function) -> str:
    """The job function's name and a hash of its own source (:func:`paperzoo.core.jobs.job_name`)."""
    from paperzoo.core.jobs import job_name

    return job_name(function)


def _cached_job(function: Callable[[tuple[str, dict[str, Any]]], Any], name: str, code: str,
                job: tuple[str, dict[str, Any]]) -> Any:
    """What joblib's ``Memory`` stores: ``function(job)``, keyed by ``name`` (the function's name
    and source), ``code`` (:func:`code_version`) and ``job``."""
    return function(job)


def _run_job(function: Callable[[tuple[str, dict[str, Any]]], Any], cache_dir: str | None,
             job: tuple[str, dict[str, Any]]) -> Any:
    """One job of :func:`run_jobs`, in whichever process runs it: ``function`` (:func:`call_job`)
    through joblib's ``Memory`` store at ``cache_dir`` when one is given, keyed also by the
    package's version and source hash (:func:`code_version`)."""
    if not cache_dir:
        return function(job)
    from joblib import Memory

    cached = Memory(cache_dir, verbose=0).cache(_cached_job, ignore=["function"])
    return cached(function, _job_name(function), code_version(), job)


def run_jobs(jobs: Sequence[tuple[str, dict[str, Any]]], workers: int = 1,
             cache_dir: str | None = None, job_timeout_s: float = 3600.0,
             names: Sequence[str] | None = None) -> list[Any]:
    """Run independent jobs on the core's :class:`~paperzoo.core.jobs.JobRunner`: in this process,
    one after another in the jobs' order, when ``workers == 1``; otherwise in ``min(workers,
    len(jobs))`` (at least two) worker processes, the longest jobs first. Every job runs on one
    torch thread wherever it runs (:func:`call_job`), so the numbers do not depend on ``workers``.
    Results keep the jobs' order; a job that raises, runs longer than ``job_timeout_s`` in a
    worker (no limit in this process) or loses its worker process is returned as a
    :class:`~paperzoo.core.jobs.JobFailure` naming it (``names[i]``, default ``"<i> <kind>"``)
    and the other jobs go on. With ``cache_dir`` every finished job is stored there (joblib's
    ``Memory``, keyed by the job, the job function, and the package's version and source hash:
    :func:`code_version`), so an interrupted or partly failed run resumes where it stopped (a
    failed job is not stored and runs again), a repeated one costs nothing, and an upgraded or
    edited package runs every job again. The cache holds pickles, which run code when loaded:
    use only a folder you wrote."""
    from paperzoo.core.jobs import JobRunner, check_timeout

    check_positive(workers=workers)
    check_timeout(job_timeout_s)
    names = [f"{i} {kind}" for i, (kind, _) in enumerate(jobs)] if names is None else list(names)
    if len(names) != len(jobs) or len(set(names)) != len(names):
        raise ValueError(f"run_jobs needs one distinct name per job, got {len(set(names))} for {len(jobs)} jobs")
    order = list(range(len(jobs)))
    if workers > 1:
        order.sort(key=lambda i: -_job_cost(jobs[i]))  # longest first
    with JobRunner(1 if workers == 1 else max(2, min(workers, len(jobs))), job_timeout_s) as runner:
        for i in order:  # call_job looked up here, so that a replaced one reaches the workers
            runner.submit(names[i], _run_job, call_job, cache_dir, jobs[i])
        done = runner.wait(names)
    return [done[name] for name in names]


def _job_cost(job: tuple[str, dict[str, Any]]) -> float:
    """A rough CPU cost, to start the longest jobs first."""
    kind, kwargs = job
    if kind == "cafe":
        defense = kwargs["scenario"].get("defense") or {}
        fake = (defense if isinstance(defense, str) else defense.get("name")) == "fake"
        return kwargs.get("iters", 3000) * (2.0 if fake else 1.0)
    if kind == "dlg":
        return kwargs.get("iters", 300) * kwargs.get("restarts", 2) * 1.5
    return kwargs.get("epochs", 20) * 40.0


def default_workers() -> int:
    """One process per available core (at least one)."""
    import os

    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)
