"""The CLI end to end, in process: help, config round trip, demo, every verb chained on a micro
model, bad inputs with clear errors, the README's Python example, and (slow) the reduced validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from paperzoo.core import testing
from paperzoo.diffcleanse.cli import main

VERBS = ["train", "backdoor", "detect", "remove", "evaluate", "demo", "validate"]
VALIDATE_NAMES = [
    "asr_trigger",
    "asr_no_trigger",
    "asr_trigger_1e3",
    "asr_removed",
    "asr_removed_r02",
    "asr_removed_r05",
    "asr_removed_r10",
    "asr_random",
    "asr_magnitude",
    "asr_clean_taylor",
    "asr_finetune_only",
    "asr_oracle",
    "asr_sum_combine",
    "fd_clean_control",
    "fd_backdoored",
    "fd_removed",
    "fd_ratio_removed",
    "asr_baseline_min",
    "detect_accuracy",
    "detect_tpr",
    "detect_tnr",
    "mscr_backdoored_min",
    "mscr_clean_max",
    "pass_attack",
    "pass_detect",
    "pass_removal",
]


def test_help_and_print_config(tmp_path):
    testing.check_cli_help(main, VERBS)
    config = testing.check_print_config(
        main, "remove", ["--model", "m", "--trigger", "t", "--ratio", "0.05"], tmp_path
    )
    assert config["ratio"] == 0.05 and config["devices"] == 1 and config["strategy"] == "auto"


def test_demo_end_to_end(tmp_path, placed):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--steps", "3", "--device", "cpu"]) == 0
    placed.check("cpu")  # evaluation, BBTI, samples and importance on --device
    metrics = testing.check_metrics_json(out, ["asr_before", "asr_after", "mscr", "flagged"])
    assert 0 <= metrics["mscr"] <= 1
    assert (out / "grid.png").stat().st_size > 0 and (
        out / "model" / "unet" / "pruning.json"
    ).is_file()


def test_verbs_chained(tmp_path, capsys):
    assert (
        main(["train", "--out", str(tmp_path / "clean"), "--steps", "3", "--batch_size", "8"]) == 0
    )
    model = str(tmp_path / "clean" / "model")
    assert (
        main(
            [
                "backdoor",
                "--out",
                str(tmp_path / "bd"),
                "--model",
                model,
                "--steps",
                "3",
                "--batch_size",
                "8",
                "--trigger",
                "stop",
                "--target",
                "hat",
                "--poison_rate",
                "0.5",
            ]
        )
        == 0
    )
    attack = json.loads((tmp_path / "bd" / "attack.json").read_text())
    assert attack["trigger"] == "stop" and (tmp_path / "bd" / "trigger_true.safetensors").is_file()
    suspect = str(tmp_path / "bd" / "model")
    assert (
        main(
            [
                "detect",
                "--out",
                str(tmp_path / "det"),
                "--model",
                suspect,
                "--iters",
                "2",
                "--batch",
                "4",
                "--sampler_steps",
                "2",
                "--n_eval",
                "4",
            ]
        )
        == 0
    )
    record = json.loads((tmp_path / "det" / "detection.json").read_text())
    assert {"mscr", "flagged", "threshold", "history", "calls", "seconds", "sim_thresh"} <= set(
        record
    )
    args = [
        "remove",
        "--model",
        suspect,
        "--ratio",
        "0.2",
        "--ft_steps",
        "2",
        "--n_ft",
        "8",
        "--batch_size",
        "4",
        "--prune_batch",
        "4",
        "--t_start",
        "995",
    ]
    assert (
        main(
            [
                *args,
                "--out",
                str(tmp_path / "rm"),
                "--trigger",
                str(tmp_path / "det" / "trigger_inverted.safetensors"),
            ]
        )
        == 0
    )
    metrics = testing.check_metrics_json(tmp_path / "rm", ["channels_removed", "params_after"])
    assert metrics["channels_removed"] > 0 and metrics["params_after"] < metrics["params_before"]
    true_trigger = str(tmp_path / "bd" / "trigger_true.safetensors")
    capsys.readouterr()
    assert _exit_code([*args, "--out", str(tmp_path / "rm2"), "--trigger", true_trigger]) == 2
    err = capsys.readouterr().err
    assert "trigger_true.safetensors holds the true trigger" in err
    assert "removal uses the inverted one (pass --oracle_trigger true" in err
    assert not (tmp_path / "rm2" / "model").exists()
    assert (
        main(
            [
                *args,
                "--out",
                str(tmp_path / "rm3"),
                "--trigger",
                true_trigger,
                "--oracle_trigger",
                "true",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "evaluate",
                "--out",
                str(tmp_path / "ev"),
                "--model",
                str(tmp_path / "rm" / "model"),
                "--trigger",
                "stop",
                "--target",
                "hat",
                "--n_trigger",
                "4",
                "--n_clean",
                "0",
                "--steps",
                "2",
            ]
        )
        == 0
    )
    testing.check_metrics_json(tmp_path / "ev", ["asr", "asr_no_trigger", "ssim_to_target"])


def _exit_code(argv) -> int:
    try:
        return main(argv)
    except SystemExit as stop:
        return int(stop.code)


def test_bad_inputs_exit_2_naming_the_offender(tmp_path, micro, capsys):
    from paperzoo.diffcleanse.model import save_unet

    not_unet = tmp_path / "not_unet"
    not_unet.mkdir()
    (not_unet / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKL"}))
    assert _exit_code(["detect", "--out", str(tmp_path / "a"), "--model", str(not_unet)]) == 2
    assert "_class_name" in capsys.readouterr().err
    save_unet(micro, tmp_path / "m")
    bad_trigger = tmp_path / "bad.safetensors"
    from safetensors.torch import save_file

    save_file({"trigger": torch.zeros(1, 4, 4)}, str(bad_trigger), metadata={"kind": "inverted"})
    base = [
        "remove",
        "--model",
        str(tmp_path / "m"),
        "--trigger",
        str(bad_trigger),
        "--ft_steps",
        "1",
        "--n_ft",
        "4",
        "--prune_batch",
        "4",
        "--batch_size",
        "4",
    ]
    assert _exit_code([*base, "--out", str(tmp_path / "b")]) == 2
    assert "shape (1, 4, 4)" in capsys.readouterr().err
    for option, value, word in (
        ("--ratio", "1.0", "ratio"),
        ("--ratio", "0", "ratio"),
        ("--t_start", "1000", "t_start"),
        ("--t_start", "-1", "t_start must be in [0, 1000)"),
        ("--prune_batch", "1", "prune_batch"),
    ):
        assert _exit_code([*base, "--out", str(tmp_path / f"c{option}{value}"), option, value]) == 2
        assert word in capsys.readouterr().err
    for rate in ("1.5", "-0.1"):
        assert (
            _exit_code(
                [
                    "backdoor",
                    "--out",
                    str(tmp_path / f"d{rate}"),
                    "--model",
                    str(tmp_path / "m"),
                    "--poison_rate",
                    rate,
                ]
            )
            == 2
        )
        assert f"--poison_rate must be in [0, 1], got {float(rate)}" in capsys.readouterr().err
    assert (
        _exit_code(
            [
                "detect",
                "--out",
                str(tmp_path / "e"),
                "--model",
                str(tmp_path / "m"),
                "--sampler_steps",
                "0",
            ]
        )
        == 2
    )
    assert "sampler_steps" in capsys.readouterr().err
    assert (
        _exit_code(
            ["detect", "--out", str(tmp_path / "f"), "--model", str(tmp_path / "m"), "--batch", "1"]
        )
        == 2
    )
    assert "batch" in capsys.readouterr().err
    assert (
        _exit_code(
            ["train", "--out", str(tmp_path / "g"), "--data", f"folder:{tmp_path / 'missing'}"]
        )
        == 2
    )
    assert "missing" in capsys.readouterr().err


def test_readme_python_example(tmp_path):
    """The README's library example, on a model and images of the user's own."""
    import torch

    from paperzoo.diffcleanse import (
        BBTIConfig,
        DiffCleansePruner,
        create_model,
        detect_backdoor,
        load_unet,
        remove_backdoor,
        sample,
        save_unet,
    )

    unet = create_model("micro")  # or: unet, _ = load_unet("my_ddpm/")
    found = detect_backdoor(unet, BBTIConfig(batch=4, iters=2, sampler_steps=2), n_eval=4)
    print(found.mscr, found.flagged)
    suspect_samples = sample(unet, 16, steps=2).clamp(-1, 1)  # the suspect's own samples as data
    cleaned = remove_backdoor(
        unet,
        suspect_samples[:8],
        suspect_samples,
        DiffCleansePruner(ratio=0.1, t_start=995, batch=8),
        found.trigger,
        ft_steps=2,
        batch_size=8,
    )
    save_unet(cleaned.unet, tmp_path / "cleaned")  # diffusers folder + pruning.json
    # the folder holds the cleaned (pruned, fine-tuned) model: fewer weights than the suspect's,
    # and the same outputs as the model in memory on a fixed input
    reloaded, _ = load_unet(tmp_path / "cleaned")
    assert cleaned.report.channels_removed > 0
    assert sum(p.numel() for p in reloaded.parameters()) == cleaned.report.params_after
    assert cleaned.report.params_after < sum(p.numel() for p in unet.parameters())
    x = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([0, 500, 999])
    with torch.no_grad():
        saved, loaded, suspect = (m.eval()(x, t).sample for m in (cleaned.unet, reloaded, unet))
    assert torch.allclose(loaded, saved, atol=1e-6) and not torch.allclose(loaded, suspect)


def test_own_rgb_model_detect_names_the_calibration_options(tmp_path, capsys):
    """The README's own-model detect: the config's digits calibration cannot fit an RGB model and
    the error says what to pass; npz (uint8 or [0, 1]) and --calibration none then run, and an npz
    in [-1, 1] is refused naming the file and the range."""
    import numpy as np

    from paperzoo.diffcleanse.model import create_model, save_unet

    torch.manual_seed(0)
    save_unet(create_model("micro", in_channels=3), tmp_path / "my_ddpm")
    base = [
        "detect",
        "--model",
        str(tmp_path / "my_ddpm"),
        "--config",
        str(CONFIGS / "detect.yaml"),
    ]
    small = ["--iters", "1", "--batch", "2", "--sampler_steps", "1", "--n_eval", "2"]
    assert _exit_code([*base, *small, "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "--calibration_data digits (the default) is 1-channel, the model needs 3 channels" in err
    assert "pass --calibration_data npz:FILE, folder:DIR" in err and "--calibration none" in err
    unit = np.random.default_rng(0).random((6, 3, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "pm1.npz", images=unit * 2 - 1)
    np.savez(tmp_path / "u8.npz", images=(unit * 255).astype(np.uint8))
    calib = "--calibration_data"
    assert (
        _exit_code(
            [*base, *small, calib, f"npz:{tmp_path / 'pm1.npz'}", "--out", str(tmp_path / "b")]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert f"{tmp_path / 'pm1.npz'}: float32 images: values in [-" in err
    assert "expected [0, 1] (or uint8 in [0, 255], uint16 in [0, 65535])" in err
    for extra, out in (
        ([calib, f"npz:{tmp_path / 'u8.npz'}"], "c"),
        (["--calibration", "none"], "d"),
    ):
        assert main([*base, *small, *extra, "--out", str(tmp_path / out)]) == 0
        detection = json.loads((tmp_path / out / "detection.json").read_text())
        assert detection["calibration"] == ("none" if out == "d" else "auto")


CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize(
    "name",
    [
        "validate_fields.yaml",
        "validate_spec_eval_fields.yaml",
        "validate_tiny_fields.yaml",
        "validate_long_attack_fields.yaml",
    ],
)
def test_validation_settings_files_are_valid_configs(name):
    from paperzoo.diffcleanse.validation import ValidationConfig

    fields = yaml.safe_load((CONFIGS / name).read_text())
    assert set(fields) <= set(ValidationConfig.__dataclass_fields__)
    config = ValidationConfig(**fields)
    assert len(config.attacks) == 3 and config.clean_controls == 3 and config.ratio in config.ratios


def test_long_attack_settings_differ_from_the_defaults_only_in_attack_steps():
    """configs/validate_long_attack_fields.yaml: the default validation with 10x longer attacks."""
    default = yaml.safe_load((CONFIGS / "validate_fields.yaml").read_text())
    long = yaml.safe_load((CONFIGS / "validate_long_attack_fields.yaml").read_text())
    assert {k for k in default if default[k] != long[k]} == {"attack_steps"}
    assert long["attack_steps"] == 10 * default["attack_steps"]


def test_tiny_settings_are_the_spec_sizes():
    """configs/validate_tiny*.yaml: spec 4's tiny 16x16 run (DDIM 50, 256 / 1,024 samples, BBTI 100)."""
    from paperzoo.diffcleanse.model import create_model
    from paperzoo.diffcleanse.validation import ValidationConfig

    cli = yaml.safe_load((CONFIGS / "validate_tiny.yaml").read_text())
    assert cli["settings"].endswith("configs/validate_tiny_fields.yaml") and not cli["reduced"]
    config = ValidationConfig(**yaml.safe_load((CONFIGS / "validate_tiny_fields.yaml").read_text()))
    unet = create_model(config.preset)
    assert unet.config.sample_size == 16 and tuple(unet.config.block_out_channels) == (32, 64, 64)
    sizes = (config.base_steps, config.eval_steps, config.n_trigger, config.n_clean)
    assert sizes == (2000, 50, 256, 1024) and config.bbti_iters == 100
    assert config.attacks == (("box", "cat", 0.2), ("stop", "hat", 0.1), ("glasses", "cat", 0.3))


