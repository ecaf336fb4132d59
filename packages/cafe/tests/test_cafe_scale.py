"""The utility run of ``defend`` on several processes and in mixed precision, through the CLI:
``--devices 2 --strategy ddp`` on two CPU processes (gloo) and ``--precision bf16-mixed``."""

from __future__ import annotations

import json
import math

import pytest
import torch

from paperzoo.cafe.defenses import ClipAndNoise
from paperzoo.cafe.module import VFLClassifier
from paperzoo.cafe.pipeline import load_dataset, model_for
from paperzoo.core import testing
from paperzoo.core.checkpoint import load_state_dict, read_meta
from paperzoo.core.data import TensorDataModule
from paperzoo.core.lightning import make_trainer


def _digits_split(batch_size: int) -> tuple[torch.Tensor, torch.Tensor, TensorDataModule]:
    images, labels = load_dataset("digits", None, "train", 32)
    return images, labels, TensorDataModule(images, labels, fractions=(0.7, 0.1, 0.2),
                                            batch_size=batch_size, seed=0)


def _test_accuracy(module: VFLClassifier, images: torch.Tensor, labels: torch.Tensor,
                   data: TensorDataModule) -> float:
    module.eval()
    with torch.no_grad():
        predicted = module(images[data.test_idx]).argmax(dim=1)
    return (predicted == labels[data.test_idx]).float().mean().item()


def test_defend_under_ddp_writes_rank_zeros_whole_split_results(tmp_path):
    """Two gloo processes: exit 0, --out holds rank 0's results, the written accuracy is the
    saved model's on the whole test split (361 samples, split unevenly between the ranks), the
    clip-and-noise epsilon uses the global batch (B / N, the one-process step count) and the
    weights' sidecar records the world size."""
    pytest.importorskip("opacus")
    done = testing.run_console_script(
        "paperzoo-cafe", ["defend", "--scenario.defense.name", "dp", "--epochs", "1", "--attack_iters", "5",
                          "--scenario.n_samples", "20", "--scenario.batch_size", "10", "--device", "cpu",
                          "--devices", "2", "--strategy", "ddp", "--out", "ddp"], tmp_path, timeout_s=240)
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "ddp"
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoints", "config.yaml", "metrics.json", "recon.png", "results.md", "vfl_model.safetensors",
        "vfl_model.safetensors.json"]
    assert sorted(p.parent.name for p in (out / "checkpoints").rglob("last.ckpt")) == ["clean", "defended"]
    metrics = json.loads((out / "metrics.json").read_text())
    meta = read_meta(out / "vfl_model.safetensors")
    assert meta["world_size"] == 2 and meta["precision"] == "32-true"
    images, labels, data = _digits_split(batch_size=40)
    module = VFLClassifier(model_name=model_for("digits", images.dim() - 1),
                           image_shape=tuple(images.shape[1:]), classes=10, num_parties=4)
    module.model.load_state_dict(load_state_dict(out / "vfl_model.safetensors"))
    accuracy = _test_accuracy(module, images, labels, data)
    assert meta["test_acc"] == accuracy
    assert metrics["defended_acc"] == round(accuracy, 4)
    train = len(data.train_idx)
    epsilon = ClipAndNoise(1e-2, 1.0).epsilon(math.ceil(train / 40), 40 / train)
    assert metrics["dp_epsilon"] == round(epsilon, 4)
    assert 0 < metrics["clean_acc"] <= 1 and "attack_psnr_db" in metrics


def test_utility_run_in_bf16_mixed_has_finite_loss_and_scores_float32_weights():
    """Under bf16 autocast the loss is finite and the test accuracy is the float32 weights' (the
    ones saved for ``attack --weights``): evaluation runs with autocast off."""
    images, labels, data = _digits_split(batch_size=40)
    module = VFLClassifier(model_name=model_for("digits", images.dim() - 1),
                           image_shape=tuple(images.shape[1:]), classes=10, num_parties=4,
                           defense="noise")
    trainer = make_trainer(None, max_epochs=1, device="cpu", logger=False, progress_bar=False,
                           precision="bf16-mixed")
    trainer.fit(module, datamodule=data)
    assert math.isfinite(float(trainer.callback_metrics["train_loss"]))
    (tested,) = trainer.test(module, datamodule=data, verbose=False)
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in module.parameters())
    assert tested["test_acc"] == _test_accuracy(module, images, labels, data)
