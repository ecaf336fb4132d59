"""``train --resume``: a run interrupted after an epoch and resumed gives the uninterrupted run's
weights, metrics and CSV log exactly; the checkpoint loads with ``weights_only=True``."""

from __future__ import annotations

import json

import pytest
import torch

from paperzoo.core import testing
from paperzoo.core.checkpoint import load_state_dict
from paperzoo.rsknet.cli import main
from paperzoo.rsknet.module import RESUME_STATE
from paperzoo.rsknet.synth import make_corpus

EPOCHS = 3  # 3 steps an epoch (12 training utterances, batch 4)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"), "procedural", train_speakers=4, train_utts=3,
                       test_speakers=3, test_utts=2, seed=1)


def _train_args(corpus, out) -> list[str]:
    return ["train", "--data", str(corpus.train_root), "--model", "rsknet_mtsp_tiny", "--epochs", str(EPOCHS),
            "--batch_size", "4", "--crop_s", "0.8", "--trials", str(corpus.trials), "--seed", "2",
            "--threads", "1", "--out", str(out)]  # one thread also in the module-scoped run below


@pytest.fixture(scope="module")
def straight(corpus, tmp_path_factory):
    """The run never interrupted."""
    out = tmp_path_factory.mktemp("straight") / "run"
    assert main(_train_args(corpus, out)) == 0
    return out


def _interrupt_and_resume(corpus, out, after_saves: int) -> None:
    with testing.interrupt_training(after_saves), pytest.raises(testing.TrainingInterrupted):
        main(_train_args(corpus, out))
    assert not (out / "metrics.json").exists()
    assert main([*_train_args(corpus, out), "--resume"]) == 0


def _assert_same_results(run, straight) -> None:
    expected, resumed = load_state_dict(straight / "model.safetensors"), load_state_dict(run / "model.safetensors")
    assert expected.keys() == resumed.keys()
    different = [name for name in expected if not torch.equal(expected[name], resumed[name])]
    assert not different, f"weights differ after the resume: {different[:5]}"
    metrics, metrics_resumed = (json.loads((folder / "metrics.json").read_text()) for folder in (straight, run))
    metrics.pop("train_seconds"), metrics_resumed.pop("train_seconds")
    assert metrics_resumed == metrics
    assert (run / "logs" / "metrics.csv").read_text() == (straight / "logs" / "metrics.csv").read_text()


@pytest.mark.parametrize("after_saves", [1, 2, EPOCHS])  # mid-run, and after the final epoch's checkpoint
def test_an_interrupted_and_resumed_train_equals_the_uninterrupted_one(corpus, straight, tmp_path, after_saves):
    run = tmp_path / "run"
    _interrupt_and_resume(corpus, run, after_saves)
    _assert_same_results(run, straight)


def test_a_run_interrupted_twice_resumes_twice(corpus, straight, tmp_path):
    run = tmp_path / "run"
    with testing.interrupt_training(1), pytest.raises(testing.TrainingInterrupted):
        main(_train_args(corpus, run))
    with testing.interrupt_training(1), pytest.raises(testing.TrainingInterrupted):
        main([*_train_args(corpus, run), "--resume"])
    assert main([*_train_args(corpus, run), "--resume"]) == 0
    _assert_same_results(run, straight)


def test_the_checkpoint_loads_weights_only_with_the_crops_and_the_epoch_values(straight):
    checkpoint = torch.load(straight / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["epoch"] == EPOCHS - 1 and checkpoint["optimizer_states"]
    generators = checkpoint["callbacks"]["ResumeCheckpoint"]["random_states"]["generators"]
    assert "datamodule.crop_generator" in generators
    state = checkpoint[RESUME_STATE]
    assert set(state["metrics"]) >= {"train_loss_epoch", "val_eer", "val_mindcf001"}


def test_without_the_crop_generator_state_the_resumed_weights_differ(corpus, straight, tmp_path, monkeypatch):
    """The comparison above can fail: a resume that restarts the random crops from the seed
    trains on other crops."""
    from paperzoo.rsknet.data import VerificationDataModule

    setup = VerificationDataModule.setup

    def setup_without_the_attribute(self, stage=None):
        setup(self, stage)
        self.crop_generator = None  # out of the core's sight: the generator stays as seeded

    run = tmp_path / "run"
    with testing.interrupt_training(1), pytest.raises(testing.TrainingInterrupted):
        main(_train_args(corpus, run))
    monkeypatch.setattr(VerificationDataModule, "setup", setup_without_the_attribute)
    with pytest.warns(UserWarning, match="datamodule.crop_generator"):
        assert main([*_train_args(corpus, run), "--resume"]) == 0
    expected, resumed = load_state_dict(straight / "model.safetensors"), load_state_dict(run / "model.safetensors")
    assert not all(torch.equal(expected[name], resumed[name]) for name in expected)
