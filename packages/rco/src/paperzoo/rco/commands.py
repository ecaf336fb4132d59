"""The verbs of ``paperzoo-rco``: plain functions with typed arguments (the CLI is built from them).

Every verb writes its resolved ``config.yaml`` (done by the core's CLI builder), ``metrics.json``
and a Markdown table ``results.md`` into ``--out``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from paperzoo.core.results import atomic_write_text, write_results

Data = Literal["digits", "gauss", "cifar100", "imagefolder"]
Loss = Literal["kd", "hint", "mimic"]


def _route_megabytes(route) -> float:
    return sum(route.path(i).stat().st_size for i in range(len(route))) / 2**20


def train_teacher(
    out: Path,
    data: Data = "digits",
    root: str | None = None,
    model: str = "mlp_teacher",
    epochs: int = 60,
    every_n_epochs: int = 1,
    lr: float = 0.05,
    weight_decay: float = 5e-4,
    batch_size: int = 64,
    seed: int = 0,
    device: str = "cpu",
) -> dict:
    """Train the teacher once and record its route (a checkpoint per epoch) in OUT/route.

    Args:
        data: digits and gauss are offline; cifar100 and imagefolder read --root.
        root: data folder for cifar100 (cifar-100-python pickles) or imagefolder (train/, val/).
        model: teacher preset (see `paperzoo.rco.model.list_models()`).
        epochs: teacher epochs; the LR drops x0.1 at 1/2 and 3/4 of them.
        every_n_epochs: record a checkpoint every this many epochs (the last is always recorded).
        lr: SGD learning rate (momentum 0.9).
        weight_decay: SGD weight decay.
        batch_size: training batch size.
    """
    from paperzoo.rco.pipeline import make_datamodule, model_overrides_for
    from paperzoo.rco.pipeline import train_teacher as run

    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    datamodule = make_datamodule(data, seed=seed, batch_size=batch_size, root=root)
    result = run(datamodule, out / "route", model, model_overrides_for(datamodule, model),
                 epochs=epochs, every_n_epochs=every_n_epochs, lr=lr, weight_decay=weight_decay,
                 device=device, log_dir=out, extra={"data": data, "root": root, "seed": seed})
    route = result.route
    metrics = {"teacher_test_acc": result.test_acc, "teacher_val_acc": result.val_acc,
               "route_checkpoints": len(route), "route_megabytes": _route_megabytes(route)}
    rows = [{"epoch": r.epoch, "step": r.step, "val_acc": r.val_acc, "file": r.file} for r in route]
    write_results(out, metrics, rows, title=f"Teacher route ({model} on {data})")
    return metrics


def _distill(out: Path, route: str, anchors: str | None, data: Data | None, root: str | None,
             student: str, loss: str, tau: float, alpha: float, mimic_weight: float, epochs: int,
             stage_epochs: int | None, lr_schedule: str, lr: float, weight_decay: float,
             batch_size: int, seed: int, device: str, title: str) -> dict:
    from paperzoo.core.checkpoint import save_weights
    from paperzoo.rco.anchors import GreedySelector, equal_interval, explicit, parse_anchor_spec
    from paperzoo.rco.pipeline import distill_student, make_datamodule, model_overrides_for
    from paperzoo.rco.route import TeacherRoute

    teacher_route = TeacherRoute(route)
    trained_on = teacher_route.extra
    data = data or trained_on.get("data")
    if data is None:
        raise ValueError(f"route {route} does not say which data it was trained on; pass --data")
    if trained_on.get("data") not in (None, data) or trained_on.get("seed") not in (None, seed):
        raise ValueError(f"route {route} was trained on data={trained_on.get('data')!r} with "
                         f"seed={trained_on.get('seed')}; distil with the same --data and --seed so "
                         f"the teacher's training split never reaches the student's test split")
    datamodule = make_datamodule(data, seed=seed, batch_size=batch_size,
                                 root=root or trained_on.get("root"))
    placement: dict = {}
    if anchors is None:
        placement["anchors"] = [len(teacher_route) - 1]
    else:
        spec = parse_anchor_spec(anchors)
        if spec.kind == "eeis":
            placement["anchors"] = equal_interval(teacher_route, spec.m)
        elif spec.kind == "epochs":
            placement["anchors"] = explicit(teacher_route, spec.epochs)
        else:
            # The selector compares checkpoints with the distiller's own mimic term.
            placement["selector"] = GreedySelector(datamodule.val_dataloader(), None,
                                                   mu=spec.mu, delta=spec.delta,
                                                   max_anchors=spec.max_anchors)
    result = distill_student(datamodule, teacher_route, student,
                             model_overrides_for(datamodule, student), loss=loss, tau=tau,
                             alpha=alpha, mimic_weight=mimic_weight, epochs=epochs,
                             stage_epochs=stage_epochs, lr_schedule=lr_schedule, lr=lr,
                             weight_decay=weight_decay, device=device, log_dir=out, seed=seed,
                             **placement)
    save_weights(result.module.student, out / "student.safetensors",
                 meta={"model": student, "route": str(route), "anchor_epochs": result.anchor_epochs})
    metrics = {"test_acc": result.test_acc, "test_kl_to_final": result.test_kl_to_final,
               "num_anchors": len(result.anchors),
               "final_congruence_loss": result.history[-1].get("congruence_loss", float("nan"))}
    metrics.update({f"anchor_{i}_epoch": epoch for i, epoch in enumerate(result.anchor_epochs)})
    write_results(out, metrics, result.history, title=title)
    return metrics


def distill(
    out: Path,
    route: str,
    anchors: str = "eeis:4",
    data: Data | None = None,
    root: str | None = None,
    student: str = "mlp_student",
    loss: Loss = "kd",
    tau: float = 4.0,
    alpha: float = 0.9,
    mimic_weight: float = 1.0,
    epochs: int = 60,
    stage_epochs: int | None = None,
    lr_schedule: Literal["global", "per_stage"] = "global",
    lr: float = 0.05,
    weight_decay: float = 5e-4,
    batch_size: int = 64,
    seed: int = 0,
    device: str = "cpu",
) -> dict:
    """Distil a student along a recorded route (RCO); writes OUT/student.safetensors.

    Args:
        route: route folder written by train-teacher (OUT/route).
        anchors: eeis:M (equal interval), greedy:mu=1.5[,delta=D][,max=K] or epochs:E1,E2,...
        data: defaults to the data the route was trained on.
        root: data folder for cifar100 / imagefolder (defaults to the route's).
        student: student preset.
        loss: mimic loss: kd (Hinton), hint (FitNets) or mimic (logit L2).
        tau: KD temperature (> 0).
        alpha: KD weight of the soft term, in [0, 1].
        mimic_weight: lambda of the hint and mimic losses.
        epochs: total student epochs, shared by the stages.
        stage_epochs: epochs per stage (default: epochs // number of anchors).
        lr_schedule: global (one schedule over all stages) or per_stage (restart each stage).
        lr: SGD learning rate.
        weight_decay: SGD weight decay.
        batch_size: training batch size.
    """
    return _distill(out, route, anchors, data, root, student, loss, tau, alpha, mimic_weight,
                    epochs, stage_epochs, lr_schedule, lr, weight_decay, batch_size, seed, device,
                    title=f"RCO student ({anchors}, loss {loss})")


def kd(
    out: Path,
    route: str,
    data: Data | None = None,
    root: str | None = None,
    student: str = "mlp_student",
    loss: Loss = "kd",
    tau: float = 4.0,
    alpha: float = 0.9,
    mimic_weight: float = 1.0,
    epochs: int = 60,
    lr: float = 0.05,
    weight_decay: float = 5e-4,
    batch_size: int = 64,
    seed: int = 0,
    device: str = "cpu",
) -> dict:
    """Plain distillation from the route's last checkpoint (the baseline, same code as distill).

    Args:
        route: route folder written by train-teacher.
        data: defaults to the data the route was trained on.
        root: data folder for cifar100 / imagefolder.
        student: student preset.
        loss: kd, hint or mimic.
        tau: KD temperature (> 0).
        alpha: KD weight of the soft term, in [0, 1].
        mimic_weight: lambda of the hint and mimic losses.
        epochs: student epochs.
        lr: SGD learning rate.
        weight_decay: SGD weight decay.
        batch_size: training batch size.
    """
    return _distill(out, route, None, data, root, student, loss, tau, alpha, mimic_weight, epochs,
                    None, "global", lr, weight_decay, batch_size, seed, device,
                    title=f"KD student (loss {loss})")


def demo(out: Path, epochs: int = 20, seed: int = 0, device: str = "cpu") -> dict:
    """RCO end to end on digits in about a minute: teacher route, KD and RCO-EEIS students.

    Args:
        epochs: teacher and student epochs.
    """
    import torch

    from paperzoo.rco.anchors import equal_interval
    from paperzoo.rco.pipeline import distill_student, make_datamodule, model_overrides_for
    from paperzoo.rco.pipeline import train_teacher as run_teacher

    if epochs < 4:
        raise ValueError(f"demo needs epochs >= 4 (4 anchors), got {epochs}")
    # Tiny MLPs: a second intra-op thread only adds synchronisation (and spinning on busy cores).
    torch.set_num_threads(1)
    datamodule = make_datamodule("digits", seed=seed)
    teacher = run_teacher(datamodule, out / "route", "mlp_teacher",
                          model_overrides_for(datamodule, "mlp_teacher"), epochs=epochs,
                          device=device, extra={"data": "digits", "seed": seed})
    overrides = model_overrides_for(datamodule, "mlp_student")
    kd_run = distill_student(datamodule, teacher.route, "mlp_student", overrides,
                             anchors=[len(teacher.route) - 1], epochs=epochs, seed=seed, device=device)
    rco_run = distill_student(datamodule, teacher.route, "mlp_student", overrides,
                              anchors=equal_interval(teacher.route, 4), epochs=epochs, seed=seed,
                              device=device)
    metrics = {"teacher_acc": teacher.test_acc, "kd_acc": kd_run.test_acc,
               "rco_eeis_acc": rco_run.test_acc, "kl_final_kd": kd_run.test_kl_to_final,
               "kl_final_rco_eeis": rco_run.test_kl_to_final}
    rows = [{"model": "teacher (mlp_teacher)", "test_acc": teacher.test_acc, "kl_to_teacher": 0.0,
             "anchor_epochs": ""},
            {"model": "KD student", "test_acc": kd_run.test_acc,
             "kl_to_teacher": kd_run.test_kl_to_final, "anchor_epochs": str(kd_run.anchor_epochs)},
            {"model": "RCO-EEIS student", "test_acc": rco_run.test_acc,
             "kl_to_teacher": rco_run.test_kl_to_final, "anchor_epochs": str(rco_run.anchor_epochs)}]
    write_results(out, metrics, rows, title="paperzoo-rco demo (digits, one seed)")
    return metrics


def validate(
    out: Path,
    seeds: int = 10,
    tasks: list[Literal["digits", "gauss"]] | None = None,
    arms: list[str] | None = None,
    teacher_epochs: int = 60,
    student_epochs: int = 60,
    workers: int = 2,
    resume: bool = False,
    seed: int = 0,
) -> dict:
    """The spec's validation experiment: every arm over paired seeds, with paired statistics.

    Args:
        seeds: number of paired replicates (seeds seed .. seed + seeds - 1).
        tasks: digits and/or gauss (default both).
        arms: subset of ce, kd, rco_eeis, rco_greedy, rco_reverse, kd_best_mid, rco_eeis2,
            rco_eeis8 (default: the first five; kd is required).
        teacher_epochs: teacher epochs (one checkpoint each).
        student_epochs: student epochs of every arm.
        workers: processes running seeds in parallel (one thread each).
        resume: reuse the finished jobs stored in OUT/jobs by an earlier run with the same
            settings (needs --overwrite, since OUT is not empty).
    """
    from paperzoo.rco.validation import (
        REQUIRED_ARMS,
        TASKS,
        ValidationConfig,
        plot_results,
        run_experiment,
        summarise,
    )

    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    tasks = list(tasks or TASKS)
    arms = list(arms or REQUIRED_ARMS)
    if "kd" not in arms:
        raise ValueError(f"arms must include kd (every paired difference is against KD), got {arms}")
    config = ValidationConfig(teacher_epochs=teacher_epochs, student_epochs=student_epochs,
                              arms=tuple(arms))
    jobs_dir = out / "jobs"
    if jobs_dir.is_dir() and not resume:
        for stale in jobs_dir.glob("*.json"):
            stale.unlink()
    jobs_dir.mkdir(exist_ok=True)
    results = run_experiment(tasks, list(range(seed, seed + seeds)), config, workers=workers,
                             jobs_dir=jobs_dir)
    metrics, rows = summarise(results, tasks, arms)
    if "digits" in tasks:  # the pass numbers: teacher >= 0.95, every student >= 0.85
        metrics["teacher_ge_095_digits"] = int(metrics["teacher_acc_digits"] >= 0.95)
        metrics["students_ge_085_digits"] = int(all(metrics[f"{a}_acc_digits"] >= 0.85 for a in arms))
    plot_results(results, tasks, arms, out)
    write_results(out, metrics, rows, title=f"RCO validation: {seeds} paired seeds, "
                                            f"teacher {teacher_epochs} / student {student_epochs} epochs")
    atomic_write_text(out / "runs.json", json.dumps(results, indent=1) + "\n")
    return metrics


def benchmark(out: Path, epochs: int = 10, repeats: int = 3, seed: int = 0, device: str = "cpu") -> dict:
    """Cost of the route: time and disk per recorded epoch vs plain training, RCO vs KD
    throughput, greedy-selection time vs the number of candidate checkpoints.

    Args:
        epochs: teacher / student epochs per timed run.
        repeats: timed repetitions (the median is reported).
    """
    from paperzoo.rco.benchmark import route_cost

    record = route_cost(out, epochs=epochs, repeats=repeats, seed=seed, device=device)
    rows = [{"measure": k, "value": v} for k, v in record.items()]
    write_results(out, record, rows, title="paperzoo-rco route cost benchmark")
    return record
