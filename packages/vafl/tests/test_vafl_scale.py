"""The Lightning references (``--runtime central`` / ``single``) on several processes and in mixed
precision, through the CLI: ``--devices 2 --strategy ddp`` on two CPU processes (gloo) and
``--precision bf16-mixed``; the federated runtimes refuse the Lightning options they ignore."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import torch

from paperzoo.core import testing
from paperzoo.core.checkpoint import load_state_dict, read_meta
from paperzoo.vafl import cli
from paperzoo.vafl.config import as_federation_config
from paperzoo.vafl.data import load_dataset
from paperzoo.vafl.pipeline import train_centralised


def _central(epochs: int, **scale):
    data = load_dataset("breast_cancer", 4, None, 0)
    return train_centralised(data, replace(as_federation_config(None), seed=0), epochs, "cpu", **scale)


def test_central_under_ddp_takes_the_one_process_steps(tmp_path):
    """Lightning used to give each rank a DistributedSampler of whole batches: ``--batch_size``
    became per rank and the run took half the steps (digits, 3 epochs: accuracy 0.805 against
    0.925). Now the two ranks share every global batch, train the one-process weights, and rank 0
    writes the one-process accuracy (scored on the whole test split) to --out."""
    done = testing.run_console_script(
        "paperzoo-vafl", ["train", "--dataset", "breast_cancer", "--runtime", "central", "--epochs", "3",
                          "--device", "cpu", "--devices", "2", "--strategy", "ddp", "--out", "ddp"],
        tmp_path, timeout_s=240)
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "ddp"
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoints", "config.yaml", "metrics.json", "model.safetensors", "model.safetensors.json", "results.md"]
    assert (out / "checkpoints" / "last.ckpt").is_file()
    meta = read_meta(out / "model.safetensors")
    assert meta["world_size"] == 2 and meta["precision"] == "32-true"
    single = _central(3)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["accuracy"] == single.accuracy
    assert metrics["balanced_accuracy"] == single.balanced_accuracy
    weights = load_state_dict(out / "model.safetensors")
    for key, value in single.model.model.state_dict().items():
        torch.testing.assert_close(weights[key], value, rtol=1e-4, atol=1e-5)


def test_central_in_bf16_mixed_has_a_finite_loss():
    result = _central(2, precision="bf16-mixed")
    trainer = result.model.trainer
    assert trainer.precision == "bf16-mixed"
    assert math.isfinite(float(trainer.callback_metrics["train_loss"]))
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in result.model.parameters())
    assert 0.0 <= result.accuracy <= 1.0


def test_federated_runtimes_refuse_lightning_options_they_would_ignore(tmp_path, capsys):
    for option in (["--precision", "bf16-mixed"], ["--strategy", "ddp"]):
        assert cli.main(["train", "--runtime", "sim", *option, "--out", str(tmp_path / "x")]) == 2
        assert "to --runtime central and single only" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
