"""The CLI end to end (in-process ``main``), bad input exits and a reduced validation run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from paperzoo.advdiffsr.cli import main
from paperzoo.core import testing

VERBS = ["simulate", "train", "predict", "uncertainty", "demo", "validate"]
REQUIRED = [
    "bicubic_rel_l2",
    "nophysics_rel_l2",
    "physics_rel_l2",
    "physics_over_bicubic_max",
    "physics_over_nophysics_max",
    "physics_pde_residual",
    "bicubic_pde_residual",
    "physics_lr_consistency",
    "physics_ls_rel_l2",
    "rwae_sample_lr_consistency_max",
    "rwae_spread_ratio",
    "rwae_coverage_50",
    "rwae_coverage_90",
    "rwae_crps",
    "bicubic_mae",
]


def test_help_lists_every_verb():
    testing.check_cli_help(main, VERBS)


def test_help_does_not_import_torch():
    code = (
        "import sys; from paperzoo.advdiffsr.cli import main\n"
        "try:\n    main(['train', '--help'])\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules, 'torch imported by --help'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_console_script_runs():
    script = Path(sys.executable).with_name("paperzoo-advdiffsr")
    done = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and "uncertainty" in done.stdout


@pytest.mark.parametrize(
    "verb, args",
    [("validate", ["--seeds", "2"]), ("train", ["--data", "x"]), ("simulate", ["--hr", "32"])],
)
def test_print_config_round_trips(verb, args, tmp_path):
    assert testing.check_print_config(main, verb, args, tmp_path)["seed"] == 0


def test_simulate_train_predict_uncertainty(tmp_path):
    data = tmp_path / "data"
    assert (
        main(
            [
                "simulate",
                "--out",
                str(data),
                "--n_train",
                "3",
                "--n_val",
                "1",
                "--n_test",
                "2",
                "--hr",
                "32",
                "--frames",
                "10",
            ]
        )
        == 0
    )
    assert (data / "train_lr.npz").is_file() and (data / "sample.png").is_file()
    physics = tmp_path / "physics"
    assert (
        main(
            [
                "train",
                "--data",
                str(data),
                "--lambda_pde",
                "1.0",
                "--preset",
                "tiny",
                "--steps",
                "3",
                "--window",
                "8",
                "--out",
                str(physics),
            ]
        )
        == 0
    )
    testing.check_metrics_json(physics, ["loss_pde", "loss_lr", "seconds"])
    predicted = tmp_path / "predict"
    assert (
        main(
            [
                "predict",
                "--checkpoint",
                str(physics / "model.safetensors"),
                "--data",
                f"npz:{data / 'test_lr.npz'}",
                "--truth",
                str(data / "test_hr.npz"),
                "--out",
                str(predicted),
            ]
        )
        == 0
    )
    scores = testing.check_metrics_json(predicted, ["rel_l2", "lr_consistency", "pde_residual"])
    assert scores["lr_consistency"] < 1e-5
    with np.load(predicted / "prediction.npz") as archive:
        assert archive["hr_pred"].shape == (2, 10, 32, 32)
    # prediction past T: the first 7 frames in, the last 3 as the HR-free future check
    with np.load(data / "test_lr.npz") as archive:
        fields = dict(archive)
    np.savez(tmp_path / "past_lr.npz", **{**fields, "lr": fields["lr"][:, :7]})
    np.savez(tmp_path / "future_lr.npz", **{**fields, "lr": fields["lr"][:, 7:]})
    rolled = tmp_path / "rolled"
    assert (
        main(
            [
                "predict",
                "--checkpoint",
                str(physics / "model.safetensors"),
                "--data",
                f"npz:{tmp_path / 'past_lr.npz'}",
                "--roll_forward",
                "4",
                "--future",
                f"npz:{tmp_path / 'future_lr.npz'}",
                "--out",
                str(rolled),
            ]
        )
        == 0
    )
    skill = testing.check_metrics_json(
        rolled, ["forecast_skill", "forecast_lr_rel_error", "persistence_lr_rel_error"]
    )
    assert skill["forecast_leads"] == 3 and (rolled / "forecast_skill.png").is_file()
    with np.load(rolled / "prediction.npz") as archive:
        assert archive["hr_forecast"].shape == (2, 4, 32, 32)
    assert (
        main(
            [
                "predict",
                "--checkpoint",
                str(physics / "model.safetensors"),
                "--data",
                str(tmp_path / "past_lr.npz"),
                "--future",
                str(tmp_path / "future_lr.npz"),
                "--out",
                str(tmp_path / "no_roll"),
            ]
        )
        == 2
    )
    rwae = tmp_path / "rwae"
    assert (
        main(
            [
                "train",
                "--data",
                str(data),
                "--model",
                "rwae",
                "--lambda_pde",
                "1.0",
                "--preset",
                "tiny",
                "--steps",
                "4",
                "--window",
                "8",
                "--static_latent",
                "3",
                "--out",
                str(rwae),
            ]
        )
        == 0
    )
    ensemble = tmp_path / "ensemble"
    status = main(
        [
            "uncertainty",
            "--checkpoint",
            str(rwae / "model.safetensors"),
            "--data",
            str(data / "test_lr.npz"),
            "--samples",
            "3",
            "--truth",
            str(data / "test_hr.npz"),
            "--out",
            str(ensemble),
        ]
    )
    metrics = testing.check_metrics_json(
        ensemble, ["coverage_50", "coverage_90", "crps", "sample_lr_consistency_max"]
    )
    assert metrics["sample_lr_consistency_max"] < 1e-5
    assert status == (
        0 if metrics["spread_ratio"] >= 0.01 else 2
    )  # a collapse exits non-zero, numbers kept
    # the ensemble's probabilistic prediction past T, scored on the future LR frames (no HR)
    ensemble_forecast = tmp_path / "ensemble_forecast"
    status = main(
        [
            "uncertainty",
            "--checkpoint",
            str(rwae / "model.safetensors"),
            "--data",
            str(tmp_path / "past_lr.npz"),
            "--samples",
            "3",
            "--roll_forward",
            "4",
            "--future",
            str(tmp_path / "future_lr.npz"),
            "--out",
            str(ensemble_forecast),
        ]
    )
    metrics = testing.check_metrics_json(
        ensemble_forecast, ["forecast_skill", "forecast_spread_ratio", "spread_ratio"]
    )
    assert metrics["forecast_leads"] == 3 and status == (
        0 if metrics["spread_ratio"] >= 0.01 else 2
    )
    with np.load(ensemble_forecast / "ensemble.npz") as archive:
        assert archive["forecast_mean"].shape == archive["forecast_std"].shape == (2, 4, 32, 32)
    assert (ensemble_forecast / "forecast_skill.png").is_file()
    no_roll = ["--checkpoint", str(rwae / "model.safetensors"), "--data", str(data / "test_lr.npz")]
    future_only = [
        "--future",
        str(tmp_path / "future_lr.npz"),
        "--out",
        str(tmp_path / "u_no_roll"),
    ]
    assert main(["uncertainty", *no_roll, *future_only]) == 2


def test_data_prefixes_are_stripped_for_train_and_val(tmp_path):
    from paperzoo.advdiffsr.commands import _lr_paths

    assert _lr_paths("npz:a_lr.npz", "nc:b_lr.nc") == ("a_lr.npz", "b_lr.nc")
    assert _lr_paths(str(tmp_path), None) == (str(tmp_path / "train_lr.npz"), None)


def test_bad_inputs_exit_2_with_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    lr = np.zeros((1, 4, 4, 4), np.float32)
    lr[0, 2, 1, 3] = np.nan
    np.savez(bad, lr=lr, u=np.zeros((1, 2, 16, 16), np.float32), kappa=0.01, dt_obs=0.1, scale=4)
    assert (
        main(["train", "--data", str(bad), "--lambda_pde", "1", "--out", str(tmp_path / "o1")]) == 2
    )
    err = capsys.readouterr().err
    assert "bad.npz" in err and "NaN" in err and "(0, 2, 1, 3)" in err
    assert (
        main(["train", "--data", str(bad), "--out", str(tmp_path / "o2")]) == 2
    )  # auto without val LR
    assert main(["simulate", "--hr", "30", "--out", str(tmp_path / "o3")]) == 2
    err = capsys.readouterr().err
    assert "hr 30 is not divisible by the scale 4" in err
    corrupt = tmp_path / "model.safetensors"
    corrupt.write_bytes(b"junk")
    (tmp_path / "model.safetensors.json").write_text('{"meta": {"model_name": "tiny"}}')
    assert (
        main(
            [
                "predict",
                "--checkpoint",
                str(corrupt),
                "--data",
                str(bad),
                "--out",
                str(tmp_path / "o4"),
            ]
        )
        == 2
    )
    assert "model.safetensors" in capsys.readouterr().err
    assert main(["validate", "--seeds", "0", "--out", str(tmp_path / "o5")]) == 2
    assert "seeds must be a positive integer" in capsys.readouterr().err


@pytest.mark.parametrize(
    "option, value, valid",
    [
        ("--velocity", "vortex", ("uniform", "cellular", "random_streamfunction")),
        ("--downsample", "lanczos", ("block_mean", "point_sample", "blur_decimate")),
    ],
)
def test_unknown_names_exit_2_listing_the_valid_ones(tmp_path, capsys, option, value, valid):
    assert main(["simulate", option, value, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert option.lstrip("-") in err and value in err
    assert all(name in err for name in valid), err


def test_reduced_validation_run(tmp_path):
    out = tmp_path / "validate"
    status = main(
        [
            "validate",
            "--out",
            str(out),
            "--hr",
            "32",
            "--n_train",
            "6",
            "--n_val",
            "2",
            "--n_test",
            "2",
            "--frames",
            "12",
            "--seeds",
            "1",
            "--steps",
            "12",
            "--rwae_steps",
            "12",
            "--samples",
            "4",
            "--preset",
            "tiny",
            "--ls_sequences",
            "1",
            "--ls_iterations",
            "60",
            "--oracle",
            "true",
            "--workers",
            "1",  # in this process: test_advdiffsr_workers.py runs validation on two workers
        ]
    )
    metrics = testing.check_metrics_json(
        out, [*REQUIRED, "oracle_rel_l2", "physics_over_oracle_max"]
    )
    assert metrics["oracle_lr_consistency"] <= 1e-3
    assert status == (2 if metrics["rwae_collapse"] else 0)
    assert (
        metrics["physics_lr_consistency"] <= 1e-3
        and metrics["rwae_sample_lr_consistency_max"] <= 1e-3
    )
    assert (
        metrics["physics_ls_rel_l2"] < 0.85 * metrics["bicubic_rel_l2"]
    )  # the loss's optimum beats bicubic
    assert (out / "fields.png").is_file() and (out / "rank_histogram.png").is_file()


@pytest.mark.slow
def test_demo(tmp_path):
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 0
    testing.check_metrics_json(tmp_path / "demo", REQUIRED)


def _checkpoint(folder: Path, name: str = "tiny", **options) -> str:
    """An untrained checkpoint as `train` writes it (name and D in the sidecar's meta)."""
    from paperzoo.advdiffsr.commands import _save_model
    from paperzoo.advdiffsr.model import create_model

    options = {"scale": 4, "downsample": "block_mean", **options}
    meta = {"model_name": name, "model_options": options}
    return str(_save_model(create_model(name, **options), folder, meta))


def _no_inference(monkeypatch) -> None:
    import paperzoo.advdiffsr.pipeline as pipeline
    import paperzoo.advdiffsr.uncertainty as uncertainty

    def fail(*args, **kwargs):
        raise AssertionError("inference ran before the inputs were checked")

    for module, name in (
        (pipeline, "super_resolve"),
        (pipeline, "forecast"),
        (uncertainty, "sample_ensemble"),
    ):
        monkeypatch.setattr(module, name, fail)


def test_bad_truth_or_future_stops_predict_and_uncertainty_before_inference(
    small_data_dir, tmp_path, monkeypatch, capsys
):
    _no_inference(monkeypatch)
    physics = _checkpoint(tmp_path / "physics")
    rwae = _checkpoint(tmp_path / "rwae", "rwae_tiny")
    test_lr = str(small_data_dir / "test_lr.npz")
    with np.load(small_data_dir / "test_hr.npz") as archive:
        hr = archive["hr"]
    np.savez(tmp_path / "one_hr.npz", hr=hr[:1])  # one sequence of two
    with np.load(small_data_dir / "test_lr.npz") as archive:
        fields = dict(archive)
    np.savez(tmp_path / "future_lr.npz", **{**fields, "lr": fields["lr"][:1, :3]})
    for verb, checkpoint in (("predict", physics), ("uncertainty", rwae)):
        base = [verb, "--checkpoint", checkpoint, "--data", test_lr]
        out = tmp_path / f"{verb}_truth"
        argv = [*base, "--truth", str(tmp_path / "one_hr.npz"), "--out", str(out)]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "one_hr.npz" in err and "(1, 12, 32, 32)" in err and "(2, 12, 32, 32)" in err
        assert not list(out.glob("*.npz"))
        future = ["--roll_forward", "2", "--future", str(tmp_path / "future_lr.npz")]
        assert main([*base, *future, "--out", str(tmp_path / f"{verb}_future")]) == 2
        err = capsys.readouterr().err
        assert "future_lr.npz" in err and "does not continue" in err


def test_a_checkpoint_with_another_observation_operator_is_refused(
    small_data_dir, tmp_path, monkeypatch, capsys
):
    """The checkpoint's D (meta model_options scale / downsample) must be the data file's."""
    _no_inference(monkeypatch)
    with np.load(small_data_dir / "test_lr.npz") as archive:
        fields = dict(archive)
    np.savez(tmp_path / "blur_lr.npz", **{**fields, "downsample": "blur_decimate"})
    block = _checkpoint(tmp_path / "block")
    half = _checkpoint(tmp_path / "half", scale=2)
    rwae_half = _checkpoint(tmp_path / "rwae_half", "rwae_tiny", scale=2)
    cases = (
        ("predict", block, tmp_path / "blur_lr.npz", "downsample"),
        ("predict", half, small_data_dir / "test_lr.npz", "scale"),
        ("uncertainty", rwae_half, small_data_dir / "test_lr.npz", "scale"),
    )
    for i, (verb, checkpoint, data, field) in enumerate(cases):
        argv = [verb, "--checkpoint", checkpoint, "--data", str(data)]
        assert main([*argv, "--out", str(tmp_path / f"o{i}")]) == 2
        err = capsys.readouterr().err
        assert Path(checkpoint).name in err and Path(data).name in err and field in err


def test_predict_refuses_an_rwae_and_uncertainty_a_plain_network(
    small_data_dir, tmp_path, monkeypatch, capsys
):
    """Spec: the RWAE's estimate is the mean of K members, not one seed-0 trajectory."""
    _no_inference(monkeypatch)
    data = ["--data", str(small_data_dir / "test_lr.npz")]
    rwae = _checkpoint(tmp_path / "rwae", "rwae_tiny")
    assert main(["predict", "--checkpoint", rwae, *data, "--out", str(tmp_path / "p")]) == 2
    assert "RWAE" in capsys.readouterr().err
    physics = _checkpoint(tmp_path / "physics")
    assert main(["uncertainty", "--checkpoint", physics, *data, "--out", str(tmp_path / "u")]) == 2
    assert "not an RWAE" in capsys.readouterr().err


def test_train_names_a_bad_lambda_pde_and_records_what_auto_became(
    small_data_dir, tmp_path, monkeypatch, capsys
):
    import paperzoo.advdiffsr.pipeline as pipeline

    base = ["train", "--data", str(small_data_dir), "--preset", "tiny", "--window", "8"]
    for value in ("x", "nan", "-1"):
        assert main([*base, "--lambda_pde", value, "--out", str(tmp_path / f"bad{value}")]) == 2
        assert "--lambda_pde" in capsys.readouterr().err
    rwae = tmp_path / "rwae"
    assert main([*base, "--model", "rwae", "--steps", "2", "--out", str(rwae)]) == 0
    metrics = testing.check_metrics_json(rwae, ["lambda_pde", "projection_hard", "holdout"])
    assert metrics["lambda_pde"] == 1.0 and metrics["projection_hard"] == 1
    assert metrics["holdout"] == 0.0

    def no_selection(*args, **kwargs):
        raise AssertionError("the weight choice ran")

    monkeypatch.setattr(pipeline, "select_lambda", no_selection)
    argv = [*base, "--holdout", "0.1", "--out", str(tmp_path / "auto_holdout")]
    assert main(argv) == 2  # auto would drop it silently
    assert "--holdout 0.1 with --lambda_pde auto" in capsys.readouterr().err


def test_the_physics_config_file_is_accepted(small_data_dir, tmp_path, monkeypatch):
    """configs/train_physics.yaml (lambda_pde auto) reaches the weight choice: no --holdout clash."""
    import yaml

    import paperzoo.advdiffsr.pipeline as pipeline

    config = Path(__file__).resolve().parents[1] / "configs" / "train_physics.yaml"
    assert yaml.safe_load(config.read_text())["holdout"] == 0.0

    class Reached(Exception):
        pass

    def reached(*args, **kwargs):
        raise Reached

    monkeypatch.setattr(pipeline, "select_lambda", reached)
    argv = ["train", "--config", str(config), "--data", str(small_data_dir)]
    with pytest.raises(Reached):
        main([*argv, "--out", str(tmp_path / "physics")])