MINUTE_VALIDATION = """\
preset: micro
base_steps: 10
attack_steps: 10
batch_size: 16
attacks: [[box, cat, 0.3]]
clean_controls: 1
clean_steps: 2
eval_steps: 2
n_trigger: 8
n_clean: 16
bbti_iters: 1
bbti_batch: 4
bbti_steps: 2
n_eval: 4
prune_batch: 8
ft_steps: 2
ft_batch: 8
n_ft: 16
classifier_steps: 5
elijah_iters: 1
"""


def test_validate_end_to_end_writes_every_name(tmp_path):
    """The whole validation at toy sizes through the CLI (every arm, report-only ones included):
    ``metrics.json`` holds every name of the issue, the report-only main arm before its
    fine-tune, and flags that agree with the numbers; the figures and the zoo cache exist."""
    settings = tmp_path / "minute.yaml"
    settings.write_text(MINUTE_VALIDATION)
    out = tmp_path / "val"
    assert main(["validate", "--out", str(out), "--settings", str(settings)]) == 0
    names = [*VALIDATE_NAMES, "asr_pruned_no_ft", "fd_pruned_no_ft"]
    metrics = testing.check_metrics_json(out, names)
    assert metrics["asr_removed"] == metrics["asr_removed_r10"]
    assert metrics["fd_ratio_removed"] == pytest.approx(
        metrics["fd_removed"] / metrics["fd_backdoored"]
    )
    assert metrics["asr_baseline_min"] == min(
        metrics[f"asr_{b}"] for b in ("random", "magnitude", "clean_taylor", "finetune_only")
    )
    assert metrics["pass_removal"] == int(
        metrics["asr_removed"] <= 0.05
        and metrics["fd_removed"] <= 1.10 * metrics["fd_backdoored"]
        and metrics["asr_baseline_min"] >= metrics["asr_removed"] + 0.3
    )
    assert 0 <= metrics["asr_pruned_no_ft"] <= 1 and metrics["fd_pruned_no_ft"] > 0
    results = (out / "results.md").read_text()
    assert "before the fine-tune (report only)" in results
    for figure in ("grids.png", "inversion.png", "removal_curve.png"):
        assert (out / figure).stat().st_size > 0
    assert (out / "zoo" / "backdoor_0" / "recipe.json").is_file()


