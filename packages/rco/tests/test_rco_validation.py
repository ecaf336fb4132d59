"""The validation experiment's statistics, its configuration and its resumable job store."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from paperzoo.rco.config import ValidationConfig
from paperzoo.rco.validation import paired_statistics, run_experiment, summarise


def test_paired_interval_against_a_t_table():
    """Independent reference: differences 1..5 have mean 3 and standard error sqrt(2.5 / 5);
    the two-sided 95 % t quantile with 4 degrees of freedom is 2.776445 (printed t tables)."""
    control = [0.50, 0.40, 0.30, 0.20, 0.10]
    treatment = [c + d for c, d in zip(control, [1.0, 2.0, 3.0, 4.0, 5.0])]
    result = paired_statistics(treatment, control)
    half = 2.776445105 * (2.5 / 5) ** 0.5
    assert result["mean"] == pytest.approx(3.0)
    assert (result["ci_low"], result["ci_high"]) == pytest.approx((3.0 - half, 3.0 + half), rel=1e-8)
    assert (result["ci_low"], result["ci_high"]) == pytest.approx((1.036757, 4.963243), abs=1e-6)


def test_paired_p_values_and_degenerate_cases():
    treatment = [0.91, 0.93, 0.92, 0.95, 0.90, 0.94]
    control = [0.90, 0.92, 0.93, 0.93, 0.89, 0.92]
    result = paired_statistics(treatment, control)
    diff = np.subtract(treatment, control)
    assert result["wilcoxon_p"] == pytest.approx(stats.wilcoxon(diff).pvalue)
    # t = mean / (sd / sqrt(n)) with 5 degrees of freedom, two-sided
    t = diff.mean() / (diff.std(ddof=1) / np.sqrt(6))
    assert result["t_p"] == pytest.approx(2 * stats.t.sf(abs(t), 5))
    same = paired_statistics([0.5, 0.6], [0.5, 0.6])
    assert (same["mean"], same["ci_low"], same["ci_high"], same["t_p"], same["wilcoxon_p"]) == (0, 0, 0, 1, 1)
    shifted = paired_statistics([1.5, 2.5], [1.0, 2.0])  # the same shift on every seed
    assert (shifted["ci_low"], shifted["ci_high"], shifted["t_p"]) == (0.5, 0.5, 0.0)


def test_validation_config_presets_and_explicit_values():
    assert (ValidationConfig().teacher_epochs, ValidationConfig().student_epochs) == (60, 60)
    reduced = ValidationConfig(preset="reduced")
    assert (reduced.teacher_epochs, reduced.student_epochs) == (10, 10)
    mixed = ValidationConfig(preset="reduced", student_epochs=20)
    assert (mixed.teacher_epochs, mixed.student_epochs) == (10, 20)
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        ValidationConfig(preset="huge")
    with pytest.raises(ValueError, match="unknown arm"):
        ValidationConfig(arms=("kd", "dml"))
    with pytest.raises(ValueError, match="must include kd"):
        ValidationConfig(arms=("ce",))


def _fake(task, seed, acc):
    arm = {"test_acc": acc, "kl_final": 0.1, "anchor_epochs": [2], "kl_curve": [0.2, 0.1]}
    return {"task": task, "seed": seed, "teacher_acc": 0.97, "teacher_val_acc": 0.97,
            "arms": {"kd": arm, "rco_eeis": {**arm, "test_acc": acc + 0.01}}}


def test_summary_of_paired_runs():
    metrics, rows = summarise([_fake("digits", 0, 0.90), _fake("digits", 1, 0.91)], ["digits"],
                              ["kd", "rco_eeis"])
    assert metrics["rco_minus_kd_digits"] == pytest.approx(0.01)
    assert metrics["kd_acc_digits"] == pytest.approx(0.905)
    assert (metrics["teacher_ge_095_digits"], metrics["students_ge_085_digits"]) == (1, 1)
    assert [row["arm"] for row in rows] == ["teacher", "kd", "rco_eeis"]


def test_finished_jobs_are_reused(tmp_path, monkeypatch):
    config = ValidationConfig(teacher_epochs=2, student_epochs=2, arms=("kd",))
    first = run_experiment(["digits"], [0], config, workers=1, jobs_dir=tmp_path)

    import paperzoo.rco.pipeline as pipeline

    monkeypatch.setattr(pipeline, "train_teacher", lambda *a, **k: pytest.fail("job ran again"))
    assert run_experiment(["digits"], [0], config, workers=1, jobs_dir=tmp_path) == first
    other = ValidationConfig(teacher_epochs=2, student_epochs=3, arms=("kd",))
    with pytest.raises(pytest.fail.Exception, match="job ran again"):  # another config: not reused
        run_experiment(["digits"], [0], other, workers=1, jobs_dir=tmp_path)


def test_unknown_task():
    with pytest.raises(ValueError, match="unknown task"):
        run_experiment(["mnist"], [0], ValidationConfig())
