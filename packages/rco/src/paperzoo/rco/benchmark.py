"""The route's cost (spec section 5), as ratios against a baseline run in the same process.

- teacher training time per epoch with the :class:`RouteRecorder` vs without it;
- disk per recorded epoch (bytes of one checkpoint and of the whole route);
- distillation throughput of RCO (4 equal-interval anchors) vs KD, samples/s ratio;
- greedy-selection time vs the number of candidate checkpoints.

Every time is taken with ``torch.utils.benchmark.Timer`` (which synchronises CUDA and keeps the
caller's thread count).
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
from pathlib import Path

import torch

from paperzoo.core.runtime import resolve_device


def _seconds(function) -> float:
    """Wall time of one call of ``function``."""
    from torch.utils.benchmark import Timer

    timer = Timer(stmt="function()", globals={"function": function},
                  num_threads=torch.get_num_threads())
    return timer.timeit(number=1).mean


def _median_time(function, repeats: int) -> float:
    return statistics.median(_seconds(function) for _ in range(repeats))


def _paired_times(baseline, candidate, repeats: int) -> tuple[float, float, float]:
    """Median baseline time, median candidate time and the median of per-repeat ratios
    ``candidate / baseline``; runs alternate so that load changes hit both alike."""
    pairs = [(_seconds(baseline), _seconds(candidate)) for _ in range(repeats)]
    return (statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs),
            statistics.median(p[1] / p[0] for p in pairs))


def route_cost(out: Path, epochs: int = 10, repeats: int = 3, seed: int = 0,
               device: str = "cpu") -> dict[str, float]:
    """Measure on digits with ``mlp_teacher`` / ``mlp_student``; returns a flat record. The
    routes and probe files go to a scratch folder ``OUT/rco-bench-*`` (on the disk the results go
    to), removed when the run ends, whether it succeeds or not."""
    from paperzoo.core.lightning import make_trainer
    from paperzoo.rco.anchors import GreedySelector, equal_interval
    from paperzoo.rco.callbacks import RouteRecorder
    from paperzoo.rco.data import make_datamodule
    from paperzoo.rco.losses import KDLoss
    from paperzoo.rco.module import TeacherModule
    from paperzoo.rco.pipeline import distill_student, model_overrides_for
    from paperzoo.rco.route import TeacherRoute

    if epochs < 4 or repeats < 1:
        raise ValueError(f"benchmark needs epochs >= 4 and repeats >= 1, got {epochs}, {repeats}")
    torch.manual_seed(seed)
    datamodule = make_datamodule("digits", seed=seed)
    overrides = model_overrides_for(datamodule, "mlp_teacher")
    work = Path(tempfile.mkdtemp(prefix="rco-bench-", dir=out))
    try:  # the scratch folder goes however the run ends (an error, Ctrl-C): a leftover
        # OUT/rco-bench-* would make the next run into OUT refuse it as non-empty
        counter = iter(range(10**6))

        def teacher_run(record: bool) -> None:
            callbacks = [RouteRecorder(work / f"route{next(counter)}")] if record else []
            trainer = make_trainer(None, max_epochs=epochs, device=device, logger=False,
                                   deterministic="warn", progress_bar=False, callbacks=callbacks)
            trainer.fit(TeacherModule("mlp_teacher", overrides, max_epochs=epochs), datamodule=datamodule)

        teacher_run(False)  # warm-up
        plain, recorded, route_ratio = _paired_times(lambda: teacher_run(False),
                                                     lambda: teacher_run(True), repeats)
        route = TeacherRoute(next(p for p in sorted(work.iterdir()) if p.name.startswith("route")))
        checkpoint_bytes = [route.path(i).stat().st_size for i in range(len(route))]

        from paperzoo.core.checkpoint import save_weights

        teacher_model = route.load(-1)
        write_seconds = _median_time(lambda: save_weights(teacher_model, work / "probe.safetensors"),
                                     max(5, repeats))
        student_overrides = model_overrides_for(datamodule, "mlp_student")

        def student_run(anchors: list[int]) -> None:
            distill_student(datamodule, route, "mlp_student", student_overrides, anchors=anchors,
                            epochs=epochs, seed=seed, device=device)

        kd_time, rco_time, rco_ratio = _paired_times(lambda: student_run([len(route) - 1]),
                                                     lambda: student_run(equal_interval(route, 4)),
                                                     repeats)
        samples = epochs * len(datamodule.train_set)

        record: dict[str, float] = {
            "epochs": epochs,
            "teacher_seconds_per_epoch_plain": plain / epochs,
            "teacher_seconds_per_epoch_recorded": recorded / epochs,
            "route_time_ratio": route_ratio,
            "route_overhead_seconds_per_recorded_epoch": (route_ratio - 1.0) * plain / len(route),
            "checkpoint_write_seconds": write_seconds,
            "checkpoint_write_over_plain_epoch": write_seconds / (plain / epochs),
            "checkpoint_bytes_per_epoch": float(statistics.mean(checkpoint_bytes)),
            "route_megabytes": sum(checkpoint_bytes) / 2**20,
            "kd_samples_per_second": samples / kd_time,
            "rco_samples_per_second": samples / rco_time,
            "rco_over_kd_throughput": 1.0 / rco_ratio,
        }
        student = distill_student(datamodule, route, "mlp_student", student_overrides,
                                  anchors=[len(route) - 1], epochs=1, seed=seed,
                                  device=device).module.student
        student.to(resolve_device(device))  # Lightning's teardown left it on the CPU
        for candidates in sorted({2, len(route) // 2, len(route)}):
            def select(k: int = candidates) -> None:
                selector = GreedySelector(datamodule.val_dataloader(), KDLoss(), route=route)
                selector.mimic_distances(student, list(range(len(route) - k, len(route))))
            record[f"greedy_seconds_{candidates}_candidates"] = _median_time(select, repeats)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return record
