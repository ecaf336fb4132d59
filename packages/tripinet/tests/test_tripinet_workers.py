"""``validate --workers``: the (arm, seed) trainings on worker processes give the metrics of one
process, and a job that fails is recorded while the other arms are still scored."""

import json
import math
import os

import pytest

from paperzoo.tripinet.cli import main
from paperzoo.tripinet.validation import ValidationConfig, run_validation, summarise

COST = ("seconds", "jobs_cpu_seconds")  # what may differ between the runs: their cost


def test_validation_with_two_workers_matches_one(small_train, small_test):
    config = ValidationConfig(
        num_train=48, num_test=24, steps=2, batch_size=8, seeds=2, arms=("full", "rgb")
    )
    baseline = {"f1": 0.1, "auc": 0.5}
    one = run_validation(config, small_train, small_test, workers=1, progress=False)
    two = run_validation(config, small_train, small_test, workers=2, progress=False)
    assert [(r["arm"], r["seed"]) for r in one] == [(r["arm"], r["seed"]) for r in two]
    assert not any("error" in r for r in one + two)
    m1, _ = summarise(one, baseline)
    m2, _ = summarise(two, baseline)
    assert m1.keys() == m2.keys() and m1["jobs_failed"] == 0 and "full_f1_seed1" in m1
    for name in m1:
        if not name.endswith(COST):
            a, b = m1[name], m2[name]
            assert a == b or (math.isnan(a) and math.isnan(b)), name
    assert {r["worker"] for r in one} == {os.getpid()}
    assert os.getpid() not in {r["worker"] for r in two}


def test_failed_job_is_recorded_and_the_other_arms_are_scored(tmp_path, monkeypatch, capsys):
    """A training that raises (full, seed 1) leaves the other arms scored and written, sets no
    pass flag on the arm with the missing seed, and ``validate`` exits 2 naming the job."""
    from paperzoo.tripinet import validation

    real_run_arm = validation.run_arm

    def flaky_run_arm(arm, seed, *args):
        if (arm, seed) == ("full", 1):
            raise RuntimeError("out of memory (simulated)")
        return real_run_arm(arm, seed, *args)

    monkeypatch.setattr(validation, "run_arm", flaky_run_arm)
    out = tmp_path / "v"
    sizes = ["--steps", "1", "--num_train", "16", "--num_test", "16", "--seeds", "2"]
    assert main(["validate", *sizes, "--workers", "1", "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert "1 validation job(s) failed" in error and "full seed 1: RuntimeError" in error
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["jobs_failed"] == 1
    assert "full_f1" not in metrics and "full_f1_seed0" in metrics
    assert "full_f1_seed1" not in metrics and "plain_f1_seed1" in metrics
    assert "rgb_f1" in metrics and "plain_f1" in metrics and "nofreq_f1" in metrics
    for flag in (
        "pass_full_f1_ge_0.5",
        "pass_full_minus_plain_ge_-0.02",
        "pass_full_beats_noisevar",
    ):
        assert metrics[flag] == 0, flag
    assert "pass_rgb_f1_le_0.3" in metrics
    table = (out / "results.md").read_text()
    assert "job full seed 1" in table and "out of memory (simulated)" in table
    assert (out / "full_seed0.safetensors").is_file()


def test_bad_worker_options_are_refused_before_work(tmp_path):
    with pytest.raises(ValueError, match="job_timeout_s"):
        ValidationConfig(job_timeout_s=0)
    with pytest.raises(ValueError, match="job_timeout_s"):
        ValidationConfig(job_timeout_s=math.inf)
    assert main(["validate", "--workers", "0", "--out", str(tmp_path / "a")]) == 2
    assert main(["validate", "--job_timeout_s", "-1", "--out", str(tmp_path / "b")]) == 2
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
