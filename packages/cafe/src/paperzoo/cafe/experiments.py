"""End-to-end runs shared by the CLI verbs: build a VFL run, attack it with CAFE or DLG, score
the reconstruction, train with a defence. Real data reach only the protocol and the metrics.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import torch

from paperzoo.cafe.attack import CafeAttack, CafeConfig
from paperzoo.cafe.baselines import DLGAttack
from paperzoo.cafe.data import attack_subset, load_dataset
from paperzoo.cafe.defenses import make_defense, parse_sigma
from paperzoo.cafe.metrics import hungarian_match, reconstruction_metrics
from paperzoo.cafe.model import VFLModel, create_model
from paperzoo.cafe.protocol import VerticalFL, image_partition, part_shapes

MODEL_FOR_DATASET = {"digits": "tiny_digits", "mnist": "paper_mnist", "cifar10": "paper_cifar",
                     "linnaeus5": "paper_cifar"}


@dataclass
class Scenario:
    """One VFL run the attacker watches: data, parties, batch size, model, training lr, defence."""

    dataset: str = "digits"
    root: str | None = None
    parties: int = 4
    n_samples: int = 80
    batch_size: int = 40
    model: str = "auto"
    fl_lr: float = 0.0
    defense: str = "none"
    defense_options: dict[str, Any] = field(default_factory=dict)
    schedule: str = "shuffle"
    image_size: int = 32
    weights: str | None = None
    seed: int = 0

    def check(self) -> None:
        """Fail before any work on settings that cannot run."""
        if self.n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {self.n_samples}")
        if not 1 <= self.batch_size <= self.n_samples:
            raise ValueError(f"batch size {self.batch_size} must be between 1 and the number of "
                             f"samples {self.n_samples}")
        make_defense(self.defense, **_defense_kwargs(self.defense_options))


def _defense_kwargs(options: dict[str, Any]) -> dict[str, Any]:
    options = dict(options)
    if "sigma" in options:
        options["sigma"] = parse_sigma(options["sigma"])
    return options


@dataclass
class BuiltRun:
    images: torch.Tensor
    labels: torch.Tensor
    partition: Any
    model: VFLModel
    vfl: VerticalFL


def build_run(scenario: Scenario) -> BuiltRun:
    """Data subset, partition, model and protocol of a scenario (seeded)."""
    scenario.check()
    images, labels = load_dataset(scenario.dataset, scenario.root, "train", scenario.image_size)
    images, labels = attack_subset(images, labels, scenario.n_samples, scenario.seed)
    partition = image_partition(scenario.parties, tuple(images.shape[1:]))
    shapes = part_shapes(partition, tuple(images.shape[1:]))
    name = MODEL_FOR_DATASET[scenario.dataset] if scenario.model == "auto" else scenario.model
    classes = max(int(labels.max()) + 1, 10)
    model = create_model(name, num_parties=scenario.parties, classes=classes, part_shape=shapes[0],
                         seed=scenario.seed)
    if scenario.weights:
        from paperzoo.core.checkpoint import load_weights

        load_weights(model, scenario.weights)  # names the file and key on a wrong or corrupt file
    defense = make_defense(scenario.defense, seed=scenario.seed, **_defense_kwargs(scenario.defense_options))
    vfl = VerticalFL(model, partition, images, labels, scenario.batch_size, fl_lr=scenario.fl_lr,
                     defense=defense, schedule=scenario.schedule, seed=scenario.seed)
    return BuiltRun(images, labels, partition, model, vfl)


def run_cafe(scenario: Scenario, iters: int = 3000, config: CafeConfig | None = None,
             device: str = "cpu", track_every: int = 0,
             callback: Callable[[CafeAttack], None] | None = None) -> dict[str, Any]:
    """Attack ``iters`` rounds of a scenario with CAFE. Returns metrics, the recovered images and
    labels, the PSNR trace (every ``track_every`` iterations) and the run time."""
    config = config or CafeConfig(seed=scenario.seed)
    run = build_run(scenario)
    known = run.labels if config.label_mode == "known" else None
    attack = CafeAttack(scenario.n_samples, run.model, config, labels=known,
                        batch_size=scenario.batch_size, image_merge=run.partition.merge, device=device)
    trace: list[tuple[int, float, float]] = []
    started = time.perf_counter()

    def _track(a: CafeAttack) -> None:
        if track_every and a.iteration % track_every == 0:
            parts, _ = a.reconstruction()
            psnr = reconstruction_metrics(run.partition.merge(parts), run.images)["psnr_db"]
            trace.append((a.iteration, time.perf_counter() - started, psnr))
        if callback is not None:
            callback(a)

    loop_rounds = run.vfl.rounds(iters)
    if config.loop == "nested":
        loop_rounds = list(loop_rounds)
    attack.run(loop_rounds, iterations=iters, callback=_track)
    seconds = time.perf_counter() - started
    parts, label_logits = attack.reconstruction()
    x_hat = run.partition.merge(parts)
    metrics = reconstruction_metrics(x_hat, run.images, label_logits, run.labels, parts,
                                     run.partition.split(run.images))
    metrics["seconds"] = seconds
    metrics["iters_per_s"] = iters / max(seconds, 1e-9)
    return {"metrics": metrics, "x_hat": x_hat, "x_true": run.images, "trace": trace,
            "y_hat": label_logits.argmax(1), "y_true": run.labels}


def run_dlg(scenario: Scenario, restarts: int = 2, iters: int = 300, optimizer: str = "lbfgs",
            cost: str = "l2", device: str = "cpu") -> dict[str, Any]:
    """DLG on the first round of the scenario (same model and batch as CAFE sees first),
    scored after Hungarian matching."""
    run = build_run(scenario)
    observed = run.vfl.round()
    started = time.perf_counter()
    result = DLGAttack(observed, run.model, restarts=restarts, optimizer=optimizer, iters=iters,
                       cost=cost, seed=scenario.seed, device=device).run()
    seconds = time.perf_counter() - started
    x_hat = run.partition.merge(result.parts)
    x_true = run.images[observed.batch_idx]
    y_true = run.labels[observed.batch_idx]
    perm = hungarian_match(x_hat, x_true)
    matched_parts = [p[perm] for p in result.parts]
    metrics = reconstruction_metrics(x_hat[perm], x_true, result.label_logits[perm], y_true,
                                     matched_parts, run.partition.split(x_true))
    metrics.update(seconds=seconds, matching_cost=result.cost)
    return {"metrics": metrics, "x_hat": x_hat[perm], "x_true": x_true,
            "y_hat": result.label_logits[perm].argmax(1), "y_true": y_true}


def run_utility(dataset: str = "digits", root: str | None = None, parties: int = 4, epochs: int = 20,
                batch_size: int = 40, seed: int = 0, defense: str = "none", image_size: int = 32,
                device: str = "cpu", lr: float = 0.05, save_path: str | None = None,
                **defense_options) -> dict[str, float]:
    """Test accuracy of the VFL model trained on the whole dataset with a defence."""
    from paperzoo.cafe.module import train_vfl

    make_defense(defense, **_defense_kwargs(defense_options))
    images, labels = load_dataset(dataset, root, "train", image_size)
    model_name = MODEL_FOR_DATASET[dataset]
    options = {k: (str(v) if k == "sigma" else v) for k, v in defense_options.items()}
    return train_vfl(images, labels, epochs=epochs, batch_size=batch_size, seed=seed, device=device,
                     model_name=model_name, num_parties=parties, defense=defense, lr=lr,
                     save_path=save_path, **options)


# ---------------------------------------------------------------- parallel jobs
def _init_worker() -> None:
    torch.set_num_threads(1)


@contextlib.contextmanager
def _one_thread():
    """One torch thread for the duration of a job. Float reductions depend on the thread count,
    and the defended training runs amplify such differences (a naive fake-gradient run moved
    from 0.38 to 0.21 test accuracy between 1 and 2 threads), so every job, in a worker process
    or in this one, runs on exactly one thread and gives the same numbers however it is run."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def call_job(job: tuple[str, dict[str, Any]]) -> Any:
    """Run one named job (``cafe``, ``dlg`` or ``utility``) from picklable arguments, on one
    torch thread (see :func:`_one_thread`)."""
    with _one_thread():
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


def run_jobs(jobs: Sequence[tuple[str, dict[str, Any]]], workers: int = 1) -> list[Any]:
    """Run independent jobs, in ``workers`` single-threaded processes when ``workers > 1``
    (tiny models run fastest one thread per process); results keep the jobs' order."""
    if workers <= 1 or len(jobs) <= 1:
        return [call_job(job) for job in jobs]
    import multiprocessing

    order = sorted(range(len(jobs)), key=lambda i: -_job_cost(jobs[i]))  # longest first
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker) as pool:
        done = list(pool.map(call_job, [jobs[i] for i in order]))
    results: list[Any] = [None] * len(jobs)
    for position, result in zip(order, done):
        results[position] = result
    return results


def _job_cost(job: tuple[str, dict[str, Any]]) -> float:
    """A rough CPU cost, to start the longest jobs first."""
    kind, kwargs = job
    if kind == "cafe":
        fake = kwargs["scenario"].get("defense") == "fake"
        return kwargs.get("iters", 3000) * (2.0 if fake else 1.0)
    if kind == "dlg":
        return kwargs.get("iters", 300) * kwargs.get("restarts", 2) * 1.5
    return kwargs.get("epochs", 20) * 40.0


def default_workers() -> int:
    """One process per available core (at least one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)
