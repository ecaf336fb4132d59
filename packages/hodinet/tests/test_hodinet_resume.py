"""``train --resume``: a run interrupted after an epoch's checkpoint and resumed gives the
uninterrupted run's weights, losses and CSV log, bit for bit (in process, one CPU thread)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from paperzoo.core import testing
from paperzoo.core.checkpoint import load_state_dict
from paperzoo.hodinet.cli import main

from .conftest import write_set

# 40 generated scenes at batch 8: 5 steps an epoch, so 12 steps end in a partial third epoch
STEPS_RUN = ["train", "--n_scenes", "40", "--batch_size", "8", "--steps", "12", "--img_size", "32"]


def _folder_run(root: Path) -> list[str]:
    """8 augmented folder images at batch 2 with depth dropout: 4 steps an epoch, 3 epochs, the LR
    x0.1 after 2."""
    write_set(root / "RGBD_for_train", stems=tuple("abcdefgh"))
    return ["train", "--data", str(root), "--batch_size", "2", "--epochs", "3", "--depth_dropout", "0.3",
            "--img_size", "32"]


def _log_every_two_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """Log the loss every 2 steps (Lightning's default 50 leaves the tiny runs' CSV empty)."""
    from paperzoo.core import lightning as core_lightning

    make_trainer = core_lightning.make_trainer
    monkeypatch.setattr(core_lightning, "make_trainer",
                        lambda *args, **kwargs: make_trainer(*args, log_every_n_steps=2, **kwargs))


@pytest.fixture
def csv_every_two_steps(monkeypatch):
    _log_every_two_steps(monkeypatch)


@pytest.fixture(scope="module")
def straight_steps_run(tmp_path_factory) -> Path:
    """The uninterrupted run of ``STEPS_RUN``, shared by the steps tests."""
    out = tmp_path_factory.mktemp("steps") / "straight"
    with pytest.MonkeyPatch.context() as monkeypatch:
        _log_every_two_steps(monkeypatch)
        assert main([*STEPS_RUN, "--out", str(out)]) == 0
    assert _results(out)["csv"].count("\n") == 1 + 6  # header, steps 1, 3, ..., 11
    return out


def _results(out: Path) -> dict:
    """What a training run wrote, less its wall time."""
    metrics = json.loads((out / "metrics.json").read_text())
    metrics.pop("train_seconds")
    csv = out / "logs" / "metrics.csv"
    return {"metrics": metrics, "meta": json.loads((out / "model.safetensors.json").read_text()),
            "csv": csv.read_text() if csv.is_file() else None}


def _check_same_run(straight: Path, resumed: Path) -> None:
    expected, found = load_state_dict(straight / "model.safetensors"), load_state_dict(resumed / "model.safetensors")
    assert sorted(expected) == sorted(found)
    different = [k for k in expected if not torch.equal(expected[k], found[k])]
    assert not different, f"{len(different)} tensors differ after --resume, e.g. {different[:3]}"
    assert _results(resumed) == _results(straight)


def _interrupt_and_resume(args: list[str], out: Path, after_saves: int) -> None:
    with testing.interrupt_training(after_saves), pytest.raises(testing.TrainingInterrupted):
        main([*args, "--out", str(out)])
    assert not (out / "metrics.json").exists() and (out / "checkpoints" / "last.ckpt").is_file()
    assert main([*args, "--out", str(out), "--resume"]) == 0


@pytest.mark.usefixtures("csv_every_two_steps")
def test_resumed_steps_run_equals_the_uninterrupted_one(tmp_path, straight_steps_run):
    _interrupt_and_resume(STEPS_RUN, tmp_path / "cut", after_saves=1)  # after 5 of 12 steps
    _check_same_run(straight_steps_run, tmp_path / "cut")


@pytest.mark.usefixtures("csv_every_two_steps")
def test_resume_after_the_last_checkpoint_trains_no_more(tmp_path, straight_steps_run):
    """A crash after the last epoch's checkpoint (12 steps), before the results were written."""
    _interrupt_and_resume(STEPS_RUN, tmp_path / "cut", after_saves=3)
    assert torch.load(tmp_path / "cut" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 12
    _check_same_run(straight_steps_run, tmp_path / "cut")


@pytest.mark.usefixtures("csv_every_two_steps")
def test_resumed_folder_run_with_augmentation_equals_the_uninterrupted_one(tmp_path):
    """The augmentation's generator lives in the dataset; the LR drop falls after the resume."""
    args = _folder_run(tmp_path / "data")
    assert main([*args, "--out", str(tmp_path / "straight")]) == 0
    _interrupt_and_resume(args, tmp_path / "cut", after_saves=1)
    _check_same_run(tmp_path / "straight", tmp_path / "cut")


def test_checkpoint_loads_weights_only_with_the_training_records(tmp_path):
    args = _folder_run(tmp_path / "data")
    with testing.interrupt_training(2), pytest.raises(testing.TrainingInterrupted):
        main([*args, "--out", str(tmp_path / "cut")])
    checkpoint = torch.load(tmp_path / "cut" / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["epoch"] == 1 and checkpoint["global_step"] == 8 and checkpoint["optimizer_states"]
    records = checkpoint["hodinet_training"]
    assert len(records["loss_history"]) == 8 and records["train_seconds"] > 0
    generators = checkpoint["callbacks"]["ResumeCheckpoint"]["random_states"]["generators"]
    assert "module.data_generator" in generators


def test_library_resume_needs_a_folder_and_saves_nothing_without_one(tmp_path):
    from paperzoo.hodinet import SyntheticRGBDScenes, create_model, train_sod

    scenes = SyntheticRGBDScenes(16, size=32, seed=0)
    with pytest.raises(ValueError, match="resume=True needs resume_dir"):
        train_sod(create_model("tiny", img_size=32), scenes, steps=1, batch_size=8, resume=True)
    with pytest.raises(FileNotFoundError, match="--resume: no checkpoint"):
        train_sod(create_model("tiny", img_size=32), scenes, steps=1, batch_size=8,
                  resume_dir=tmp_path / "none", resume=True)
    run = train_sod(create_model("tiny", img_size=32), scenes, steps=2, batch_size=8, out_dir=tmp_path / "run")
    assert run.steps == 2 and not list(tmp_path.rglob("*.ckpt"))
