"""Training on several processes and in mixed precision through the CLI: ``--devices 2
--strategy ddp`` on two CPU processes (gloo) and ``--precision bf16-mixed`` (CPU autocast)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from paperzoo.core import testing
from paperzoo.core.checkpoint import read_meta
from paperzoo.hodinet.cli import main
from paperzoo.hodinet.loss import hybrid_loss

from .conftest import write_set


def _test_root(root: Path) -> Path:
    write_set(root / "RGBD_for_test" / "NJU2K", stems=("a", "b"))
    return root


def test_ddp_on_two_cpu_processes_counts_epochs_over_each_share(tmp_path):
    """16 scenes, batch 4 per process, 2 processes: one epoch is 2 steps of a global batch of 8
    (it was 4 steps, two passes, when the steps per epoch were counted for one process)."""
    out = tmp_path / "ddp"
    command = ["train", "--n_scenes", "16", "--epochs", "1", "--batch_size", "4"]
    command += ["--device", "cpu", "--devices", "2", "--strategy", "ddp", "--out", str(out)]
    done = testing.run_console_script("paperzoo-hodinet", command, tmp_path, timeout_s=240)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = testing.check_metrics_json(out, ["steps", "first_loss", "last_loss", "world_size"])
    assert metrics["steps"] == 2 and metrics["world_size"] == 2
    assert metrics["global_batch_size"] == 8
    assert math.isfinite(metrics["first_loss"]) and math.isfinite(metrics["last_loss"])
    meta = read_meta(out / "model.safetensors")
    assert meta["world_size"] == 2 and meta["strategy"] == "ddp" and meta["steps"] == 2
    assert meta["batch_size_per_process"] == 4 and meta["precision"] == "32-true"
    root = _test_root(tmp_path / "data")
    args = ["test", "--ckpt", str(out / "model.safetensors"), "--data", str(root)]
    assert main([*args, "--out", str(tmp_path / "test")]) == 0


def test_bf16_mixed_trains_with_finite_losses_and_its_checkpoint_tests(tmp_path):
    run = tmp_path / "bf16"
    args = ["train", "--n_scenes", "8", "--steps", "2", "--batch_size", "4"]
    assert main([*args, "--precision", "bf16-mixed", "--out", str(run)]) == 0
    metrics = testing.check_metrics_json(run, ["first_loss", "last_loss"])
    assert all(math.isfinite(v) for v in metrics.values())
    assert read_meta(run / "model.safetensors")["precision"] == "bf16-mixed"
    root = _test_root(tmp_path / "data")
    test_out = tmp_path / "test"
    args = ["test", "--ckpt", str(run / "model.safetensors"), "--data", str(root)]
    assert main([*args, "--out", str(test_out)]) == 0
    scores = json.loads((test_out / "metrics.json").read_text())
    assert 0 <= scores["NJU2K_s"] <= 1 and 0 <= scores["NJU2K_mae"] <= 1


def test_hybrid_loss_is_float32_under_autocast():
    """Side logits in bfloat16 (autocast's convolutions): the loss is computed in float32, as
    from the same logits cast up (the soft IoU's sums keep three digits in bfloat16)."""
    torch.manual_seed(0)
    side = [torch.randn(2, 1, 32, 32).bfloat16(), torch.randn(2, 1, 16, 16).bfloat16()]
    target = (torch.rand(2, 1, 32, 32) > 0.5).float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = hybrid_loss(side, target)
    reference = hybrid_loss([s.float() for s in side], target)
    assert mixed.dtype == torch.float32
    assert float(mixed) == pytest.approx(float(reference), rel=1e-6)