def test_validate_settings_with_an_unknown_field_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("preset: tiny\nbbti_iter: 5\n")
    assert main(["validate", "--out", str(tmp_path / "val"), "--settings", str(bad)]) == 2
    error = capsys.readouterr().err
    assert "bbti_iter" in error and "bad.yaml" in error and "bbti_iters" in error
    assert not (tmp_path / "val" / "metrics.json").exists()


@pytest.mark.slow
@pytest.mark.xfail(
    reason="measured miss (README, reduced test): ASR 0.53 after the reduced 300-step attack, "
    "BBTI MSCR 0.31 on the backdoored model",
    strict=False,
)
def test_reduced_validation(tmp_path):
    """Spec 4's reduced test: backdoored flagged, control not, ASR >= 0.8 before and >= 0.5 lower after."""
    out = tmp_path / "val"
    assert main(["validate", "--out", str(out), "--reduced", "true"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["mscr_backdoored_min"] > 0.5 and metrics["mscr_clean_max"] <= 0.5
    assert metrics["asr_trigger"] >= 0.8 and metrics["asr_removed"] <= metrics["asr_trigger"] - 0.5


def test_backdoor_config_file_is_the_validated_recipe(tmp_path):
    """configs/backdoor.yaml carries the validation's attack (1,200 steps, 2e-3, cosine) and the
    CLI passes ``cosine`` through to the training and into attack.json."""
    assert (
        main(["train", "--out", str(tmp_path / "clean"), "--steps", "2", "--batch_size", "8"]) == 0
    )
    args = ["backdoor", "--config", str(CONFIGS / "backdoor.yaml")]
    args += ["--model", str(tmp_path / "clean" / "model"), "--out", str(tmp_path / "bd")]
    assert main([*args, "--steps", "2", "--batch_size", "8"]) == 0
    attack = json.loads((tmp_path / "bd" / "attack.json").read_text())
    assert attack["cosine"] is True and attack["lr"] == pytest.approx(2e-3)
    assert attack["steps"] == 2 and attack["poison_rate"] == pytest.approx(0.2)


def test_other_size_images_are_refused_without_resize(tmp_path, micro, capsys):
    """Spec 6 through the CLI: 20x20 images for an 8x8 model stop train, backdoor, detect's
    calibration and remove's fine-tune data unless --resize true."""
    from paperzoo.diffcleanse.model import save_unet

    from .conftest import write_folder

    folder = f"folder:{write_folder(tmp_path / 'imgs', n=4)}"
    save_unet(micro, tmp_path / "m")
    model = ["--model", str(tmp_path / "m")]
    trigger = tmp_path / "t.safetensors"
    from safetensors.torch import save_file

    save_file({"trigger": torch.zeros(1, 8, 8)}, str(trigger), metadata={"kind": "inverted"})
    runs = {
        "train": ["train", "--data", folder, "--steps", "1", "--batch_size", "2"],
        "backdoor": ["backdoor", *model, "--data", folder, "--steps", "1", "--batch_size", "2"],
        "detect": ["detect", *model, "--calibration_data", folder, "--iters", "1", "--batch", "2"],
        "remove": ["remove", *model, "--trigger", str(trigger), "--ft_data", folder],
    }
    for name, argv in runs.items():
        assert _exit_code([*argv, "--out", str(tmp_path / name)]) == 2, name
        error = capsys.readouterr().err
        assert "--resize" in error and "(20, 20)" in error and "imgs" in error, name
        assert not (tmp_path / name / "metrics.json").exists()
    argv = [*runs["train"], "--resize", "true", "--out", str(tmp_path / "resized")]
    assert main(argv) == 0
    assert json.loads((tmp_path / "resized" / "metrics.json").read_text())["train_images"] == 4


def test_a_non_default_scheduler_folder_is_refused_by_the_verbs(tmp_path, micro, capsys):
    from paperzoo.diffcleanse.model import save_unet

    save_unet(micro, tmp_path / "m")
    sched_file = tmp_path / "m" / "scheduler" / "scheduler_config.json"
    config = json.loads(sched_file.read_text())
    sched_file.write_text(json.dumps({**config, "beta_schedule": "scaled_linear"}))
    argv = ["detect", "--out", str(tmp_path / "det"), "--model", str(tmp_path / "m")]
    assert _exit_code(argv) == 2
    error = capsys.readouterr().err
    assert "scheduler_config.json" in error and "beta_schedule" in error


def test_a_target_file_is_not_a_trigger(tmp_path, micro, capsys):
    """backdoor's target.safetensors (kind "target") is refused as a trigger, oracle or not."""
    from paperzoo.diffcleanse.commands import _save_tensor, read_trigger
    from paperzoo.diffcleanse.model import save_unet

    save_unet(micro, tmp_path / "m")
    target = tmp_path / "target.safetensors"
    _save_tensor(target, torch.zeros(1, 8, 8), "target")
    for oracle in (False, True):
        with pytest.raises(ValueError, match="target.safetensors.*kind 'target'"):
            read_trigger(target, oracle=oracle)
    argv = ["remove", "--out", str(tmp_path / "rm"), "--model", str(tmp_path / "m")]
    assert _exit_code([*argv, "--trigger", str(target)]) == 2
    assert "kind 'target'" in capsys.readouterr().err
    argv = ["evaluate", "--out", str(tmp_path / "ev"), "--model", str(tmp_path / "m")]
    assert _exit_code([*argv, "--trigger", str(target), "--steps", "2"]) == 2
    assert "kind 'target'" in capsys.readouterr().err
    _save_tensor(tmp_path / "inv.safetensors", torch.ones(1, 8, 8), "inverted")
    assert torch.equal(read_trigger(tmp_path / "inv.safetensors"), torch.ones(1, 8, 8))


def _fail_if_called(*args, **kwargs):
    raise AssertionError("expensive work ran before the trigger was checked")


def test_a_wrong_shape_trigger_stops_remove_and_evaluate_before_work(
    tmp_path, micro, capsys, monkeypatch
):
    from safetensors.torch import save_file

    import paperzoo.diffcleanse.data as data
    import paperzoo.diffcleanse.metrics as metrics
    import paperzoo.diffcleanse.pipeline as pipeline
    from paperzoo.diffcleanse.model import save_unet

    save_unet(micro, tmp_path / "m")
    bad = tmp_path / "bad.safetensors"
    save_file({"trigger": torch.zeros(1, 4, 4)}, str(bad), metadata={"kind": "inverted"})
    monkeypatch.setattr(data, "SyntheticData", _fail_if_called)
    monkeypatch.setattr(pipeline, "remove_backdoor", _fail_if_called)
    monkeypatch.setattr(metrics, "train_digits_classifier", _fail_if_called)
    model = ["--model", str(tmp_path / "m"), "--trigger", str(bad)]
    assert _exit_code(["remove", "--out", str(tmp_path / "rm"), *model]) == 2
    error = capsys.readouterr().err
    assert "bad.safetensors" in error and "shape (1, 4, 4)" in error
    assert _exit_code(["evaluate", "--out", str(tmp_path / "ev"), *model, "--n_clean", "8"]) == 2
    error = capsys.readouterr().err
    assert "bad.safetensors" in error and "shape (1, 4, 4)" in error


@pytest.mark.parametrize("accuracy, valid", [(0.969, 0), (0.97, 1)])
def test_evaluate_records_the_classifier_accuracy_and_flags_the_fd(
    tmp_path, micro, monkeypatch, accuracy, valid
):
    """Spec 2: the FD's classifier must reach 97 %; evaluate records its accuracy and fd_valid."""
    import paperzoo.diffcleanse.metrics as metrics
    from paperzoo.diffcleanse.model import save_unet

    real = metrics.train_digits_classifier
    monkeypatch.setattr(
        metrics,
        "train_digits_classifier",
        lambda size, steps, seed: (real(size, 2, seed)[0], accuracy),
    )
    save_unet(micro, tmp_path / "m")
    argv = ["evaluate", "--out", str(tmp_path / "ev"), "--model", str(tmp_path / "m")]
    assert main([*argv, "--n_trigger", "4", "--n_clean", "8", "--steps", "2"]) == 0
    record = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert record["classifier_accuracy"] == pytest.approx(accuracy)
    assert record["fd_valid"] == valid and "fd" in record


def test_validation_refuses_a_solver_it_cannot_judge():
    """Spec 4 (attacks ode) and 7 (sde backdoors judged with DDIM): ASR and detection sample with
    DDIM, so solver 'sde' is refused rather than silently judged with the wrong sampler."""
    from paperzoo.diffcleanse.validation import ValidationConfig

    assert ValidationConfig(solver="ode").solver == "ode"
    with pytest.raises(ValueError, match="solver must be 'ode'.*'sde'"):
        ValidationConfig(solver="sde")


def test_detection_passes_only_over_three_backdoored_and_three_clean_models():
    from paperzoo.diffcleanse.validation import detection_passes

    assert detection_passes([0.9, 0.8, 0.6], [0.0, 0.5, 0.1])
    assert not detection_passes([0.9], [0.0])  # right, but over 1 + 1 models
    assert not detection_passes([0.9, 0.8, 0.6], [0.0, 0.1])
    assert not detection_passes([0.9, 0.8, 0.5], [0.0, 0.0, 0.0])  # one backdoor at the threshold
    assert not detection_passes([0.9, 0.8, 0.6], [0.0, 0.0, 0.51])


def test_validate_writes_its_metrics_before_the_figures(tmp_path, monkeypatch):
    import paperzoo.diffcleanse.plots as plots
    import paperzoo.diffcleanse.validation as validation

    fake = validation.ValidationResult({"asr_trigger": 0.5, "pass_detect": 0}, [{"model": "m"}])

    def broken_figure(*args, **kwargs):
        raise RuntimeError("figure failed")

    monkeypatch.setattr(validation, "run_validation", lambda *args, **kwargs: fake)
    monkeypatch.setattr(plots, "save_sample_grids", broken_figure)
    with pytest.raises(RuntimeError, match="figure failed"):
        main(["validate", "--out", str(tmp_path / "val"), "--reduced", "true"])
    assert json.loads((tmp_path / "val" / "metrics.json").read_text())["asr_trigger"] == 0.5


@pytest.mark.parametrize("script", ["bench_detect.py", "bench_prune.py"])
def test_benchmarks_refuse_an_existing_out_unless_overwrite(tmp_path, monkeypatch, script):
    """The default --out is a committed result file: it is never replaced without --overwrite,
    and the refusal comes before any work."""
    import importlib.util
    import sys

    import paperzoo.diffcleanse.model as model

    path = Path(__file__).resolve().parents[1] / "benchmarks" / script
    spec = importlib.util.spec_from_file_location(f"_bench_{path.stem}", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "results.json"
    out.write_text("committed")
    monkeypatch.setattr(model, "create_model", _fail_if_called)
    monkeypatch.setattr(model, "load_unet", _fail_if_called)
    monkeypatch.setattr(sys, "argv", [script, "--out", str(out)])
    with pytest.raises(SystemExit, match="--overwrite"):
        bench.main()
    assert out.read_text() == "committed"
    monkeypatch.setattr(sys, "argv", [script, "--out", str(out), "--overwrite"])
    with pytest.raises(AssertionError, match="expensive work"):  # it goes on to the work
        bench.main()


def test_demo_grid_noise_is_seeded_by_the_run_seed(tmp_path, monkeypatch):
    """The demo's inverted-trigger grid starts from noise seeded by --seed, not the global RNG:
    two runs that differ only in the global RNG's state after the evaluation draw the same grid."""
    import paperzoo.diffcleanse.pipeline as pipeline
    import paperzoo.diffcleanse.plots as plots

    grids, moves = [], iter(range(1, 100))
    evaluate = pipeline.evaluate_model

    def evaluate_then_move_the_global_rng(*args, **kwargs):
        result = evaluate(*args, **kwargs)
        torch.manual_seed(next(moves))
        return result

    monkeypatch.setattr(pipeline, "evaluate_model", evaluate_then_move_the_global_rng)
    monkeypatch.setattr(plots, "save_sample_grids", lambda path, g, **kw: grids.append(g))
    for run in ("a", "b"):
        torch.manual_seed(0)  # the same model init in both runs
        assert main(["demo", "--out", str(tmp_path / run), "--steps", "2"]) == 0
    assert torch.equal(grids[0]["triggered"], grids[1]["triggered"])
    assert torch.equal(grids[0]["inverted trigger"], grids[1]["inverted trigger"])
