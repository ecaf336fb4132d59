"""``validate``'s (task, seed) jobs on the core's JobRunner: a seed that raises or runs past its
timeout is recorded (``jobs_failed``, runs.json, a row, exit status 2) while the other seeds are
aggregated with the numbers they have alone."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from paperzoo.rco import validation
from paperzoo.rco.cli import main
from paperzoo.rco.config import ValidationConfig
from paperzoo.rco.validation import run_experiment, run_seed, summarise

HERE = Path(__file__).parent
TINY = ValidationConfig(teacher_epochs=2, student_epochs=2, eeis_anchors=2, arms=("kd", "rco_eeis"))


def _flaky(failing_seed: int):
    real = validation.run_seed

    def run_seed(task, seed, config, work_dir, device="cpu"):  # run_seed's signature: the job store
        if seed == failing_seed:                                 # ignores work_dir by name
            raise RuntimeError("out of memory (simulated)")
        return real(task, seed, config, work_dir, device)

    return run_seed


def test_a_failed_seed_is_recorded_and_the_others_aggregated(tmp_path, monkeypatch):
    alone = run_seed("digits", 0, TINY, str(tmp_path))
    monkeypatch.setattr(validation, "run_seed", _flaky(1))
    results = run_experiment(["digits"], [0, 1, 2], TINY, workers=1)
    assert [r["seed"] for r in results] == [0, 1, 2]
    assert "error" not in results[0] and "error" not in results[2]
    assert results[1]["task"] == "digits" and results[1]["error"].startswith("RuntimeError: out of memory")
    assert json.dumps(results[0]) == json.dumps(alone)  # the numbers of the seed run alone (NaN too)
    metrics, rows = summarise(results, ["digits"], list(TINY.arms))
    assert metrics["jobs_failed"] == 1 and metrics["num_seeds_digits"] == 2
    ok = [results[0], results[2]]
    assert metrics["kd_acc_digits"] == pytest.approx(sum(r["arms"]["kd"]["test_acc"] for r in ok) / 2)
    assert "rco_minus_kd_digits" in metrics  # paired over the two seeds that finished
    assert metrics["teacher_ge_095_digits"] == 0 and metrics["students_ge_085_digits"] == 0
    failed = [row for row in rows if "error" in row]
    assert len(failed) == 1 and failed[0]["arm"] == "failed job: seed 1"
    assert failed[0]["error"] == "RuntimeError: out of memory (simulated)"
    with pytest.raises(ValueError, match="job_timeout_s"):
        run_experiment(["digits"], [0], TINY, job_timeout_s=-1)
    with pytest.raises(ValueError, match="workers must be a positive integer"):
        run_experiment(["digits"], [0], TINY, workers=0)


def test_validate_with_a_failed_seed_writes_the_others_and_exits_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(validation, "run_seed", _flaky(1))
    out = tmp_path / "v"
    args = ["validate", "--seeds", "2", "--tasks", '["digits"]', "--experiment.teacher_epochs", "2",
            "--experiment.student_epochs", "2", "--experiment.eeis_anchors", "2",
            "--experiment.arms", '["kd", "rco_eeis"]', "--workers", "1", "--out", str(out)]
    assert main(args) == 2
    assert "1 validation job(s) failed (digits seed 1: RuntimeError" in capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["jobs_failed"] == 1 and metrics["num_seeds_digits"] == 1
    assert metrics["teacher_ge_095_digits"] == 0 and metrics["kd_acc_digits"] > 0
    runs = json.loads((out / "runs.json").read_text())
    assert [r["seed"] for r in runs] == [0, 1] and "error" in runs[1] and "error" not in runs[0]
    assert "failed job: seed 1" in (out / "results.md").read_text()
    assert (out / "accuracy.png").is_file() and (out / "config.yaml").is_file()
    assert main(["validate", "--job_timeout_s", "0", "--out", str(tmp_path / "bad")]) == 2
    assert "job_timeout_s must be a positive number" in capsys.readouterr().err


def test_a_seed_past_its_timeout_in_a_worker_is_recorded(monkeypatch):
    monkeypatch.syspath_prepend(str(HERE))  # spawned workers inherit sys.path
    import rco_job_functions

    monkeypatch.setattr(validation, "run_seed", rco_job_functions.slow_or_fake_seed)
    started = time.perf_counter()
    # 30 s: counted from dispatch, spawning the workers (torch imports) included, which a loaded
    # machine can stretch past 10 s
    results = run_experiment(["digits"], [0, rco_job_functions.SLOW_SEED, 2], TINY, workers=2,
                             job_timeout_s=30)
    assert time.perf_counter() - started < 120
    assert [r["seed"] for r in results] == [0, 1, 2]
    assert "timed out after 30 s" in results[1]["error"]
    assert results[0]["teacher_acc"] == results[2]["teacher_acc"] == 0.97
    metrics, _ = summarise(results, ["digits"], list(TINY.arms))
    assert metrics["jobs_failed"] == 1 and metrics["num_seeds_digits"] == 2


CALLS: list[int] = []


def _counted_seed(task, seed, config, work_dir, device="cpu"):
    CALLS.append(seed)
    return {"task": task, "seed": seed}


def test_stored_jobs_are_keyed_by_the_package_version_and_source(tmp_path, monkeypatch):
    """OUT/jobs (validate --resume) reuses a job only when the package's version and source hash
    match the ones it was stored with: results of older code are computed again."""
    import paperzoo.rco

    CALLS.clear()
    store = str(tmp_path / "jobs")

    def job(work_dir="w1"):
        return validation._seed_job(_counted_seed, store, "digits", 0, TINY, str(tmp_path / work_dir), "cpu")

    assert job() == {"task": "digits", "seed": 0}
    assert job("w2") == {"task": "digits", "seed": 0} and CALLS == [0]  # stored, work_dir ignored
    monkeypatch.setattr(paperzoo.rco, "__version__", "99.0.0")
    job()
    assert CALLS == [0, 0]  # another version: a miss, run again
    job()
    assert CALLS == [0, 0]
    monkeypatch.setattr(validation, "_source_hash", lambda: "edited source")
    job()
    assert CALLS == [0, 0, 0]  # edited source files: a miss
    assert validation.code_version().startswith("paperzoo.rco 99.0.0 edited source; paperzoo.core ")


FAILING: set[int] = set()
_REAL_RUN_SEED = validation.run_seed


def _seed_failing_on_demand(task, seed, config, work_dir, device="cpu"):
    CALLS.append(seed)
    if seed in FAILING:
        raise RuntimeError("out of memory (simulated)")
    return _REAL_RUN_SEED(task, seed, config, work_dir, device)


def test_validate_overwrite_resume_reuses_the_finished_jobs(tmp_path, monkeypatch, capsys):
    """``validate``'s own ``resume`` option (not the training verbs' ``--resume``): with
    ``--overwrite`` it reuses the seeds stored in OUT/jobs and runs only the failed one again;
    ``--overwrite`` alone clears the store and runs every seed."""
    monkeypatch.setattr(validation, "run_seed", _seed_failing_on_demand)
    CALLS.clear()
    FAILING.clear()
    FAILING.add(1)
    out = tmp_path / "v"
    args = ["validate", "--seeds", "2", "--tasks", '["digits"]', "--experiment.teacher_epochs", "2",
            "--experiment.student_epochs", "2", "--experiment.eeis_anchors", "2",
            "--experiment.arms", '["kd", "rco_eeis"]', "--workers", "1", "--out", str(out)]
    assert main(args) == 2 and CALLS == [0, 1]
    capsys.readouterr()
    assert main([*args, "--resume", "true"]) == 2  # a folder with results needs --overwrite
    assert "--overwrite" in capsys.readouterr().err
    FAILING.clear()
    CALLS.clear()
    assert main([*args, "--overwrite", "--resume", "true"]) == 0
    assert CALLS == [1]  # seed 0 came from OUT/jobs
    resumed = json.loads((out / "metrics.json").read_text())
    assert resumed["jobs_failed"] == 0 and resumed["num_seeds_digits"] == 2
    CALLS.clear()
    assert main([*args, "--overwrite"]) == 0
    assert CALLS == [0, 1]  # without --resume the store was cleared
    assert json.loads((out / "metrics.json").read_text()) == resumed
