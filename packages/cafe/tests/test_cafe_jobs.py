"""The pool of runs behind ``validate`` and ``sweep``: a run that raises or runs past its
timeout is recorded (null numbers, a row and a warning naming it, ``jobs_failed``, false pass
flags, exit status 2) while the other runs are returned with the numbers they have alone."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest
import torch

from paperzoo.cafe import pipeline
from paperzoo.cafe.cli import main
from paperzoo.cafe.validation import factor_sweep
from paperzoo.core.jobs import JobFailure

HERE = Path(__file__).parent
TINY = dict(iters=5, n_samples=20, batch_size=10)


def _flaky(batch_size: int, error: str = "out of memory (simulated)"):
    real = pipeline.call_job

    def call_job(job):
        if job[0] == "cafe" and job[1]["scenario"]["batch_size"] == batch_size:
            raise RuntimeError(error)
        return real(job)

    return call_job


def test_run_jobs_keeps_order_and_returns_a_failure_for_the_job_that_raised(monkeypatch):
    scenario = {"n_samples": 20, "batch_size": 10, "seed": 0}
    jobs = [("cafe", {"scenario": scenario, "iters": 3}), ("cafe", {"scenario": {**scenario, "batch_size": 5},
                                                                    "iters": 3})]
    alone = pipeline.run_jobs(jobs[:1])
    monkeypatch.setattr(pipeline, "call_job", _flaky(5))
    results = pipeline.run_jobs(jobs, names=["ten", "five"])
    assert isinstance(results[1], JobFailure) and results[1].name == "five"
    assert results[1].reason.startswith("RuntimeError: out of memory (simulated)")
    assert torch.equal(results[0].x_hat, alone[0].x_hat)  # the same run as alone
    assert results[0].metrics["psnr_db"] == alone[0].metrics["psnr_db"]
    with pytest.raises(ValueError, match="job_timeout_s"):
        pipeline.run_jobs(jobs, job_timeout_s=0)
    with pytest.raises(ValueError, match="distinct name"):
        pipeline.run_jobs(jobs, names=["same", "same"])


def test_sweep_with_a_failed_run_records_it_and_keeps_the_others(tmp_path, monkeypatch, capsys):
    clean = factor_sweep("batch", [10], workers=1, **{k: v for k, v in TINY.items() if k != "batch_size"})
    monkeypatch.setattr(pipeline, "call_job", _flaky(20))
    out = tmp_path / "sweep"
    args = ["sweep", "--what", "batch", "--values", "[10, 20]", "--iters", "5", "--n_samples", "20",
            "--workers", "1", "--out", str(out)]
    assert main(args) == 2
    error = capsys.readouterr().err
    assert "1 job(s) failed (CAFE batch=20: RuntimeError: out of memory (simulated))" in error
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["jobs_failed"] == 1
    assert metrics["psnr_db_batch_20"] is None and metrics["label_acc_batch_20"] is None
    assert metrics["psnr_db_batch_10"] == round(clean.metrics["psnr_db_batch_10"], 4)  # as alone
    table = (out / "results.md").read_text()
    assert "failed job: CAFE batch=20" in table and "## Warnings" in table
    assert (out / "sweep_batch.png").is_file() and (out / "config.yaml").is_file()
    for verb in ("sweep", "validate"):
        assert main([verb, "--job_timeout_s", "0", "--out", str(tmp_path / f"bad-{verb}")]) == 2
        assert "job_timeout_s must be a positive number of seconds, got 0" in capsys.readouterr().err


def test_validate_with_a_failed_dlg_run_writes_the_rest(tmp_path, monkeypatch, capsys):
    real = pipeline.call_job

    def call_job(job):
        if job[0] == "dlg":
            raise RuntimeError("DLG diverged (simulated)")
        return real(job)

    monkeypatch.setattr(pipeline, "call_job", call_job)
    out = tmp_path / "validate"
    assert main(["validate", "--iters", "10", "--dlg_iters", "2", "--dlg_restarts", "1", "--utility_epochs", "1",
                 "--workers", "1", "--out", str(out)]) == 2
    assert "E2 DLG: RuntimeError: DLG diverged (simulated)" in capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["jobs_failed"] == 1
    assert metrics["e2_dlg_psnr_db"] is None and metrics["e2_gap_db"] is None and metrics["e2_pass"] == 0
    assert metrics["e1_psnr_db"] > 0 and metrics["e4_clean_acc"] > 0 and "e1_pass" in metrics
    assert "failed job: E2 DLG" in (out / "results.md").read_text()
    assert (out / "recon.png").is_file() and not (out / "recon_dlg.png").exists()
    assert (out / "tradeoff.png").is_file() and (out / "trace.png").is_file()


def test_a_run_past_its_timeout_in_a_worker_is_recorded(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(HERE))  # spawned workers inherit sys.path
    import cafe_job_functions

    monkeypatch.setattr(pipeline, "call_job", cafe_job_functions.slow_call_job)
    cache = str(tmp_path / "cache")
    clean = factor_sweep("batch", [10], workers=1, iters=5, n_samples=20, cache_dir=cache)
    started = time.perf_counter()
    # the batch-10 run comes from the cache, so its worker starts in a few seconds, well within
    # the 30 s (counted from dispatch, spawning and torch imports included, which a loaded
    # machine can stretch past 10 s); the batch-20 run hangs
    result = factor_sweep("batch", [10, cafe_job_functions.SLOW_BATCH], workers=2, iters=5, n_samples=20,
                          cache_dir=cache, job_timeout_s=30)
    assert time.perf_counter() - started < 120
    assert [f.name for f in result.failed] == ["CAFE batch=20"]
    assert "timed out after 30 s" in result.failed[0].reason
    assert result.metrics["jobs_failed"] == 1 and math.isnan(result.metrics["psnr_db_batch_20"])
    assert result.metrics["psnr_db_batch_10"] == clean.metrics["psnr_db_batch_10"]
    assert result.rows[-1] == {"batch": "failed job: CAFE batch=20", "error": "timed out after 30 s"}
    assert any("CAFE batch=20 failed" in note for note in result.warnings)


def test_runs_in_worker_processes_give_the_numbers_of_this_process():
    """Two spawned workers (one torch thread each, longest first) against this process."""
    one = factor_sweep("parties", [2, 4], workers=1, iters=5, n_samples=20, batch_size=10)
    two = factor_sweep("parties", [2, 4], workers=2, iters=5, n_samples=20, batch_size=10)
    assert one.metrics == two.metrics and one.metrics["jobs_failed"] == 0
    assert [r["psnr_db"] for r in one.rows] == [r["psnr_db"] for r in two.rows]


def test_a_sweep_value_given_twice_is_refused_naming_values():
    with pytest.raises(ValueError, match="--values names a value twice"):
        factor_sweep("batch", [10, 10.0], iters=5, n_samples=20)


CALLS: list[str] = []


def _counted_job(job):
    CALLS.append(job[0])
    return {"kind": job[0]}


def test_cached_runs_are_keyed_by_the_package_version_and_source(tmp_path, monkeypatch):
    """--cache reuses a run only when the package's version and source hash match the ones it
    was stored with: results of older code are computed again."""
    import paperzoo.cafe

    CALLS.clear()
    cache = str(tmp_path / "cache")
    job = ("utility", {"epochs": 1})
    assert pipeline._run_job(_counted_job, cache, job) == {"kind": "utility"}
    assert pipeline._run_job(_counted_job, cache, job) == {"kind": "utility"} and CALLS == ["utility"]
    monkeypatch.setattr(paperzoo.cafe, "__version__", "99.0.0")
    pipeline._run_job(_counted_job, cache, job)
    assert len(CALLS) == 2  # another version: a miss, run again
    pipeline._run_job(_counted_job, cache, job)
    assert len(CALLS) == 2
    monkeypatch.setattr(pipeline, "_source_hash", lambda: "edited source")
    pipeline._run_job(_counted_job, cache, job)
    assert len(CALLS) == 3  # edited source files: a miss
    assert pipeline.code_version().startswith("paperzoo.cafe 99.0.0 edited source; paperzoo.core ")
