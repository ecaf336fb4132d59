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


def test_demo_end_to_end(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--steps", "3", "--device", "cpu"]) == 0
    metrics = testing.check_metrics_json(out, ["asr_before", "asr_after", "mscr", "flagged"])
    assert 0 <= metrics["mscr"] <= 1
    assert (out / "grid.png").stat().st_size > 0 and (
        out / "model" / "unet" / "pruning.json"
    ).is_file()


def test_verbs_chained(tmp_path):
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
    assert _exit_code([*args, "--out", str(tmp_path / "rm2"), "--trigger", true_trigger]) == 2
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
        ("--prune_batch", "1", "prune_batch"),
    ):
        assert _exit_code([*base, "--out", str(tmp_path / f"c{word}"), option, value]) == 2
        assert word in capsys.readouterr().err
    assert (
        _exit_code(
            [
                "backdoor",
                "--out",
                str(tmp_path / "d"),
                "--model",
                str(tmp_path / "m"),
                "--poison_rate",
                "1.5",
            ]
        )
        == 2
    )
    assert "poison_rate" in capsys.readouterr().err
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
    images = torch.rand(64, 1, 8, 8) * 2 - 1  # your clean images in [-1, 1]
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
    assert load_unet(tmp_path / "cleaned")[0] is not None and images.shape[0] == 64


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
