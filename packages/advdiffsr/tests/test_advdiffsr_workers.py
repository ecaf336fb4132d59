"""``validate --workers``: the independent trainings in worker processes give the same numbers
as one process, and a job that fails, hangs or loses its worker is recorded, not fatal."""

import math
import os
import time

import pytest

from paperzoo.advdiffsr.cli import main
from paperzoo.advdiffsr.jobs import JobFailure, JobRunner
from paperzoo.advdiffsr.validation import ValidationConfig, run_validation

COST = {"workers", "jobs_cpu_seconds"}  # what may differ between the runs: their cost


def test_validation_with_two_workers_matches_one(small_data_dir):
    from paperzoo.advdiffsr.data import load_lr
    from paperzoo.advdiffsr.oracle import oracle_training_hr

    config = dict(
        seeds=2, steps=4, rwae_steps=4, samples=2, preset="tiny", ls_sequences=1, ls_iterations=5
    )
    oracle_hr = oracle_training_hr(load_lr(small_data_dir / "train_lr.npz"), 0)  # seed of the data
    one = run_validation(small_data_dir, ValidationConfig(**config, workers=1), oracle_hr=oracle_hr)
    two = run_validation(small_data_dir, ValidationConfig(**config, workers=2), oracle_hr=oracle_hr)
    assert one.metrics.keys() == two.metrics.keys() and not one.failed and not two.failed
    for name in one.metrics.keys() - COST:
        a, b = one.metrics[name], two.metrics[name]
        assert a == b or (math.isnan(a) and math.isnan(b)), name
    assert (
        "oracle_rel_l2" in two.metrics
        and two.metrics["workers"] == 2
        and two.metrics["jobs_failed"] == 0
    )
    pids = {row["worker"] for row in two.rows if row["check"].startswith("job ")}
    assert os.getpid() not in pids and len(pids) == 2  # both workers ran jobs, not this process
    assert {row["worker"] for row in one.rows if row["check"].startswith("job ")} == {os.getpid()}


def test_job_runner_records_failures_timeouts_and_dead_workers():
    with JobRunner(workers=2, timeout_s=3.0) as runner:
        runner.submit("ok", math.sqrt, 9.0)
        runner.submit("raises", math.sqrt, -1.0)
        runner.submit("hangs", time.sleep, 60)
        runner.submit("dies", os._exit, 3)
        runner.submit("after", math.sqrt, 16.0)
        started = time.perf_counter()
        done = runner.wait(["ok", "raises", "hangs", "dies", "after"])
    assert time.perf_counter() - started < 40
    assert done["ok"] == 3.0 and done["after"] == 4.0
    assert isinstance(done["raises"], JobFailure) and "math domain error" in done["raises"].reason
    assert isinstance(done["hangs"], JobFailure) and "timed out after 3 s" in done["hangs"].reason
    assert isinstance(done["dies"], JobFailure) and "died" in done["dies"].reason
    assert {r.name for r in runner.records if not r.ok} == {"raises", "hangs", "dies"}


def test_job_runner_in_process_and_bad_options():
    with JobRunner(workers=1) as runner:
        runner.submit("ok", math.sqrt, 4.0)
        runner.submit("raises", math.sqrt, -1.0)
        assert runner.records[0].pid == os.getpid()
        done = runner.wait(["ok", "raises"])
        with pytest.raises(ValueError, match="submitted twice"):
            runner.submit("ok", math.sqrt, 1.0)
        with pytest.raises(ValueError, match="no job named 'missing'"):
            runner.wait(["missing"])
    assert done["ok"] == 2.0 and isinstance(done["raises"], JobFailure)
    with pytest.raises(ValueError, match="workers must be a positive integer"):
        JobRunner(workers=0)
    with pytest.raises(ValueError, match="job_timeout_s"):
        JobRunner(workers=2, timeout_s=-1)
    with pytest.raises(ValueError, match="workers must be a positive integer"):
        ValidationConfig(workers=0)
    with pytest.raises(ValueError, match="job_timeout_s"):
        ValidationConfig(job_timeout_s=math.inf)


def test_validate_refuses_bad_worker_options(tmp_path):
    assert main(["validate", "--workers", "0", "--out", str(tmp_path / "a")]) == 2
    assert main(["validate", "--job_timeout_s", "0", "--out", str(tmp_path / "b")]) == 2
