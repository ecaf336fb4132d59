"""Training on several processes and in mixed precision: ``train --devices 2 --strategy ddp`` on
two CPU processes (gloo) through the console script, ``--precision bf16-mixed`` (CPU autocast)
for ``search`` and ``train``, and the one-process search's refusal of several devices."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from paperzoo.core import testing
from paperzoo.core.checkpoint import read_meta
from paperzoo.forgerynas import data as frames_module
from paperzoo.forgerynas.cli import main
from paperzoo.forgerynas.data import BalancedBatchSampler

TRAIN = ["--C", "4", "--layers", "4", "--epochs", "2", "--batch_size", "8"]
TRAIN += ["--batches_per_epoch", "2", "--device", "cpu"]
SEARCH = ["--epochs", "2", "--batches_per_epoch", "1", "--C", "4", "--layers", "2"]
SEARCH += ["--steps", "2", "--K", "2", "--device", "cpu"]


def test_ddp_train_on_two_cpu_processes_keeps_one_process_steps(tmp_path, npz_pair):
    """Balanced batches of 8 shared by 2 processes: 2 epochs x 2 batches are 4 steps, as on one
    process (Lightning refused the custom batch sampler before: TypeError at fit)."""
    a, c = npz_pair
    out = tmp_path / "ddp"
    command = ["train", "--train_data", f"npz:{a}", "--val_data", f"npz:{c}", *TRAIN]
    command += ["--devices", "2", "--strategy", "ddp", "--out", str(out)]
    done = testing.run_console_script("paperzoo-forgerynas", command, tmp_path, timeout_s=240)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = testing.check_metrics_json(out, ["first_loss", "val_auc", "steps", "world_size"])
    assert metrics["steps"] == 4 and metrics["world_size"] == 2
    assert math.isfinite(metrics["first_loss"]) and 0 <= metrics["val_auc"] <= 1
    meta = read_meta(out / "model.safetensors")
    assert meta["world_size"] == 2 and meta["strategy"] == "ddp" and meta["precision"] == "32-true"
    scored = tmp_path / "eval"
    args = ["evaluate", "--ckpt", str(out / "model.safetensors"), "--data", f"npz:{c}"]
    assert main([*args, "--out", str(scored)]) == 0
    assert 0 <= json.loads((scored / "metrics.json").read_text())["auc"] <= 1


@pytest.mark.parametrize("world", [2, 4])
def test_balanced_batches_are_shared_among_processes(monkeypatch, world):
    """Each rank's share is balanced and the shares together are the one-process batch."""
    labels = torch.tensor([0] * 10 + [1] * 7)
    whole = list(BalancedBatchSampler(labels, 8, 3, seed=0))
    shares = []
    for rank in range(world):
        monkeypatch.setattr(frames_module, "_world_and_rank", lambda rank=rank: (world, rank))
        shares.append(list(BalancedBatchSampler(labels, 8, 3, seed=0)))
    for b, batch in enumerate(whole):
        parts = [share[b] for share in shares]
        assert all(len(p) == 8 // world and int(labels[p].sum()) == 4 // world for p in parts)
        assert sorted(i for p in parts for i in p) == sorted(batch)
    monkeypatch.setattr(frames_module, "_world_and_rank", lambda: (3, 0))
    with pytest.raises(ValueError, match="multiple of 6"):
        list(BalancedBatchSampler(labels, 8, 3, seed=0))


def test_search_refuses_several_processes(npz_pair):
    from paperzoo.forgerynas.data import load_frames
    from paperzoo.forgerynas.pipeline import SearchConfig, search_architecture

    a, c = npz_pair
    config = SearchConfig(
        epochs=2, warmup=1, prune_at=(2,), batches_per_epoch=1, C=4, layers=2, steps=2, K=2
    )
    weights, arch = load_frames(f"npz:{a}"), load_frames(f"npz:{c}")
    with pytest.raises(ValueError, match="the search runs in one process, not 2"):
        # refused once the trainer is built, before fit would relaunch pytest per device
        search_architecture(weights, arch, config, devices=2, strategy="ddp")


def test_bf16_mixed_search_and_train_finish_with_finite_losses(tmp_path, npz_pair):
    a, c = npz_pair
    search = ["search", "--train", f"npz:{a}", "--arch_val", f"npz:{c}", *SEARCH]
    assert main([*search, "--precision", "bf16-mixed", "--out", str(tmp_path / "search")]) == 0
    assert math.isfinite(
        json.loads((tmp_path / "search" / "metrics.json").read_text())["final_perf"]
    )
    run = tmp_path / "train"
    train = ["train", "--train_data", f"npz:{a}", "--val_data", f"npz:{c}", *TRAIN]
    assert main([*train, "--precision", "bf16-mixed", "--out", str(run)]) == 0
    metrics = testing.check_metrics_json(run, ["first_loss", "last_loss", "val_auc"])
    assert all(math.isfinite(v) for v in metrics.values())
    assert read_meta(run / "model.safetensors")["precision"] == "bf16-mixed"
    args = ["evaluate", "--ckpt", str(run / "model.safetensors"), "--data", f"npz:{c}"]
    assert main([*args, "--out", str(tmp_path / "eval")]) == 0


class _TwoLogits(nn.Module):
    """A linear two-logit 'supernet' with one architecture parameter."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(12, 2)
        self.alpha = nn.Parameter(torch.ones(2))

    def arch_parameters(self):
        return [self.alpha]

    def forward(self, x):
        return self.linear(x.flatten(1) * self.alpha.sum())  # bfloat16 under autocast


def test_probabilities_for_p_and_val_auc_are_float32_under_autocast():
    """bfloat16 probabilities keep three digits: their ties move an AUC (P of the importance,
    the validation AUC of the restart rule), so both are computed from float32 logits."""
    from paperzoo.forgerynas.module import TrainModule
    from paperzoo.forgerynas.search import architecture_step

    torch.manual_seed(0)
    net, images, labels = _TwoLogits(), torch.rand(6, 3, 2, 2), torch.tensor([0, 1] * 3)
    optimizer = torch.optim.Adam(net.arch_parameters(), lr=1e-3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, probs = architecture_step(net, optimizer, images, labels)
    assert probs.dtype == torch.float32
    module = TrainModule(_TwoLogits())
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        module.validation_step((images, labels), 0)
    assert module.val_auc.preds[0].dtype == torch.float32


def test_search_clips_the_unscaled_gradients_under_a_loss_scaler(monkeypatch):
    """Under ``16-mixed`` Lightning scales the loss and unscales the gradients only inside
    ``optimizer.step()``. The weight step's clip (5) must act on the unscaled gradients: before,
    it clipped the scaled ones in ``training_step`` (an effective clip of 5 / 4096 here), and
    the supernet barely trained. Without a GPU: Lightning's 16-mixed plugin with a CPU
    GradScaler (scale 2^12) and no autocast, so everything else is float32 and the powers of two
    are exact: the search must then equal the plain float32 search bit for bit."""
    import contextlib

    from lightning.pytorch.plugins.precision import MixedPrecision

    import paperzoo.core.lightning as core_lightning
    from paperzoo.forgerynas.data import TensorFrames
    from paperzoo.forgerynas.pipeline import SearchConfig, search_architecture

    from .conftest import toy_frames

    class ScaledLossOnly(MixedPrecision):
        def __init__(self) -> None:
            scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
            super().__init__("16-mixed", "cpu", scaler=scaler)

        @contextlib.contextmanager
        def forward_context(self):
            yield

    images, labels = toy_frames(32, seed=0)
    aux_images, aux_labels = toy_frames(32, seed=1)
    train = TensorFrames(images, labels, name="a")
    aux = TensorFrames(aux_images, aux_labels, name="c")
    config = SearchConfig(
        C=4,
        layers=2,
        steps=2,
        K=2,
        epochs=2,
        warmup=1,
        prune_at=(2,),
        batches_per_epoch=2,
        batch_size=8,
    )
    plain = search_architecture(train, aux, config, seed=0)
    make_trainer = core_lightning.make_trainer
    monkeypatch.setattr(
        core_lightning,
        "make_trainer",
        lambda *a, **kw: make_trainer(*a, plugins=[ScaledLossOnly()], **kw),
    )
    scaled = search_architecture(train, aux, config, seed=0)
    assert scaled.weight_losses == plain.weight_losses and scaled.trace == plain.trace
    expected, got = plain.supernet.state_dict(), scaled.supernet.state_dict()
    assert all(torch.equal(got[k], expected[k]) for k in expected)
