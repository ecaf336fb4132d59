"""Training on several processes and in mixed precision through the CLI: ``--devices 2
--strategy ddp`` on two CPU processes (gloo) and ``--precision bf16-mixed`` (CPU autocast)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from paperzoo.core import testing
from paperzoo.core.checkpoint import read_meta
from paperzoo.tripinet.cli import main
from paperzoo.tripinet.traces import BayarConv2d, BlockDCT, DCTHighPass, FFTHighPass, SRMFilter

SMALL = ["--data.num_train", "16", "--data.num_test", "12", "--data.batch_size", "4"]


def test_ddp_on_two_cpu_processes_rank_zero_scores_the_whole_test_set(tmp_path):
    """Rank 0 owns --out and scores all 12 test images: its metrics equal a one-process
    evaluation of the saved weights; the batch size is per process (global batch 2 x 4)."""
    from paperzoo.tripinet.commands import DataOptions, _datamodule
    from paperzoo.tripinet.pipeline import evaluate_localizer, load_localizer

    out = tmp_path / "ddp"
    command = ["train", "--steps", "2", *SMALL, "--device", "cpu"]
    command += ["--devices", "2", "--strategy", "ddp", "--out", str(out)]
    done = testing.run_console_script("paperzoo-tripinet", command, tmp_path, timeout_s=240)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = testing.check_metrics_json(out, ["f1", "auc", "final_loss", "world_size"])
    assert metrics["world_size"] == 2 and metrics["global_batch_size"] == 8
    assert metrics["num_images"] == 12 and math.isfinite(metrics["final_loss"])
    meta = read_meta(out / "model.safetensors")
    assert meta["world_size"] == 2 and meta["strategy"] == "ddp"
    assert meta["precision"] == "32-true" and meta["batch_size_per_process"] == 4

    net, _ = load_localizer(out / "model.safetensors")
    datamodule = _datamodule(DataOptions(num_train=16, num_test=12, batch_size=4), "tiny", 0)
    single = evaluate_localizer(net, datamodule.test_dataloader()).metrics
    for name in ("f1", "auc", "num_images", "num_tampered"):
        assert metrics[name] == pytest.approx(single[name], abs=1e-6), name


def test_bf16_mixed_trains_with_finite_losses_and_its_checkpoint_tests(tmp_path):
    run = tmp_path / "bf16"
    args = ["train", "--steps", "2", *SMALL, "--precision", "bf16-mixed", "--out", str(run)]
    assert main(args) == 0
    metrics = testing.check_metrics_json(run, ["f1", "auc", "final_loss"])
    assert all(math.isfinite(v) for v in metrics.values())
    assert read_meta(run / "model.safetensors")["precision"] == "bf16-mixed"
    scored = tmp_path / "test"
    test_args = ["test", "--ckpt", str(run / "model.safetensors"), *SMALL, "--out", str(scored)]
    assert main(test_args) == 0
    tested = json.loads((scored / "metrics.json").read_text())
    assert tested["f1"] == pytest.approx(metrics["f1"], abs=1e-6)


@pytest.mark.parametrize("trace", [SRMFilter, BayarConv2d, BlockDCT, DCTHighPass, FFTHighPass])
def test_trace_filters_compute_in_float32_under_autocast(trace):
    """Residuals of 0-255 pixels lose their signal in bfloat16 (about 4 % mean error of SRM's
    residuals): every filter runs in float32 whatever the autocast."""
    torch.manual_seed(0)
    images = torch.rand(2, 3, 32, 32)
    trace = trace()
    with torch.no_grad():
        reference = trace(images)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = trace(images)
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed, reference)


def test_training_data_without_a_batch_is_refused_by_name(tmp_path, capsys):
    """8 images with batch 16 (the last incomplete batch dropped) give no step: refused with a
    message, not an IndexError after training (the same happens to each rank's share under DDP)."""
    args = ["train", "--steps", "1", "--data.num_train", "8", "--data.num_test", "4"]
    assert main([*args, "--out", str(tmp_path / "run")]) == 2
    assert "training made no step" in capsys.readouterr().err
