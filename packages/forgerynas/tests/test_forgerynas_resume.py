"""``--resume`` of the training verbs: a search or a retraining interrupted after a checkpoint
and resumed gives what the run that was never interrupted gives (weights, trace, genotypes,
metrics), including a search interrupted after a pruning epoch and a retraining interrupted
around a restart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from paperzoo.core import testing
from paperzoo.core.checkpoint import load_state_dict
from paperzoo.forgerynas.cli import main
from paperzoo.forgerynas.module import SEARCH_STATE, TRAIN_STATE

from .conftest import toy_frames

# 3 epochs, warm-up 1 and a prune at epoch 2 (the tiny preset's schedule scaled to 3 epochs)
SEARCH = ["--epochs", "3", "--batches_per_epoch", "2", "--C", "4", "--layers", "2"]
SEARCH += ["--steps", "2", "--K", "2", "--device", "cpu"]
TRAIN = ["--C", "4", "--layers", "4", "--epochs", "3", "--batch_size", "8"]
TRAIN += ["--batches_per_epoch", "2", "--flips", "true", "--drop_path", "0.2"]
TRAIN += ["--lr_warmup_epochs", "0.5", "--device", "cpu"]
# the first attempt is stopped after epoch 1 (unless its validation AUC is 1), the second runs 3
RESTARTS = ["--restarts", "1", "--restart_check_epoch", "1", "--restart_min_val_auc", "0.999999"]


def _metrics(out: Path) -> dict:
    """metrics.json without the wall times."""
    metrics = json.loads((out / "metrics.json").read_text())
    return {k: v for k, v in metrics.items() if not k.endswith("_seconds")}


def _checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _assert_same_tensors(first: dict, second: dict) -> None:
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), f"{key} differs"


def _assert_same_csv_log(straight: Path, cut: Path) -> None:
    """Lightning's CSV log (``logs/metrics.csv``) of the resumed run is the uninterrupted run's,
    as text: the rows logged before the interruption are kept (or both runs wrote none)."""
    log = Path("logs") / "metrics.csv"
    assert (cut / log).is_file() == (straight / log).is_file()
    if (straight / log).is_file():
        assert (cut / log).read_text() == (straight / log).read_text()


def _interrupted_and_resumed(argv: list[str], out: Path, after_saves: int) -> list[Path]:
    """Run ``argv`` into ``out``, stopped after its ``after_saves``-th checkpoint (at the next
    epoch's first batch, or the fit's end), then
    the same command with ``--resume``; returns the checkpoints the interruption left."""
    with testing.interrupt_training(after_saves), pytest.raises(testing.TrainingInterrupted):
        main([*argv, "--out", str(out)])
    assert not (out / "metrics.json").exists()
    left = sorted(out.rglob("last.ckpt"))
    assert main([*argv, "--out", str(out), "--resume"]) == 0
    return left


def test_search_resumed_after_its_pruning_epoch_equals_the_uninterrupted_search(tmp_path, npz_pair):
    a, c = npz_pair
    argv = ["search", "--train", f"npz:{a}", "--arch_val", f"npz:{c}", *SEARCH]
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    assert main([*argv, "--out", str(straight)]) == 0
    left = _interrupted_and_resumed(argv, cut, after_saves=2)
    assert left == [cut / "checkpoints" / "last.ckpt"]

    final = {"s": _checkpoint(straight / "checkpoints" / "last.ckpt")}
    final["c"] = _checkpoint(cut / "checkpoints" / "last.ckpt")
    assert final["s"]["epoch"] == final["c"]["epoch"] == 2
    # both class-balanced samplers' generators are among the saved random states
    generators = final["c"]["callbacks"]["ResumeCheckpoint"]["random_states"]["generators"]
    assert set(generators) == {
        "train_dataloader[arch].batch_sampler.generator",
        "train_dataloader[weight].batch_sampler.generator",
    }
    # the prune at epoch 2 happened before the interruption: the resumed supernet lacks the
    # pruned ops' parameters, as the uninterrupted one does
    assert json.loads((straight / "trace.json").read_text())["epochs"][2]["pruned"]
    _assert_same_tensors(final["s"]["state_dict"], final["c"]["state_dict"])
    for saved, resumed in zip(
        final["s"]["optimizer_states"], final["c"]["optimizer_states"], strict=True
    ):
        assert saved["param_groups"] == resumed["param_groups"]
        for index, state in saved["state"].items():
            _assert_same_tensors(state, resumed["state"][index])
    for kind in ("importance_mean", "importance_count"):
        _assert_same_tensors(final["s"][SEARCH_STATE][kind], final["c"][SEARCH_STATE][kind])
    assert final["s"][SEARCH_STATE]["weight_losses"] == final["c"][SEARCH_STATE]["weight_losses"]
    for name in ("trace.json", "genotype.json", "genotype_alpha.json"):
        assert (cut / name).read_text() == (straight / name).read_text(), name
    assert _metrics(cut) == _metrics(straight)
    # the search logs its weight loss every 50 steps: these 6 steps write no CSV log
    _assert_same_csv_log(straight, cut)


@pytest.mark.parametrize(
    ("restarts", "after_saves", "interrupted_in"),
    [
        ([], 2, ["last.ckpt"]),  # one fit, after its second of three epochs
        ([], 3, ["last.ckpt"]),  # after the last epoch (a crash in the work after the fit)
        (RESTARTS, 1, ["attempt0"]),  # right after the first attempt was stopped
        (RESTARTS, 3, ["attempt0", "attempt1"]),  # the second attempt, after its second epoch
    ],
    ids=[
        "one-fit",
        "after-the-last-epoch",
        "after-a-stopped-attempt",
        "within-the-restarted-attempt",
    ],
)
def test_train_resumed_equals_the_uninterrupted_training(
    tmp_path, npz_pair, restarts, after_saves, interrupted_in
):
    a, c = npz_pair
    argv = ["train", "--genotype", "random:3", "--train_data", f"npz:{a}", "--val_data", f"npz:{c}"]
    argv += [*TRAIN, *restarts]
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    assert main([*argv, "--out", str(straight)]) == 0
    left = _interrupted_and_resumed(argv, cut, after_saves)
    assert [p.parent.name if restarts else p.name for p in left] == interrupted_in

    _assert_same_tensors(
        load_state_dict(straight / "model.safetensors"), load_state_dict(cut / "model.safetensors")
    )
    metrics = _metrics(cut)
    assert metrics == _metrics(straight)
    # a row per epoch (validation AUC), the last fit's: those before the interruption are kept
    assert (straight / "logs" / "metrics.csv").read_text().count("\n") == 4
    _assert_same_csv_log(straight, cut)
    assert metrics.get("attempts", 1) == (2 if restarts else 1)
    folders = ["attempt0", "attempt1"] if restarts else ["."]
    for folder in folders:
        saved = _checkpoint(straight / "checkpoints" / folder / "last.ckpt")
        resumed = _checkpoint(cut / "checkpoints" / folder / "last.ckpt")
        assert saved[TRAIN_STATE] == resumed[TRAIN_STATE]
        _assert_same_tensors(saved["state_dict"], resumed["state_dict"])
    assert saved[TRAIN_STATE]["lr_history"] and saved[TRAIN_STATE]["drop_path_history"]
    # the flips' and the balanced sampler's generators are among the saved random states
    generators = saved["callbacks"]["ResumeCheckpoint"]["random_states"]["generators"]
    assert set(generators) == {
        "module.flip_generator",
        "train_dataloader[0].batch_sampler.generator",
    }
    if restarts:
        assert _checkpoint(cut / "checkpoints" / "attempt0" / "last.ckpt")[TRAIN_STATE]["stopped"]


def test_library_calls_without_a_resume_folder_save_no_checkpoint(tmp_path, monkeypatch):
    from paperzoo.forgerynas.data import TensorFrames
    from paperzoo.forgerynas.pipeline import TrainConfig, build_detector, train_detector

    monkeypatch.chdir(tmp_path)
    images, labels = toy_frames(16)
    frames = TensorFrames(images, labels, name="toy")
    config = TrainConfig(epochs=1, batch_size=8, batches_per_epoch=1)
    train_detector(build_detector("hand_cnn", C=4), frames, config=config)
    assert not list(tmp_path.rglob("*"))
    with pytest.raises(ValueError, match="resume=True needs resume_dir"):
        train_detector(build_detector("hand_cnn", C=4), frames, config=config, resume=True)
    with pytest.raises(FileNotFoundError, match="--resume: no checkpoint"):
        train_detector(
            build_detector("hand_cnn", C=4), frames, config=config, resume_dir="none", resume=True
        )
