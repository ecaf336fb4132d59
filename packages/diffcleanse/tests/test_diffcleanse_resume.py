"""``--resume`` of the training verbs (train, backdoor, remove): a run interrupted after a resume
checkpoint and continued gives the uninterrupted run's model, metrics and loss log bit for bit;
saving the checkpoints changes no number."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from paperzoo.core import testing
from paperzoo.core.checkpoint import load_state_dict
from paperzoo.diffcleanse.cli import main

CPU = ["--device", "cpu"]
# 40 images, batches of 8: an epoch (one pass, a resume checkpoint) every 5 steps
IMAGES, BATCH = 40, 8


def _images(path: Path) -> str:
    rng = np.random.default_rng(0)
    np.savez(path, images=rng.integers(0, 256, (IMAGES, 1, 8, 8), dtype=np.uint8))
    return f"npz:{path}"


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return load_state_dict(out / "model" / "unet" / "diffusion_pytorch_model.safetensors")


def _training_results(out: Path) -> dict:
    """metrics.json without the wall-clock times, and the CSV loss log."""
    metrics = json.loads((out / "metrics.json").read_text())
    log = out / "logs" / "metrics.csv"
    return {
        "metrics": {k: v for k, v in metrics.items() if "seconds" not in k},
        "log": log.read_text() if log.is_file() else None,
    }


def _check_same_run(straight: Path, resumed: Path) -> None:
    first, second = _weights(straight), _weights(resumed)
    assert first.keys() == second.keys()
    different = [k for k in first if not torch.equal(first[k], second[k])]
    assert not different, f"resumed weights differ from the uninterrupted run's: {different[:5]}"
    assert _training_results(resumed) == _training_results(straight)


def _interrupt_and_resume(argv: list[str], out: Path, after: int) -> dict:
    """Run ``argv`` into ``out``, stopped after ``after`` resume checkpoints, then resume it;
    returns the interrupted run's checkpoint (loaded as plain tensors, ``weights_only``)."""
    with testing.interrupt_training(after), pytest.raises(testing.TrainingInterrupted):
        main([*argv, "--out", str(out)])
    assert not (out / "metrics.json").exists()
    checkpoint = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["epoch"] == after - 1 and checkpoint["optimizer_states"]
    assert main([*argv, "--out", str(out), "--resume"]) == 0
    return checkpoint


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The training images, an untrained micro model folder and an uninterrupted backdoor of it,
    shared by the tests below."""
    from paperzoo.diffcleanse.model import create_model, save_unet

    root = tmp_path_factory.mktemp("runs")
    data = _images(root / "images.npz")
    torch.manual_seed(0)
    save_unet(create_model("micro"), root / "clean")
    backdoor = ["backdoor", "--model", str(root / "clean"), "--data", data]
    backdoor += ["--steps", "15", "--batch_size", str(BATCH), "--cosine", "true", *CPU]
    assert main([*backdoor, "--out", str(root / "backdoor")]) == 0
    return {"root": root, "data": data, "backdoor": backdoor}


def test_train_resumed_equals_uninterrupted(runs, tmp_path):
    """110 steps, 22 checkpoints: stopped after step 60, past the CSV log's row of step 49 and
    before the one of step 99."""
    train = ["train", "--data", runs["data"], "--steps", "110", "--batch_size", str(BATCH), *CPU]
    assert main([*train, "--out", str(tmp_path / "straight")]) == 0
    checkpoint = _interrupt_and_resume(train, tmp_path / "cut", after=12)
    assert checkpoint["global_step"] == 60 and len(checkpoint["step_losses"]) == 60
    saved_generators = checkpoint["callbacks"]["ResumeCheckpoint"]["random_states"]["generators"]
    assert "module.generator" in saved_generators
    _check_same_run(tmp_path / "straight", tmp_path / "cut")
    # the header and the rows of steps 49 and 99 (log_every_n_steps 50), one of each
    assert _training_results(tmp_path / "cut")["log"].count("\n") == 3


def test_backdoor_resumed_equals_uninterrupted(runs, tmp_path):
    _interrupt_and_resume(runs["backdoor"], tmp_path / "cut", after=2)
    _check_same_run(runs["root"] / "backdoor", tmp_path / "cut")


@pytest.mark.parametrize("after", [1, 2, 3])
def test_remove_resumed_equals_uninterrupted(runs, tmp_path, after):
    """The fine-tune of 12 steps on 32 samples: three checkpoints. The pruning is not run again
    on resume (its widths and report are read back); the EMA is in the checkpoint."""
    backdoored = runs["root"] / "backdoor"
    remove = ["remove", "--model", str(backdoored / "model")]
    remove += [
        "--trigger",
        str(backdoored / "trigger_true.safetensors"),
        "--oracle_trigger",
        "true",
    ]
    remove += ["--ft_steps", "12", "--n_ft", "32", "--batch_size", str(BATCH)]
    remove += ["--prune_batch", "8", "--t_start", "990", *CPU]
    assert main([*remove, "--out", str(tmp_path / "straight")]) == 0
    checkpoint = _interrupt_and_resume(remove, tmp_path / "cut", after)
    assert checkpoint["ema"]["optimization_step"] == 4 * after
    _check_same_run(tmp_path / "straight", tmp_path / "cut")
    record = json.loads((tmp_path / "cut" / "checkpoints" / "removal_inputs.json").read_text())
    assert record["report"]["channels_removed"] > 0 and record["pruning_plan"]["blocks"]


def test_checkpoints_change_no_number_and_only_a_resume_folder_writes_them(tmp_path):
    """Epochs of one pass (the checkpoints' rhythm) give the weights and losses of the single
    epoch a fit without a resume folder runs, dropout (torch's global generator) included; a
    library call without a resume folder writes no checkpoint."""
    from paperzoo.diffcleanse.data import digits_images
    from paperzoo.diffcleanse.model import create_model
    from paperzoo.diffcleanse.pipeline import train_diffusion

    images = digits_images(8)[:IMAGES]
    runs = {}
    for name, resume_dir in (("plain", None), ("checkpointed", tmp_path / "checkpoints")):
        torch.manual_seed(0)
        unet = create_model("micro", dropout=0.1)
        runs[name] = train_diffusion(
            unet,
            images,
            12,
            BATCH,
            2e-3,
            seed=0,
            cosine=True,
            out_dir=tmp_path / name,
            resume_dir=resume_dir,
        )
    plain, checkpointed = runs["plain"], runs["checkpointed"]
    assert plain.losses == checkpointed.losses and len(plain.losses) == 12
    for key, value in plain.unet.state_dict().items():
        assert torch.equal(value, checkpointed.unet.state_dict()[key]), key
    assert not list((tmp_path / "plain").rglob("*.ckpt"))
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 2


def test_remove_refuses_to_resume_on_other_fine_tune_images(tmp_path, micro):
    from paperzoo.diffcleanse.pipeline import remove_backdoor
    from paperzoo.diffcleanse.prune import MagnitudePruner

    images = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    options = dict(ft_steps=4, batch_size=8, resume_dir=tmp_path / "checkpoints")
    with testing.interrupt_training(1), pytest.raises(testing.TrainingInterrupted):
        remove_backdoor(micro, images, images, MagnitudePruner(0.1), **options)
    with pytest.raises(ValueError, match="--resume: the fine-tune images differ"):
        remove_backdoor(micro, images, images.flip(0), MagnitudePruner(0.1), resume=True, **options)
    with pytest.raises(ValueError, match="keep_pruned cannot be resumed"):
        remove_backdoor(
            micro, images, images, MagnitudePruner(0.1), keep_pruned=True, resume=True, **options
        )
    resumed = remove_backdoor(micro, images, images, MagnitudePruner(0.1), resume=True, **options)
    straight = remove_backdoor(
        micro, images, images, MagnitudePruner(0.1), ft_steps=4, batch_size=8
    )
    assert resumed.losses == straight.losses and resumed.report == straight.report
    for key, value in straight.unet.state_dict().items():
        assert torch.equal(value, resumed.unet.state_dict()[key]), key


def test_library_resume_of_train_diffusion_equals_uninterrupted(tmp_path):
    """From Python: ``resume_dir`` and ``resume`` continue an interrupted ``train_diffusion``
    (its loss history included) on the batches the uninterrupted run takes."""
    import lightning as L

    from paperzoo.diffcleanse.model import create_model
    from paperzoo.diffcleanse.pipeline import train_diffusion

    generator = torch.Generator().manual_seed(0)
    images = torch.rand(IMAGES, 1, 8, 8, generator=generator) * 2 - 1

    def fit(name: str, resume: bool = False):
        L.seed_everything(0, verbose=False)
        folder = tmp_path / name
        return train_diffusion(
            create_model("micro"),
            images,
            20,
            BATCH,
            2e-3,
            seed=0,
            out_dir=folder,
            resume_dir=folder / "checkpoints",
            resume=resume,
        )

    straight = fit("straight")
    with testing.interrupt_training(2), pytest.raises(testing.TrainingInterrupted):
        fit("cut")
    resumed = fit("cut", resume=True)
    assert resumed.losses == straight.losses and len(resumed.losses) == 20
    for key, value in straight.unet.state_dict().items():
        assert torch.equal(value, resumed.unet.state_dict()[key]), key
