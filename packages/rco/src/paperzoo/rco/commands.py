"""The verbs of ``paperzoo-rco``: plain functions with typed arguments (the CLI is built from them).

Each checks its arguments, calls :mod:`paperzoo.rco.pipeline` or :mod:`paperzoo.rco.validation`,
and writes ``metrics.json`` and a Markdown table ``results.md`` into ``--out`` (the core's CLI
builder writes the resolved ``config.yaml``). Heavy modules are imported inside the verbs, so
``--help`` loads no torch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from paperzoo.core.results import atomic_write_text, write_results
from paperzoo.rco.config import ValidationConfig

Loss = Literal["kd", "hint", "mimic"]


def train_teacher(
    out: Path,
    data: str = "digits",
    root: str | None = None,
    image_size: int | None = None,
    model: str = "mlp_teacher",
    epochs: int = 60,
    every_n_epochs: int = 1,
    lr: float = 0.05,
    weight_decay: float = 5e-4,
    batch_size: int = 64,
    seed: int = 0,
    device: str = "cpu",
    devices: int | str = 1,
    num_nodes: int = 1,
    strategy: str = "auto",
    precision: str | None = None,
    overwrite: bool = False,
    resume: bool = False,
) -> dict:
    """Train the teacher once and record its route (a checkpoint per epoch) in OUT/route
    (``--overwrite`` replaces a route already there; OUT/checkpoints/last.ckpt lets
    ``--resume`` continue an interrupted run).

    Args:
        data: digits, gauss (offline), cifar100, imagefolder (read --root), npz:FILE (arrays x
            and y) or folder:DIR (one sub-folder of images per class).
        root: data folder for cifar100 (cifar-100-python pickles) or imagefolder (train/, val/).
        image_size: folder:DIR only: resize every image to N x N (needed when the images differ
            in size); recorded in the route, so distill and kd resize the same way.
        model: teacher preset (see `paperzoo.rco.model.list_models()`).
        epochs: teacher epochs; the LR drops x0.1 at 1/2 and 3/4 of them.
        every_n_epochs: record a checkpoint every this many epochs (the last is always recorded).
        lr: SGD learning rate (momentum 0.9).
        weight_decay: SGD weight decay.
        batch_size: training batch size.
        resume: continue the interrupted run in --out from its last checkpoint (same options).
    """
    from paperzoo.core.lightning import CHECKPOINT_DIR
    from paperzoo.rco.data import make_datamodule
    from paperzoo.rco.pipeline import model_overrides_for
    from paperzoo.rco.pipeline import train_teacher as run

    _check_positive(epochs=epochs, every_n_epochs=every_n_epochs, batch_size=batch_size)
    datamodule = make_datamodule(data, seed=seed, batch_size=batch_size, root=root,
                                 image_size=image_size)
    extra = {"data": data, "root": root, "seed": seed}
    if image_size is not None:
        extra["image_size"] = image_size
    result = run(datamodule, out / "route", model, model_overrides_for(datamodule, model),
                 epochs=epochs, every_n_epochs=every_n_epochs, lr=lr, weight_decay=weight_decay,
                 device=device, log_dir=out, extra=extra,
                 overwrite=overwrite, devices=devices, num_nodes=num_nodes, strategy=strategy,
                 precision=precision, resume_dir=out / CHECKPOINT_DIR,
                 resume=resume)  # the CLI has seeded the global generators with --seed
    route = result.route
    if route is None:  # a DDP rank other than 0, with a temporary --out: rank 0 writes the results
        return {"teacher_test_acc": result.test_acc, "teacher_val_acc": result.val_acc}
    megabytes = sum(route.path(i).stat().st_size for i in range(len(route))) / 2**20
    metrics = {"teacher_test_acc": result.test_acc, "teacher_val_acc": result.val_acc,
               "route_checkpoints": len(route), "route_megabytes": megabytes}
    rows = [{"epoch": r.epoch, "step": r.step, "val_acc": r.val_acc, "file": r.file} for r in route]
    write_results(out, metrics, rows, title=f"Teacher route ({model} on {data})")
    return metrics


def distill(
    out: Path,
    route: str,
    anchors: str = "eeis:4",
    data: str | None = None,
    root: str | None = None,
    image_size: int | None = None,
    student: str = "mlp_student",
    loss: Loss = "kd",
    tau: float = 4.0,
    alpha: float = 0.9,
    mimic_weight: float = 1.0,
    student_layer: str | None = None,
    teacher_layer: str | None = None,
    epochs: int = 60,
    stage_epochs: int | None = None,
    lr_schedule: Literal["global", "per_stage"] = "global",
    lr: float = 0.05,
    weight_decay: float = 5e-4,
    batch_size: int = 64,
    seed: int = 0,
    device: str = "cpu",
    devices: int | str = 1,
    num_nodes: int = 1,
    strategy: str = "auto",
    precision: str | None = None,
    resume: bool = False,
) -> dict:
    """Distil a student along a recorded route (RCO); writes OUT/student.safetensors (and
    OUT/checkpoints/last.ckpt after every epoch, which ``--resume`` continues from).

    Args:
        route: route folder written by train-teacher (OUT/route).
        anchors: eeis:M (equal interval), greedy:mu=1.5[,delta=D][,max=K][,min_acc=A] (min_acc
            skips checkpoints whose probe accuracy is below A, i.e. near chance) or
            epochs:E1,E2,...
        data: defaults to the data the route was trained on; the test split must be the
            teacher's (same data, same --seed), which is checked.
        root: data folder for cifar100 / imagefolder (defaults to the route's).
        image_size: folder:DIR only: resize every image to N x N (defaults to the route's when
            the data is the route's).
        student: student preset.
        loss: mimic loss: kd (Hinton), hint (FitNets) or mimic (logit L2).
        tau: KD temperature (> 0).
        alpha: KD weight of the soft term, in [0, 1].
        mimic_weight: lambda of the hint and mimic losses.
        student_layer: hint loss: the student layer whose output is hinted (default: the
            preset's penultimate feature).
        teacher_layer: hint loss: the teacher layer giving the hint.
        epochs: total student epochs, shared by the stages.
        stage_epochs: epochs per stage (default: epochs // number of anchors).
        lr_schedule: global (one schedule over all stages) or per_stage (restart each stage,
            milestones scaled to the stage length).
        lr: SGD learning rate.
        weight_decay: SGD weight decay.
        batch_size: training batch size.
        resume: continue the interrupted run in --out from its last checkpoint (same options).
    """
    return _distill(out, route, anchors, data, root, image_size, student, seed, device, resume,
                    title=f"RCO student ({anchors}, loss {loss})",
                    options=dict(loss=loss, tau=tau, alpha=alpha, mimic_weight=mimic_weight,
                                 student_layer=student_layer, teacher_layer=teacher_layer,
                                 epochs=epochs, stage_epochs=stage_epochs, lr_schedule=lr_schedule,
                                 lr=lr, weight_decay=weight_decay, batch_size=batch_size,
                                 devices=devices, num_nodes=num_nodes, strategy=strategy,
                                 precision=precision))


def kd(
    out: Path,
    route: str,
    data: str | None = None,
    root: str | None = None,
    image_size: int | None = None,
    student: str = "mlp_student",
    loss: Loss = "kd",
    tau: float = 4.0,
    alpha: float = 0.9,
    mimic_weight: float = 1.0,
    student_layer: str | None = None,
    teacher_layer: str | None = None,
    epochs: int = 60,
    lr: float = 0.05,
    weight_decay: float = 5e-4,
    batch_size: int = 64,
    seed: int = 0,
    device: str = "cpu",
    devices: int | str = 1,
    num_nodes: int = 1,
    strategy: str = "auto",
    precision: str | None = None,
    resume: bool = False,
) -> dict:
    """Plain distillation from the route's last checkpoint (the baseline, same code as distill).

    Args:
        route: route folder written by train-teacher.
        data: defaults to the data the route was trained on (the test split is checked).
        root: data folder for cifar100 / imagefolder.
        image_size: folder:DIR only: resize every image to N x N (defaults to the route's when
            the data is the route's).
        student: student preset.
        loss: kd, hint or mimic.
        tau: KD temperature (> 0).
        alpha: KD weight of the soft term, in [0, 1].
        mimic_weight: lambda of the hint and mimic losses.
        student_layer: hint loss: the student layer whose output is hinted.
        teacher_layer: hint loss: the teacher layer giving the hint.
        epochs: student epochs.
        lr: SGD learning rate.
        weight_decay: SGD weight decay.
        batch_size: training batch size.
        resume: continue the interrupted run in --out from its last checkpoint (same options).
    """
    return _distill(out, route, None, data, root, image_size, student, seed, device, resume,
                    title=f"KD student (loss {loss})",
                    options=dict(loss=loss, tau=tau, alpha=alpha, mimic_weight=mimic_weight,
                                 student_layer=student_layer, teacher_layer=teacher_layer,
                                 epochs=epochs, lr=lr, weight_decay=weight_decay,
                                 batch_size=batch_size, devices=devices, num_nodes=num_nodes,
                                 strategy=strategy, precision=precision))


def _distill(out: Path, route: str, anchors: str | None, data: str | None, root: str | None,
             image_size: int | None, student: str, seed: int, device: str, resume: bool,
             title: str, options: dict) -> dict:
    from paperzoo.core.checkpoint import save_weights
    from paperzoo.core.lightning import CHECKPOINT_DIR
    from paperzoo.rco.anchors import anchor_placement
    from paperzoo.rco.data import make_datamodule
    from paperzoo.rco.pipeline import distill_student, model_overrides_for
    from paperzoo.rco.route import TeacherRoute

    _check_positive(epochs=options["epochs"], batch_size=options["batch_size"])
    teacher_route = TeacherRoute(route)  # checked whole: a corrupt checkpoint fails here
    trained_on = teacher_route.extra
    data = data or trained_on.get("data")
    if data is None:
        raise ValueError(f"route {route} does not say which data it was trained on; pass --data")
    if image_size is None and data == trained_on.get("data"):
        image_size = trained_on.get("image_size")  # the route's images were resized so
    datamodule = make_datamodule(data, seed=seed, batch_size=options.pop("batch_size"),
                                 root=root or trained_on.get("root"), image_size=image_size)
    placement = anchor_placement(teacher_route, anchors, datamodule.val_dataloader())
    result = distill_student(datamodule, teacher_route, student, model_overrides_for(datamodule, student),
                             device=device, log_dir=out, seed=seed, resume_dir=out / CHECKPOINT_DIR,
                             resume=resume, **placement, **options)
    trainer = result.module.trainer
    save_weights(result.module.student, out / "student.safetensors",
                 meta={"model": student, "route": str(route), "anchor_epochs": result.anchor_epochs,
                       "precision": str(trainer.precision), "world_size": trainer.world_size})
    metrics = {"test_acc": result.test_acc, "test_kl_to_final": result.test_kl_to_final,
               "num_anchors": len(result.anchors),
               "final_congruence_loss": result.history[-1].get("congruence_loss", float("nan"))}
    metrics.update({f"anchor_{i}_epoch": epoch for i, epoch in enumerate(result.anchor_epochs)})
    write_results(out, metrics, result.history, title=title)
    return metrics


def demo(out: Path, epochs: int = 20, seed: int = 0, device: str = "cpu", threads: int = 0,
         overwrite: bool = False) -> dict:
    """RCO end to end on digits in about a minute: teacher route, KD and RCO-EEIS students
    (the route goes to OUT/route; ``--overwrite`` replaces a route already there).

    Args:
        epochs: teacher and student epochs (>= 4: the RCO student has 4 anchors).
    """
    from paperzoo.core.runtime import torch_threads
    from paperzoo.rco.anchors import equal_interval
    from paperzoo.rco.data import make_datamodule
    from paperzoo.rco.pipeline import distill_student, model_overrides_for
    from paperzoo.rco.pipeline import train_teacher as run_teacher

    if epochs < 4:
        raise ValueError(f"demo needs epochs >= 4 (4 anchors), got {epochs}")
    datamodule = make_datamodule("digits", seed=seed)
    # Tiny MLPs: a second intra-op thread only adds synchronisation, unless --threads says otherwise.
    with torch_threads(threads or 1):
        teacher = run_teacher(datamodule, out / "route", "mlp_teacher",
                              model_overrides_for(datamodule, "mlp_teacher"), epochs=epochs,
                              device=device, extra={"data": "digits", "seed": seed},
                              overwrite=overwrite)
        overrides = model_overrides_for(datamodule, "mlp_student")
        kd_run = distill_student(datamodule, teacher.route, "mlp_student", overrides,
                                 anchors=[len(teacher.route) - 1], epochs=epochs, seed=seed,
                                 device=device)
        rco_run = distill_student(datamodule, teacher.route, "mlp_student", overrides,
                                  anchors=equal_interval(teacher.route, 4), epochs=epochs,
                                  seed=seed, device=device)
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
    experiment: ValidationConfig | None = None,
    seeds: int = 10,
    tasks: list[Literal["digits", "gauss"]] | None = None,
    workers: int = 2,
    resume: bool = False,
    job_timeout_s: float = 3600.0,
    seed: int = 0,
    device: str = "cpu",
) -> dict:
    """The spec's validation experiment: every arm over paired seeds, with paired statistics.

    Args:
        experiment: the per-seed settings (default: the spec's recipe): --experiment.preset
            reduced, --experiment.arms '["kd","rco_eeis"]', --experiment.student_epochs 20, ...
        seeds: number of paired replicates (seeds seed .. seed + seeds - 1).
        tasks: digits and/or gauss (default both).
        workers: processes running seeds in parallel (one thread each; 1: all in this process).
        resume: reuse the finished jobs stored in OUT/jobs by an earlier run with the same
            settings and the same paperzoo-rco version and source (needs --overwrite, since OUT
            is not empty). OUT/jobs holds pickles: resume only from a folder you wrote.
        job_timeout_s: the longest one (task, seed) job may run in a worker process (not
            applied with --workers 1); a job that fails or runs longer is recorded (jobs_failed,
            a row and its entry in runs.json naming it), the other seeds are aggregated, and the
            command exits with status 2 after writing the results.
    """
    from paperzoo.core.jobs import check_timeout, check_workers
    from paperzoo.rco.config import TASKS
    from paperzoo.rco.plots import plot_results
    from paperzoo.rco.validation import clear_jobs, failure_summary, run_experiment, summarise

    _check_positive(seeds=seeds)
    check_workers(workers)
    check_timeout(job_timeout_s)
    if not isinstance(experiment, ValidationConfig):  # the parser hands the nested options over
        experiment = ValidationConfig(**(experiment or {}))
    tasks = list(tasks or TASKS)
    arms = list(experiment.arms)
    jobs_dir = out / "jobs"
    if not resume:
        clear_jobs(jobs_dir)
    results = run_experiment(tasks, list(range(seed, seed + seeds)), experiment, workers=workers,
                             jobs_dir=jobs_dir, device=device, job_timeout_s=job_timeout_s)
    metrics, rows = summarise(results, tasks, arms)
    finished = [r for r in results if "error" not in r]
    plotted = [t for t in tasks if any(r["task"] == t for r in finished)]
    if plotted:
        plot_results(finished, plotted, arms, out)
    write_results(out, metrics, rows, title=f"RCO validation: {seeds} paired seeds, teacher "
                  f"{experiment.teacher_epochs} / student {experiment.student_epochs} epochs")
    atomic_write_text(out / "runs.json", json.dumps(results, indent=1) + "\n")
    failures = failure_summary(results)
    if failures:
        raise ValueError(f"{failures}; the other seeds' results written to {out / 'metrics.json'}")
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


def _check_positive(**counts: int) -> None:
    bad = {name: value for name, value in counts.items() if value < 1}
    if bad:
        raise ValueError(", ".join(f"{name} must be >= 1, got {value}" for name, value in bad.items()))
