"""The CLI end to end, in process: help, config round trip, demo, train -> test -> predict, errors,
the README's Python example, and (slow) a reduced validation run."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from paperzoo.core import testing
from paperzoo.hodinet.cli import main

from .conftest import write_set

VERBS = ["train", "test", "predict", "demo", "validate"]
VALIDATE_NAMES = ["hodinet_s_camo", "hodinet_s_baddepth", "hodinet_s_both", "hodinet_s_overall",
                  "hodinet_maxf_overall", "hodinet_maxe_overall", "hodinet_mae_overall",
                  "addfusion_s_overall", "hodinet_minus_addfusion_s", "rgbonly_s_camo",
                  "hodinet_s_camo_shuffled", "shuffle_gap_camo", "zero_depth_finite", "metric_selftest"]


def test_help_and_print_config(tmp_path):
    testing.check_cli_help(main, VERBS)
    config = testing.check_print_config(main, "train", ["--preset", "tiny", "--order", "2"], tmp_path)
    assert config["order"] == 2 and config["devices"] == 1 and config["strategy"] == "auto"
    config = testing.check_print_config(main, "test", ["--ckpt", "m", "--data", "d", "--sets", "NJU2K,NLPR"],
                                        tmp_path)
    assert config["sets"] == "NJU2K,NLPR"


def test_demo_end_to_end(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--steps", "3", "--n_train", "32", "--n_test", "9",
                 "--device", "cpu"]) == 0
    metrics = testing.check_metrics_json(out, ["hodinet_s_camo", "hodinet_s_overall", "last_loss"])
    assert 0 <= metrics["hodinet_s_overall"] <= 1
    assert (out / "grid.png").stat().st_size > 0 and (out / "model.safetensors").is_file()


def test_train_test_predict_on_a_folder_tree(tmp_path, capsys):
    root = tmp_path / "data"
    write_set(root / "RGBD_for_train", stems=("p", "q", "r", "s"))
    write_set(root / "RGBD_for_test" / "NJU2K", size=(50, 35))
    write_set(root / "RGBD_for_test" / "DES", stems=("u",), depth_bits=16)
    train_out = tmp_path / "train"
    assert main(["train", "--data", str(root), "--steps", "2", "--batch_size", "2", "--order", "2",
                 "--out", str(train_out)]) == 0
    ckpt = train_out / "model.safetensors"
    assert json.loads((train_out / "model.safetensors.json").read_text())["meta"]["overrides"] == {"order": 2}
    test_out = tmp_path / "test"
    assert main(["test", "--ckpt", str(ckpt), "--data", str(root), "--out", str(test_out)]) == 0
    metrics = testing.check_metrics_json(test_out, ["NJU2K_s", "NJU2K_maxf", "DES_mae"])
    assert 0 <= metrics["NJU2K_s"] <= 1
    assert Image.open(test_out / "NJU2K" / "a.png").size == (50, 35)  # maps at GT size
    # --sets as the spec writes it (comma-separated) and as a list
    for sets, names in (("NJU2K,DES", {"NJU2K", "DES"}), ("[DES]", {"DES"})):
        sets_out = tmp_path / f"test-{len(names)}"
        assert main(["test", "--ckpt", str(ckpt), "--data", str(root), "--sets", sets,
                     "--save_maps", "false", "--out", str(sets_out)]) == 0
        tested = json.loads((sets_out / "metrics.json").read_text())
        assert {k.rsplit("_", 1)[0] for k in tested} == names
    assert main(["test", "--ckpt", str(ckpt), "--data", str(root), "--sets", ",",
                 "--out", str(tmp_path / "t-none")]) == 2
    pred_out = tmp_path / "pred"
    rgb = root / "RGBD_for_test" / "NJU2K" / "RGB" / "b.jpg"
    depth = root / "RGBD_for_test" / "NJU2K" / "depth" / "b.png"
    assert main(["predict", "--ckpt", str(ckpt), "--rgb", str(rgb), "--depth", str(depth),
                 "--out", str(pred_out)]) == 0
    assert Image.open(pred_out / "b.png").size == (50, 35)
    # predict without --depth, a mismatched pair, an existing --out: one-line errors, exit 2
    capsys.readouterr()
    assert main(["predict", "--ckpt", str(ckpt), "--rgb", str(rgb), "--out", str(tmp_path / "p2")]) == 2
    assert "predict needs --depth (the depth map of --rgb)" in capsys.readouterr().err
    small = tmp_path / "small.png"
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(small)
    assert main(["predict", "--ckpt", str(ckpt), "--rgb", str(rgb), "--depth", str(small),
                 "--out", str(tmp_path / "p3")]) == 2
    assert re.search(r"RGB .*b\.jpg is 50x35 but depth .*small\.png is 5x5", capsys.readouterr().err)
    assert main(["predict", "--ckpt", str(ckpt), "--rgb", str(rgb), "--depth", str(depth),
                 "--out", str(pred_out)]) == 2
    err = capsys.readouterr().err
    assert f"--out {pred_out} already holds results" in err and "--overwrite" in err


def test_bad_options_exit_2_before_work(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path / "nowhere"), "--steps", "1", "--out", str(tmp_path / "a")]) == 2
    assert "expected a set folder" in capsys.readouterr().err
    assert main(["train", "--order", "0", "--out", str(tmp_path / "b")]) == 2
    assert "--order must be >= 1, got 0" in capsys.readouterr().err
    des = write_set(tmp_path / "RGBD_for_test" / "DES")  # a test-only set (pitfall 10)
    assert main(["train", "--data", str(des), "--steps", "1", "--out", str(tmp_path / "des")]) == 2
    assert "test-only set DES" in capsys.readouterr().err
    assert main(["train", "--stage_fusion", "hosf,x,hocf,hocf", "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err  # names the option and lists the valid entries
    assert "stage_fusion must name 4 entries from hosf, hocf, add, rgb, depth" in err
    assert "got 'hosf,x,hocf,hocf'" in err
    assert main(["validate", "--seeds", "0", "--out", str(tmp_path / "d")]) == 2
    assert "seeds must be >= 1, got 0" in capsys.readouterr().err
    missing = tmp_path / "none.safetensors"
    assert main(["test", "--ckpt", str(missing), "--data", str(tmp_path), "--out", str(tmp_path / "e")]) == 2
    assert f"checkpoint not found: {missing}" in capsys.readouterr().err
    assert not any((tmp_path / name).exists() for name in ("b", "c", "d", "e"))  # before any work


def test_readme_python_example_runs():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = re.search(r"```python\n(.*?)```", readme, flags=re.S)
    assert block, "README lacks a Python example"
    namespace: dict = {}
    exec(compile(block.group(1), "README.md", "exec"), namespace)  # noqa: S102
    assert 0 <= namespace["result"].scores["overall"]["s"] <= 1


class _NaNWithoutDepth(torch.nn.Module):
    """A stand-in model whose maps are NaN when the depth input is all zeros."""

    img_size = 64

    def __init__(self) -> None:
        super().__init__()
        self.gain = torch.nn.Parameter(torch.tensor(10.0))

    def forward(self, rgb, depth):
        scale = depth.sum() / depth.sum()  # 0/0 = NaN for zero depth
        logits = self.gain * (depth - 0.5) * scale
        return {"logits": logits, "side": [logits]}


def test_nan_maps_under_zero_depth_record_zero_depth_finite_0(tmp_path, monkeypatch):
    """validate's zero-depth check records 0 (and null scores) instead of aborting the run."""
    from paperzoo.hodinet import model as model_module
    from paperzoo.hodinet import validation
    from paperzoo.hodinet.pipeline import TrainResult, predict_probs

    monkeypatch.setattr(model_module, "create_model", lambda preset, **kw: _NaNWithoutDepth())
    monkeypatch.setattr(validation, "train_sod", lambda model, *a, **kw: TrainResult(model, [1.0, 0.5], 0.1, 1))
    rgb, zero = torch.rand(2, 3, 64, 64), torch.zeros(2, 1, 64, 64)
    with pytest.raises(ValueError, match="non-finite"):  # the default still refuses NaN maps
        predict_probs(_NaNWithoutDepth(), rgb, zero)
    out = tmp_path / "validate"
    assert main(["validate", "--steps", "1", "--seeds", "1", "--n_train", "4", "--n_test", "6",
                 "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["zero_depth_finite"] == 0 and metrics["pass_all"] == 0
    assert metrics["hodinet_s_camo_zerodepth"] is None  # not scored, never a number from NaN maps
    assert 0 <= metrics["hodinet_s_camo"] <= 1 and metrics["metric_selftest"] == 1


@pytest.mark.slow
def test_reduced_validation_writes_every_metric(tmp_path):
    out = tmp_path / "validate"
    assert main(["validate", "--steps", "100", "--seeds", "1", "--out", str(out)]) == 0
    metrics = testing.check_metrics_json(out, VALIDATE_NAMES)
    assert metrics["metric_selftest"] == 1 and metrics["zero_depth_finite"] == 1
    assert metrics["hodinet_s_camo"] >= 0.8  # 100 steps, one seed: below the full run's 0.90 bar
    assert (out / "grid.png").is_file() and (out / "curves.png").is_file()


def test_time_budget_drops_every_arm_to_250_steps_before_training():
    """Spec section 5: past 9 minutes (projected), every arm runs 250 steps; decided up front."""
    from dataclasses import replace

    from paperzoo.hodinet import validation
    from paperzoo.hodinet.pipeline import TrainResult

    config = validation.ValidationConfig()
    costs = {"rgb_only_tiny": 0.5, "add_fusion_tiny": 0.5, "tiny": 0.5}
    # 1 RGB-only + 2 add-fusion + 2 HODINet runs of 300 steps at 0.5 s: 750 s on one worker
    assert validation.choose_steps(config, costs) == (250, 750.0)
    assert validation.choose_steps(replace(config, workers=2), costs) == (300, 375.0)
    assert validation.choose_steps(replace(config, time_budget_s=0), costs) == (300, 750.0)
    assert validation.choose_steps(replace(config, time_budget_s=800), costs) == (300, 750.0)
    with pytest.raises(ValueError, match="time_budget_s"):
        replace(config, time_budget_s=-1).check()

    trained = []

    def fake_train(model, dataset, steps, **kw):
        trained.append(steps)
        return TrainResult(model, [1.0, 0.5], 0.1, steps)

    slow = replace(config, n_train=4, n_test=6, seeds=1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(validation, "seconds_per_step", lambda *a, **kw: 10.0)
        patch.setattr(validation, "train_sod", fake_train)
        metrics = validation.run_validation(slow, log=lambda _: None).metrics
    assert trained == [250, 250, 250] and metrics["steps"] == 250
    assert metrics["steps_reduced_for_time"] == 1 and metrics["projected_train_seconds"] == 9000.0
