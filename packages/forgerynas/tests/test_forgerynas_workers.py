"""``validate --workers``: the searches and retrainings on worker processes give the metrics of
one process, and a job that fails is recorded while the rest goes on."""

import json
import math
import os

import pytest

from paperzoo.forgerynas import validation
from paperzoo.forgerynas.cli import main
from paperzoo.forgerynas.validation import ValidationConfig, ValidationResult, run_validation

TINY = dict(
    seeds=2,
    n_train=64,
    n_val=32,
    n_test=32,
    n_b=32,
    n_c=32,
    search_C=4,
    search_layers=2,
    search_epochs=2,
    search_batches=1,
    search_batch_size=8,
    eval_C=4,
    eval_layers=4,
    train_epochs=1,
    train_batch_size=16,
    cnn_C=4,
)


def _cost(name: str) -> bool:
    """What may differ between the runs: their cost."""
    return name.startswith("seconds_") or name in (
        "validate_seconds",
        "jobs_cpu_seconds",
        "workers",
    )


def _same(a: float, b: float) -> bool:
    return a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b))


def test_validation_with_two_workers_matches_one():
    arms = ("cdc_in", "random", "cnn")  # a search, the two random genotypes, a plain training
    one = run_validation(ValidationConfig(**TINY, arms=arms, workers=1))
    two = run_validation(ValidationConfig(**TINY, arms=arms, workers=2))
    assert one.metrics.keys() == two.metrics.keys() and not one.failed and not two.failed
    for name in one.metrics:
        if not _cost(name):
            assert _same(one.metrics[name], two.metrics[name]), name
    assert one.genotypes == two.genotypes and one.genotypes.keys() >= {"random2_seed1"}
    assert "cdc_importance_share_colour_cast" in two.metrics and two.metrics["workers"] == 2
    jobs = [row for row in two.rows if row["arm"].startswith("job ")]
    assert len(jobs) == 2 * 4 + 1 and all(row["cpu_seconds"] > 0 for row in jobs)
    assert os.getpid() not in {row["worker"] for row in jobs}
    assert {row["worker"] for row in one.rows if row["arm"].startswith("job ")} == {os.getpid()}


def test_failed_job_is_recorded_and_the_rest_is_scored(monkeypatch):
    """A retraining that raises (cnn, seed 1) leaves the other arms scored; the cnn arm reports
    seed 0 but no mean, and ``pass_in_auc`` is 0."""
    real_arm_job = validation.arm_job

    def flaky_arm_job(arm, seed, *args):
        if (arm, seed) == ("cnn", 1):
            raise RuntimeError("diverged (simulated)")
        return real_arm_job(arm, seed, *args)

    monkeypatch.setattr(validation, "arm_job", flaky_arm_job)
    config = ValidationConfig(**TINY, arms=("cnn", "random"), mechanism=False, workers=1)
    result = run_validation(config)
    metrics = result.metrics
    assert metrics["jobs_failed"] == 1 and [f.name for f in result.failed] == ["cnn seed 1"]
    assert "in_auc_cnn" not in metrics and "in_auc_cnn_seed0" in metrics
    assert "in_auc_cnn_seed1" not in metrics and "cnn_cross_in_band" not in metrics
    assert metrics["in_auc_random_seed1"] > 0 and "in_auc_random" in metrics
    assert metrics["pass_in_auc"] == 0
    errors = [row for row in result.rows if "error" in row]
    assert any("diverged (simulated)" in row["error"] for row in errors)


def test_validate_exits_2_naming_failed_jobs_after_writing(tmp_path, monkeypatch, capsys):
    from paperzoo.core.jobs import JobFailure

    def failing(config, device):
        assert config.workers == 2 and config.job_timeout_s == 60  # the CLI's options arrive
        failure = JobFailure("timm seed 0", "timed out after 60 s")
        return ValidationResult({"jobs_failed": 1, "in_auc_cnn": 0.9}, [], failed=[failure])

    monkeypatch.setattr(validation, "run_validation", failing)
    out = tmp_path / "v"
    assert main(["validate", "--job_timeout_s", "60", "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert "1 validation job(s) failed" in error and "timm seed 0: timed out after 60 s" in error
    assert json.loads((out / "metrics.json").read_text())["jobs_failed"] == 1


def test_bad_worker_options_are_refused(tmp_path):
    for bad in (0, -1, True):
        with pytest.raises(ValueError, match="workers"):
            ValidationConfig(workers=bad)
    for bad in (0, math.inf, -5.0):
        with pytest.raises(ValueError, match="job_timeout_s"):
            ValidationConfig(job_timeout_s=bad)
    assert ValidationConfig().workers == 1  # the library runs in this process by default
    assert main(["validate", "--workers", "0", "--out", str(tmp_path / "a")]) == 2
    assert main(["validate", "--job_timeout_s", "0", "--out", str(tmp_path / "b")]) == 2
