"""The validation experiment's statistics and its resumable job store."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from paperzoo.rco.validation import (
    ValidationConfig,
    config_record,
    paired_statistics,
    run_experiment,
    summarise,
)


def test_paired_statistics_against_scipy():
    treatment = [0.91, 0.93, 0.92, 0.95, 0.90, 0.94]
    control = [0.90, 0.92, 0.93, 0.93, 0.89, 0.92]
    result = paired_statistics(treatment, control)
    diff = np.subtract(treatment, control)
    half = stats.t.ppf(0.975, 5) * diff.std(ddof=1) / np.sqrt(6)
    assert result["mean"] == pytest.approx(diff.mean())
    assert (result["ci_low"], result["ci_high"]) == pytest.approx((diff.mean() - half, diff.mean() + half))
    assert result["wilcoxon_p"] == pytest.approx(stats.wilcoxon(diff).pvalue)
    assert result["t_p"] == pytest.approx(stats.ttest_rel(treatment, control).pvalue)
    same = paired_statistics([0.5, 0.6], [0.5, 0.6])
    assert same["mean"] == 0.0 and same["wilcoxon_p"] == 1.0


def _fake(task, seed, acc):
    arm = {"test_acc": acc, "kl_final": 0.1, "anchor_epochs": [2], "kl_curve": [0.2, 0.1]}
    return {"task": task, "seed": seed, "teacher_acc": 0.97, "teacher_val_acc": 0.97,
            "arms": {"kd": arm, "rco_eeis": {**arm, "test_acc": acc + 0.01}}}


def test_finished_jobs_are_reused(tmp_path):
    config = ValidationConfig(teacher_epochs=2, student_epochs=2, arms=("kd", "rco_eeis"))
    for seed in (0, 1):
        payload = {"config": config_record(config), "result": _fake("digits", seed, 0.9 + seed / 100)}
        (tmp_path / f"digits-seed{seed}.json").write_text(json.dumps(payload))
    results = run_experiment(["digits"], [0, 1], config, workers=1, jobs_dir=tmp_path)
    assert [r["seed"] for r in results] == [0, 1]  # nothing was trained: both came from the store
    metrics, rows = summarise(results, ["digits"], ["kd", "rco_eeis"])
    assert metrics["rco_minus_kd_digits"] == pytest.approx(0.01)
    assert metrics["kd_acc_digits"] == pytest.approx(0.905)
    assert any(row["arm"] == "rco_eeis" for row in rows)


def test_unknown_task_or_arm():
    with pytest.raises(ValueError, match="unknown task"):
        run_experiment(["mnist"], [0], ValidationConfig())
    with pytest.raises(ValueError, match="unknown arm"):
        run_experiment(["digits"], [0], ValidationConfig(arms=("kd", "dml")))
