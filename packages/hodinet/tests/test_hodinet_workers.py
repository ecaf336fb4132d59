"""``validate``'s (arm, seed) jobs on the core's JobRunner: a job that raises, times out or loses
its worker is recorded (``jobs_failed``, a row naming it) while the other arms are still scored,
and no mean or pass flag is taken from an arm with a failed seed."""

from __future__ import annotations

import json
import math

import pytest
import torch

from paperzoo.hodinet.cli import main

SMALL = ["--steps", "1", "--n_train", "4", "--n_test", "6", "--time_budget_s", "0"]


class _Stub(torch.nn.Module):
    """A stand-in model (maps from RGB and depth), so that only the aggregation costs time."""

    img_size = 64

    def __init__(self) -> None:
        super().__init__()
        self.gain = torch.nn.Parameter(torch.tensor(2.0))

    def forward(self, rgb, depth):
        logits = self.gain * (rgb.mean(1, keepdim=True) + depth - 1)
        return {"logits": logits, "side": [logits]}


def _fake_training(monkeypatch):
    """Stand-in models, not trained, scored for real: the aggregation is what is checked."""
    from paperzoo.hodinet import model as model_module
    from paperzoo.hodinet import validation
    from paperzoo.hodinet.pipeline import TrainResult

    monkeypatch.setattr(model_module, "create_model", lambda preset, **kw: _Stub())
    monkeypatch.setattr(validation, "train_sod", lambda model, *a, **kw: TrainResult(model, [1.0, 0.5], 0.1, 1))


def test_failed_job_is_recorded_and_the_other_arms_are_scored(tmp_path, monkeypatch, capsys):
    """HODINet seed 0 raises (in this process, --workers 1): its seed 1 keeps its per-seed values,
    HODINet gets no mean and every check that reads it is 0; the other arms are scored, the
    figures written without the failed run, and validate exits 2 naming the job."""
    from paperzoo.hodinet import validation

    _fake_training(monkeypatch)
    real = validation._train_and_score

    def flaky(config, train, test, preset, seed, *args):
        if (preset, seed) == ("tiny", 0):
            raise RuntimeError("out of memory (simulated)")
        return real(config, train, test, preset, seed, *args)

    monkeypatch.setattr(validation, "_train_and_score", flaky)
    out = tmp_path / "v"
    assert main(["validate", *SMALL, "--seeds", "2", "--workers", "1", "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert "1 validation job(s) failed" in error and "hodinet seed 0: RuntimeError" in error
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["jobs_failed"] == 1 and metrics["metric_selftest"] == 1
    assert "hodinet_s_camo_seed1" in metrics and "hodinet_s_camo_seed0" not in metrics
    for absent in ("hodinet_s_camo", "hodinet_s_overall", "hodinet_s_camo_shuffled",
                   "hodinet_minus_addfusion_s", "shuffle_gap_camo", "zero_depth_finite"):
        assert absent not in metrics, absent
    for name in ("addfusion_s_overall", "addfusion_s_camo_seed1", "rgbonly_s_camo", "hodinet_train_seconds"):
        assert 0 <= metrics[name], name
    for flag in ("pass_hodinet_camo_both", "pass_vs_addfusion", "pass_shuffle", "pass_all"):
        assert metrics[flag] == 0, flag
    assert metrics["pass_rgbonly_blind"] == int(metrics["rgbonly_s_camo"] <= 0.70)
    table = (out / "results.md").read_text()
    assert "job hodinet seed 0" in table and "out of memory (simulated)" in table
    assert "incomplete: seed 0 failed" in table
    assert (out / "grid.png").is_file() and (out / "curves.png").is_file()


def test_timed_out_worker_jobs_are_recorded(tmp_path, capsys):
    """On worker processes, jobs past --job_timeout_s are failed, not waited for: with a
    timeout no job can meet, every one is recorded and the metrics are still written."""
    out = tmp_path / "v"
    assert main(["validate", *SMALL, "--seeds", "1", "--workers", "2", "--job_timeout_s", "0.01",
                 "--out", str(out)]) == 2
    assert "3 validation job(s) failed" in capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["jobs_failed"] == 3 and metrics["pass_all"] == 0 and metrics["metric_selftest"] == 1
    assert not any(name.startswith(("hodinet_", "addfusion_", "rgbonly_")) for name in metrics)
    table = (out / "results.md").read_text()
    for job in ("rgbonly seed 0", "addfusion seed 0", "hodinet seed 0"):
        assert f"job {job}" in table, job
    assert "timed out after 0.01 s" in table


def test_bad_job_timeout_is_refused_before_work(tmp_path, capsys):
    from paperzoo.hodinet.validation import ValidationConfig

    for bad in (0, -1, math.inf, math.nan):
        with pytest.raises(ValueError, match="job_timeout_s"):
            ValidationConfig(job_timeout_s=bad).check()
    for bad in ("0", "-1"):
        out = tmp_path / f"out{bad}"
        assert main(["validate", "--job_timeout_s", bad, "--out", str(out)]) == 2
        assert "job_timeout_s" in capsys.readouterr().err
        assert not out.exists()
