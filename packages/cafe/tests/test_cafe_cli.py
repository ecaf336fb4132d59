"""The CLI end to end (in-process), --print_config, bad input, one console-script run."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from paperzoo.cafe.cli import main
from paperzoo.core import testing

VERBS = ["attack", "dlg", "defend", "sweep", "demo", "validate"]
VALIDATE_NAMES = ["e1_psnr_db", "e1_share_above_20db", "e1_label_acc", "e2_dlg_psnr_db", "e2_gap_db",
                  "e4_fake_psnr_db", "e4_psnr_drop_db", "e4_clean_acc", "e4_fake_acc",
                  "e5_psnr_db_lr_0", "e5_psnr_db_lr_0.001", "e5_psnr_db_lr_0.005", "e5_psnr_db_lr_0.05"]


def test_help_lists_every_verb():
    testing.check_cli_help(main, VERBS)


def test_print_config_round_trip(tmp_path):
    config = testing.check_print_config(main, "attack", ["--iters", "7", "--scenario.defense.name", "fake"],
                                        tmp_path)
    assert config["iters"] == 7 and config["scenario"]["defense"]["name"] == "fake"


def test_demo_writes_metrics_and_grid(tmp_path):
    assert main(["demo", "--out", str(tmp_path), "--iters", "40"]) == 0
    metrics = testing.check_metrics_json(tmp_path, ["cafe_psnr_db", "dlg_psnr_db", "gap_db"])
    assert metrics["cafe_psnr_db"] > 0
    assert (tmp_path / "recon.png").stat().st_size > 0 and (tmp_path / "config.yaml").is_file()


def test_attack_and_dlg_verbs(tmp_path, capsys):
    out = tmp_path / "attack"
    args = ["attack", "--out", str(out), "--scenario.n_samples", "20", "--scenario.batch_size", "10",
            "--iters", "30", "--cafe.solver", "lstsq", "--scenario.defense.name", "prune"]
    assert main(args) == 0
    metrics = testing.check_metrics_json(out, ["psnr_db", "share_above_20db", "label_acc", "ssim", "rel_l2",
                                               "closed_form_solved", "rounds_per_sample_min"])
    assert metrics["closed_form_solved"] == 0 and metrics["rounds_per_sample_min"] == 15  # 30 rounds, N = 20
    assert metrics["fl_lr"] == 0.0 and "fl_lr 0)" in (out / "results.md").read_text()
    err = capsys.readouterr().err
    assert "closed form was never solved" in err and "data range used: [0, 1]" in err
    assert "## Warnings" in (out / "results.md").read_text()
    assert main(args) == 2  # existing results are never overwritten silently
    out = tmp_path / "dlg"
    assert main(["dlg", "--out", str(out), "--scenario.n_samples", "20", "--scenario.batch_size", "10",
                 "--iters", "5", "--restarts", "1"]) == 0
    assert (out / "recon.png").is_file()


@pytest.mark.parametrize("args, message", [
    (["--scenario.parties", "3"], "do not tile"),
    (["--scenario.batch_size", "90"], "batch size 90"),
    (["--cafe.solver", "lstsq", "--scenario.batch_size", "70", "--scenario.n_samples", "80"],
     "exceeds the first FC width"),
    (["--scenario.dataset", "mnist"], "pass --scenario.root DIR"),
    (["--iters", "-5"], "iters must be a positive integer, got -5"),
    (["--iters", "0"], "iters must be a positive integer, got 0"),
    (["--scenario.n_samples", "0"], "n_samples must be a positive integer"),
    (["--scenario.parties", "-1"], "parties must be a positive integer"),
    (["--cafe.nested_passes", "0"], "nested_passes must be a positive integer"),
])
def test_bad_input_is_one_clear_line(tmp_path, capsys, args, message):
    assert main(["attack", "--out", str(tmp_path / "x"), "--iters", "2", *args]) == 2
    assert message in capsys.readouterr().err


def test_corrupt_checkpoint_is_named(tmp_path, capsys):
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"not a safetensors file")
    assert main(["attack", "--out", str(tmp_path / "x"), "--iters", "2", "--scenario.weights", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "corrupt" in err and "model.safetensors" in err


def test_unknown_defence_is_rejected(tmp_path, capsys):
    assert main(["attack", "--out", str(tmp_path / "x"), "--scenario.defense.name", "shuffle"]) == 2
    err = capsys.readouterr().err.strip()
    assert "shuffle" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x").exists()
    from paperzoo.cafe.defenses import make_defense

    with pytest.raises(ValueError, match="unknown defence"):
        make_defense("shuffle")


def test_defend_and_sweep(tmp_path):
    out = tmp_path / "defend"
    assert main(["defend", "--out", str(out), "--scenario.defense.name", "noise", "--epochs", "1",
                 "--attack_iters", "10", "--scenario.n_samples", "20", "--scenario.batch_size", "10"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"clean_acc", "defended_acc", "acc_cost", "attack_psnr_db"} <= set(metrics)
    weights = out / "vfl_model.safetensors"
    assert main(["attack", "--out", str(tmp_path / "trained"), "--scenario.weights", str(weights),
                 "--iters", "5", "--scenario.n_samples", "20", "--scenario.batch_size", "10"]) == 0
    out = tmp_path / "sweep"
    assert main(["sweep", "--out", str(out), "--what", "batch", "--values", "[10, 20]", "--iters", "10",
                 "--n_samples", "20", "--workers", "1"]) == 0
    assert main(["sweep", "--out", str(tmp_path / "bad"), "--iters", "0"]) == 2
    assert (out / "sweep_batch.png").is_file()


def test_attack_reports_its_fl_lr(tmp_path):
    out = tmp_path / "lr"
    assert main(["attack", "--out", str(out), "--scenario.n_samples", "20", "--scenario.batch_size", "10",
                 "--iters", "2", "--scenario.fl_lr", "0.005"]) == 0
    assert json.loads((out / "metrics.json").read_text())["fl_lr"] == 0.005
    assert "fl_lr 0.005)" in (out / "results.md").read_text()


def test_defend_flags_the_clip_and_noise_epsilon_as_nominal(tmp_path):
    pytest.importorskip("opacus")
    out = tmp_path / "dp"
    assert main(["defend", "--out", str(out), "--scenario.defense.name", "dp", "--epochs", "1",
                 "--attack_iters", "0"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dp_epsilon"] > 0 and metrics["dp_epsilon_per_sample_valid"] == 0
    assert "dp_epsilon is nominal" in (out / "results.md").read_text()


def test_validate_writes_every_issue_metric_and_resumes_from_its_cache(tmp_path):
    args = ["validate", "--iters", "10", "--dlg_iters", "2", "--dlg_restarts", "1", "--utility_epochs", "1",
            "--workers", "1", "--cache", str(tmp_path / "cache")]
    assert main([*args, "--out", str(tmp_path / "run")]) == 0
    first = testing.check_metrics_json(tmp_path / "run", VALIDATE_NAMES)
    assert first["e3_lstsq_closed_form_solved"] == 0  # 10 rounds cannot solve for N = 80
    assert "closed form was never solved" in (tmp_path / "run" / "results.md").read_text()
    assert main([*args, "--out", str(tmp_path / "again")]) == 0  # every job from the cache
    again = testing.check_metrics_json(tmp_path / "again", VALIDATE_NAMES)
    assert again["e1_iters_per_s"] == first["e1_iters_per_s"]  # the stored run, not a new one
    tmp_path = tmp_path / "run"
    for figure in ("recon.png", "tradeoff.png", "lr_sweep.png", "trace.png"):
        assert (tmp_path / figure).is_file(), figure
    assert "E4" in (tmp_path / "results.md").read_text()


def test_console_script_runs():
    script = shutil.which("paperzoo-cafe")
    if script is None:
        pytest.skip("console script not installed in this environment")
    result = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "validate" in result.stdout


@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_takes_device_and_refuses_a_missing_gpu(tmp_path, capsys, verb):
    import inspect

    import torch

    from paperzoo.cafe import commands

    assert "device" in inspect.signature(getattr(commands, verb)).parameters
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: --device cuda runs")
    assert main([verb, "--out", str(tmp_path / verb), "--device", "cuda"]) == 2
    assert "cuda" in capsys.readouterr().err
    assert not (tmp_path / verb / "config.yaml").exists()
