"""Training past one process and past float32: two CPU ranks under Lightning's ``ddp`` (gloo)
through the console script, and ``--precision bf16-mixed``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from paperzoo.advdiffsr.cli import main
from paperzoo.core import testing
from paperzoo.core.checkpoint import read_meta


def _train(data: Path, out: Path, *extra: str) -> list[str]:
    # small_data_dir: 6 sequences of 12 frames, windows of 8 frames: 6 x 5 = 30 windows
    return [
        "train",
        "--data",
        str(data),
        "--model",
        "physics",
        "--lambda_pde",
        "1",
        "--preset",
        "tiny",
        "--window",
        "8",
        "--steps",
        "1",
        "--device",
        "cpu",
        "--out",
        str(out),
        *extra,
    ]


def test_ddp_through_the_console_script_records_the_loss_of_the_whole_batch(
    small_data_dir, tmp_path
):
    """One step over all 30 windows: one process in one batch of 30, or two ranks with 15 each.
    The first step's loss is taken before any update, from the same initial weights, so the
    loss rank 0 records must be the one-process loss over every window (the mean of the two
    ranks' means), not rank 0's 15 windows only."""
    single = tmp_path / "single"
    assert main(_train(small_data_dir, single, "--batch_size", "30")) == 0
    out = tmp_path / "ddp"
    argv = _train(small_data_dir, out, "--batch_size", "15", "--devices", "2", "--strategy", "ddp")
    done = testing.run_console_script("paperzoo-advdiffsr", argv, tmp_path, timeout_s=240)
    assert done.returncode == 0, done.stderr[-3000:]
    one, two = (json.loads((run / "metrics.json").read_text()) for run in (single, out))
    assert two["world_size"] == read_meta(out / "model.safetensors")["world_size"] == 2
    assert two["loss_pde"] == pytest.approx(one["loss_pde"], rel=1e-5)
    # rank 0's weights serve the later verbs
    assert (
        main(
            [
                "predict",
                "--checkpoint",
                str(out / "model.safetensors"),
                "--data",
                str(small_data_dir / "test_lr.npz"),
                "--out",
                str(tmp_path / "predict"),
            ]
        )
        == 0
    )


def test_bf16_mixed_rwae_training_keeps_finite_losses(small_data_dir, tmp_path):
    out = tmp_path / "rwae"
    argv = _train(small_data_dir, out, "--batch_size", "4", "--precision", "bf16-mixed")
    argv[argv.index("physics")] = "rwae"
    argv[argv.index("--steps") + 1] = "2"
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    losses = [metrics[k] for k in ("loss_lr", "loss_pde", "loss_mmd", "loss_total")]
    assert np.isfinite(losses).all()
    assert read_meta(out / "model.safetensors")["precision"] == "bf16-mixed"


def test_losses_run_in_float32_on_bfloat16_fields():
    """An own module may hand the losses a bfloat16 field under autocast. CPU autocast runs
    torch.fft in float32, but the residual's products with u and its differences stayed in
    bfloat16 (here 1.90107 against 1.90181); the losses must run in float32 throughout."""
    from paperzoo.advdiffsr.model import create_model, mmd_imq
    from paperzoo.advdiffsr.module import PhysicsSRModule

    torch.manual_seed(0)
    system = PhysicsSRModule(
        create_model("tiny", scale=4), torch.randn(1, 1, 2, 16, 16), 0.005, 0.025, 4
    )
    c, u = torch.randn(2, 3, 16, 16), torch.randn(1, 1, 2, 16, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = system.pde_loss(c.bfloat16(), u)
        gap = system.lr_loss(c.bfloat16(), torch.randn(2, 3, 4, 4), torch.ones(2, 3, 4, 4))
    assert low.dtype == gap.dtype == torch.float32
    assert low.item() == pytest.approx(system.pde_loss(c.bfloat16().float(), u).item(), rel=1e-6)
    a, b = torch.randn(64, 4), torch.randn(64, 4) + 0.1
    assert mmd_imq(a.bfloat16(), b.bfloat16()).dtype == torch.float32
