"""Training past one process and past float32: two CPU ranks under Lightning's ``ddp`` (gloo)
through the console script, and ``--precision bf16-mixed`` through train, detect and remove."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import yaml

from paperzoo.core import testing
from paperzoo.diffcleanse.cli import main
from paperzoo.diffcleanse.model import load_unet


def _images(path: Path, count: int = 16) -> str:
    """``count`` 1-channel 8 x 8 uint8 images (the micro preset's shape) as ``npz:FILE``."""
    rng = np.random.default_rng(0)
    np.savez(path, images=rng.integers(0, 256, (count, 1, 8, 8), dtype=np.uint8))
    return f"npz:{path}"


def test_ddp_through_the_console_script_takes_every_step(tmp_path):
    """16 images on two ranks: Lightning's distributed sampler gives each 8, two batches of 4,
    so a fit limited to one pass over them stopped after 2 of the 4 steps (and the cosine decay
    never reached its end). Every step must be taken and the model folder written by rank 0."""
    data = _images(tmp_path / "images.npz")
    out = tmp_path / "ddp"
    argv = ["train", "--data", data, "--steps", "4", "--batch_size", "4", "--device", "cpu"]
    argv += ["--devices", "2", "--strategy", "ddp", "--out", str(out)]
    done = testing.run_console_script("paperzoo-diffcleanse", argv, tmp_path, timeout_s=240)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 4, f"the DDP fit took {metrics.get('steps')} of 4 steps"
    assert np.isfinite([metrics["first_loss"], metrics["last_loss"]]).all()
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert (config["devices"], config["strategy"]) == (2, "ddp")
    # one model folder, swapped into place once: no staging folder left beside it; the resume
    # checkpoint written by rank 0
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoints",
        "config.yaml",
        "logs",
        "metrics.json",
        "model",
        "results.md",
    ]
    unet, _ = load_unet(out / "model")
    assert all(torch.isfinite(p).all() for p in unet.parameters())


def test_bf16_mixed_train_detect_remove(tmp_path):
    data = _images(tmp_path / "images.npz")
    bf16 = ["--precision", "bf16-mixed", "--device", "cpu"]
    clean = tmp_path / "clean"
    assert (
        main(
            [
                "train",
                "--data",
                data,
                "--steps",
                "2",
                "--batch_size",
                "4",
                *bf16,
                "--out",
                str(clean),
            ]
        )
        == 0
    )
    trained = json.loads((clean / "metrics.json").read_text())
    assert (
        trained["steps"] == 2 and np.isfinite([trained["first_loss"], trained["last_loss"]]).all()
    )
    detected = tmp_path / "detect"
    small = ["--iters", "1", "--batch", "2", "--sampler_steps", "1", "--n_eval", "2"]
    model = ["--model", str(clean / "model")]
    assert main(["detect", *model, *small, "--calibration", "none", "--out", str(detected)]) == 0
    removed = tmp_path / "remove"
    argv = ["remove", *model, "--trigger", str(detected / "trigger_inverted.safetensors")]
    argv += ["--ft_steps", "2", "--n_ft", "8", "--batch_size", "4", "--prune_batch", "4"]
    assert main([*argv, "--t_start", "995", *bf16, "--out", str(removed)]) == 0
    metrics = json.loads((removed / "metrics.json").read_text())
    assert metrics["steps"] == 2 and np.isfinite(metrics["last_loss"])


def test_dual_loss_runs_in_float32_on_bfloat16_predictions():
    """Under autocast the UNets return bfloat16; the teacher-student gap and its sum over the
    pixels must not be rounded to bfloat16."""
    from paperzoo.diffcleanse.module import dual_loss

    generator = torch.Generator().manual_seed(0)
    eps, student, teacher = (torch.randn(4, 1, 8, 8, generator=generator) for _ in range(3))
    student, teacher = student.bfloat16(), teacher.bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = dual_loss(eps, student, teacher)
    exact = dual_loss(eps, student.float(), teacher.float())
    assert low.dtype == torch.float32 and low.item() == exact.item()
