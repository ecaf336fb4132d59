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


@pytest.mark.parametrize("seed", [0, 3])
def test_validation_seed_sets_every_training_and_sampling_seed(small_data_dir, monkeypatch, seed):
    """``ValidationConfig.seed`` (``validate`` / ``demo --seed``) is the first training seed: the
    hold-out candidates, the arms' seeds ``seed .. seed + seeds - 1``, the RWAE, its ensemble and
    diagnostics and the oracle all follow it (seed 0: the seeds the experiment always used). The
    trainings are replaced by stand-ins that record the seeds they get."""
    from types import SimpleNamespace

    import torch

    from paperzoo.advdiffsr import oracle, validation
    from paperzoo.advdiffsr.baselines import projected_bicubic

    seen = []

    def train_sr(train, config, device="cpu", **options):
        seen.append((config.arm, config.seed))
        return SimpleNamespace(model=None, history=[{"loss": 0.0}], seconds=0.0)

    def evaluate_candidate(train, val, config, fraction=0.1, device="cpu", **options):
        seen.append(("candidate", config.seed))
        errors = torch.full((val.num_sequences,), 0.1)
        return SimpleNamespace(seconds=0.0), 0.1, errors

    def sample_ensemble(model, data, samples=16, seed=0, device="cpu", **kwargs):
        seen.append(("ensemble", seed))
        noise = torch.randn(samples, *data.lr.shape[:2], data.hr_size, data.hr_size)
        return projected_bicubic(data)[None] + 0.1 * noise

    def latent_diagnostics(model, data, samples=4, seed=0, device="cpu", **kwargs):
        seen.append(("diagnostics", seed))
        return {}

    def train_oracle(train, hr, config, device="cpu", **options):
        seen.append(("oracle", config.seed))
        return SimpleNamespace(model=None, seconds=0.0)

    for name, stand_in in (
        ("train_sr", train_sr),
        ("evaluate_candidate", evaluate_candidate),
        ("sample_ensemble", sample_ensemble),
        ("latent_diagnostics", latent_diagnostics),
        ("super_resolve", lambda model, data, device="cpu": projected_bicubic(data)),
        ("physics_least_squares", lambda data, iterations: projected_bicubic(data).double()),
    ):
        monkeypatch.setattr(validation, name, stand_in)
    monkeypatch.setattr(oracle, "train_oracle", train_oracle)
    config = ValidationConfig(seeds=2, steps=1, rwae_steps=1, samples=2, preset="tiny", seed=seed)
    result = run_validation(small_data_dir, config, oracle_hr=torch.zeros(1))
    assert not result.failed
    first, second = seed, seed + 1
    assert sorted(seen) == sorted(
        [("candidate", first)] * 3
        + [("nophysics", first), ("nophysics", second), ("physics", first), ("physics", second)]
        + [("rwae", first), ("ensemble", first), ("diagnostics", first), ("oracle", first)]
    )
    assert {f"physics_rel_l2_seed{first}", f"nophysics_rel_l2_seed{second}"} <= set(result.metrics)
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        ValidationConfig(seed=-1)


def test_validate_and_demo_pass_their_seed_to_the_trainings(tmp_path, monkeypatch):
    """``--seed`` chooses the simulated data and the training seeds (``ValidationConfig.seed``)."""
    from paperzoo.advdiffsr import commands, data, validation

    class Stop(Exception):
        pass

    simulated, configs = [], []

    def run_validation(data_dir, config, device="cpu", oracle_hr=None, **options):
        configs.append(config)
        raise Stop

    monkeypatch.setattr(data, "simulate_dataset", lambda *a, seed=0, **k: simulated.append(seed))
    monkeypatch.setattr(validation, "run_validation", run_validation)
    for verb in (commands.validate, commands.demo):
        with pytest.raises(Stop):
            verb(tmp_path / verb.__name__, seed=7)
    assert simulated == [7, 7] and [c.seed for c in configs] == [7, 7]
