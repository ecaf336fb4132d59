"""The route's cost (spec section 5), as ratios against a baseline run in the same process.

- teacher training time per epoch with the :class:`RouteRecorder` vs without it;
- disk per recorded epoch (bytes of one checkpoint and of the whole route);
- distillation throughput of RCO (4 equal-interval anchors) vs KD, samples/s ratio;
- greedy-selection time vs the number of candidate checkpoints.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import torch


def _median_time(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def route_cost(out: Path, epochs: int = 10, repeats: int = 3, seed: int = 0,
               device: str = "cpu") -> dict[str, float]:
    """Measure on digits with ``mlp_teacher`` / ``mlp_student``; returns a flat record."""
    from paperzoo.core.lightning import make_trainer
    from paperzoo.rco.anchors import GreedySelector, equal_interval
    from paperzoo.rco.losses import KDLoss
    from paperzoo.rco.module import TeacherModule
    from paperzoo.rco.pipeline import distill_student, make_datamodule, model_overrides_for
    from paperzoo.rco.route import RouteRecorder, TeacherRoute

    if epochs < 4 or repeats < 1:
        raise ValueError(f"benchmark needs epochs >= 4 and repeats >= 1, got {epochs}, {repeats}")
    torch.manual_seed(seed)
    datamodule = make_datamodule("digits", seed=seed)
    overrides = model_overrides_for(datamodule, "mlp_teacher")
    work = Path(tempfile.mkdtemp(prefix="rco-bench-", dir=out))
    counter = iter(range(10**6))

    def teacher_run(record: bool) -> None:
        callbacks = [RouteRecorder(work / f"route{next(counter)}")] if record else []
        trainer = make_trainer(None, max_epochs=epochs, device=device, logger=False,
                               progress_bar=False, callbacks=callbacks)
        trainer.fit(TeacherModule("mlp_teacher", overrides, max_epochs=epochs), datamodule=datamodule)

    teacher_run(False)  # warm-up
    plain = _median_time(lambda: teacher_run(False), repeats)
    recorded = _median_time(lambda: teacher_run(True), repeats)
    route = TeacherRoute(next(p for p in sorted(work.iterdir()) if p.name.startswith("route")))
    checkpoint_bytes = [route.path(i).stat().st_size for i in range(len(route))]

    student_overrides = model_overrides_for(datamodule, "mlp_student")

    def student_run(anchors: list[int]) -> None:
        distill_student(datamodule, route, "mlp_student", student_overrides, anchors=anchors,
                        epochs=epochs, seed=seed, device=device)

    kd_time = _median_time(lambda: student_run([len(route) - 1]), repeats)
    rco_time = _median_time(lambda: student_run(equal_interval(route, 4)), repeats)
    samples = epochs * len(datamodule.train_set)

    record: dict[str, float] = {
        "epochs": epochs,
        "teacher_seconds_per_epoch_plain": plain / epochs,
        "teacher_seconds_per_epoch_recorded": recorded / epochs,
        "route_time_ratio": recorded / plain,
        "route_overhead_seconds_per_recorded_epoch": (recorded - plain) / len(route),
        "checkpoint_bytes_per_epoch": float(statistics.mean(checkpoint_bytes)),
        "route_megabytes": sum(checkpoint_bytes) / 2**20,
        "kd_samples_per_second": samples / kd_time,
        "rco_samples_per_second": samples / rco_time,
        "rco_over_kd_throughput": kd_time / rco_time,
    }
    student = distill_student(datamodule, route, "mlp_student", student_overrides,
                              anchors=[len(route) - 1], epochs=1, seed=seed).module.student
    for candidates in sorted({2, len(route) // 2, len(route)}):
        def select(k: int = candidates) -> None:
            selector = GreedySelector(datamodule.val_dataloader(), KDLoss(), route=route)
            selector.mimic_distances(student, list(range(len(route) - k, len(route))))
        record[f"greedy_seconds_{candidates}_candidates"] = _median_time(select, repeats)
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    return record
