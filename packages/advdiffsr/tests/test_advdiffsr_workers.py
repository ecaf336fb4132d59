"""``validate --workers``: the independent trainings in worker processes give the same numbers
as one process, and a job that fails, hangs or loses its worker is recorded, not fatal."""

import math
import os

import pytest

from paperzoo.advdiffsr.cli import main
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


def test_validation_config_refuses_bad_worker_options():
    """The runner itself is tested in the core (shared/tests/test_core_jobs.py)."""
    with pytest.raises(ValueError, match="workers must be a positive integer"):
        ValidationConfig(workers=0)
    with pytest.raises(ValueError, match="job_timeout_s"):
        ValidationConfig(job_timeout_s=math.inf)


def test_validate_refuses_bad_worker_options(tmp_path):
    assert main(["validate", "--workers", "0", "--out", str(tmp_path / "a")]) == 2
    assert main(["validate", "--job_timeout_s", "0", "--out", str(tmp_path / "b")]) == 2


def test_failed_jobs_are_recorded_and_the_rest_is_scored(tmp_path, monkeypatch, capsys):
    """A training that raises (physics seed 1, the RWAE) leaves the other arms scored and
    written, gates nothing on the missing seed, and ``validate`` exits 2 naming the jobs."""
    import json

    from paperzoo.advdiffsr import validation

    real_sr_job = validation.sr_job

    def flaky_sr_job(train_path, test_path, config, device, options):
        if config.arm == "physics" and config.seed == 1:
            raise RuntimeError("out of memory (simulated)")
        return real_sr_job(train_path, test_path, config, device, options)

    def broken_rwae_job(*args):
        raise RuntimeError("diverged (simulated)")

    monkeypatch.setattr(validation, "sr_job", flaky_sr_job)
    monkeypatch.setattr(validation, "rwae_job", broken_rwae_job)
    out = tmp_path / "v"
    tiny = ["--hr", "32", "--n_train", "4", "--n_val", "2", "--n_test", "2", "--frames", "12"]
    sizes = ["--seeds", "2", "--steps", "4", "--rwae_steps", "4", "--samples", "2"]
    rest = ["--preset", "tiny", "--ls_sequences", "1", "--ls_iterations", "5", "--workers", "1"]
    assert main(["validate", "--out", str(out), *tiny, *sizes, *rest]) == 2
    error = capsys.readouterr().err
    assert "2 validation job(s) failed" in error and "physics seed 1: RuntimeError" in error
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["jobs_failed"] == 2 and metrics["physics_rel_l2_seed0"] > 0
    assert "physics_rel_l2_seed1" not in metrics and metrics["nophysics_rel_l2_seed1"] > 0
    assert metrics["pass_physics_over_bicubic"] == 0 and metrics["pass_pde_residual"] == 0
    assert metrics["rwae_spread_ratio"] is None and metrics["pass_rwae_lr_consistency"] == 0
    assert "out of memory (simulated)" in (out / "results.md").read_text()
    assert (out / "fields.png").is_file() and not (out / "rank_histogram.png").exists()
