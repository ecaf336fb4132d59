"""Resuming an interrupted training: the per-epoch checkpoint, exact continuation, and the CLI's
``--resume`` rules."""

from pathlib import Path

import lightning as L
import pytest
import torch
import yaml

from paperzoo.core import testing
from paperzoo.core.checkpoint import load_state_dict, save_weights
from paperzoo.core.cli import run_cli
from paperzoo.core.data.datamodule import TensorDataModule
from paperzoo.core.lightning import (
    MethodModule,
    ResumeCheckpoint,
    make_trainer,
    resume_checkpoint,
    resume_from,
)

FEATURES = torch.randn(160, 8, generator=torch.Generator().manual_seed(0))
LABELS = torch.randint(0, 3, (160,), generator=torch.Generator().manual_seed(1))


class NoisyClassifier(MethodModule):
    """Draws from every kind of random state a training uses: dropout, torch's global generator
    (input noise), NumPy's and Python's, a shuffling sampler, an epoch LR schedule."""

    def __init__(self, scheduler: str = "step", optimizer: str = "adam") -> None:
        super().__init__(optimizer=optimizer, lr=0.05, scheduler=scheduler, milestones=[2, 3], gamma=0.5,
                         max_epochs=5)
        self.net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Dropout(0.3), torch.nn.Linear(16, 3))

    def training_step(self, batch, batch_idx):
        import random

        import numpy as np

        x, y = batch
        scale = 0.1 + 0.01 * random.random() + 0.01 * float(np.random.rand())  # noqa: NPY002
        loss = torch.nn.functional.cross_entropy(self.net(x + scale * torch.randn_like(x)), y)
        self.log("train_loss", loss, on_step=True, on_epoch=True)  # the epoch row is logged after the save
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", torch.nn.functional.cross_entropy(self.net(x), y))


def _fit(out: Path, resume: bool = False, seed: int = 0, **module_options) -> torch.Tensor:
    L.seed_everything(seed, verbose=False)
    module = NoisyClassifier(**module_options)
    data = TensorDataModule(FEATURES, LABELS, batch_size=16, seed=seed)
    trainer = make_trainer(out, max_epochs=5, device="cpu", logger=False, progress_bar=False,
                           resume_dir=out / "checkpoints")
    trainer.fit(module, datamodule=data, ckpt_path=resume_checkpoint(out / "checkpoints") if resume else None,
                weights_only=True)
    return torch.cat([p.detach().flatten() for p in module.parameters()])


@pytest.mark.parametrize("after", [1, 3])
@pytest.mark.parametrize("scheduler", ["step", "cosine"])
def test_interrupted_and_resumed_training_equals_the_uninterrupted_one(tmp_path, after, scheduler):
    straight = _fit(tmp_path / "straight", scheduler=scheduler)
    with testing.interrupt_training(after), pytest.raises(testing.TrainingInterrupted):
        _fit(tmp_path / "cut", scheduler=scheduler)
    checkpoint = torch.load(tmp_path / "cut" / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["epoch"] == after - 1
    L.seed_everything(1234, verbose=False)  # the resume must not depend on the caller's state
    resumed = _fit(tmp_path / "cut", resume=True, scheduler=scheduler)
    assert torch.equal(resumed, straight)


class ShufflingLoaderData(L.LightningDataModule):
    """A plain ``DataLoader(shuffle=True, generator=g)``: building its iterator draws a base seed
    from ``g`` before Lightning calls ``on_train_start``."""

    def train_dataloader(self):
        dataset = torch.utils.data.TensorDataset(FEATURES[:96], LABELS[:96])
        return torch.utils.data.DataLoader(dataset, batch_size=16, shuffle=True,
                                           generator=torch.Generator().manual_seed(5))


def test_a_plain_shuffling_dataloader_resumes_exactly(tmp_path):
    def fit(out, resume=False):
        L.seed_everything(0, verbose=False)
        module = NoisyClassifier()
        trainer = make_trainer(out, max_epochs=4, device="cpu", logger=False, progress_bar=False,
                               resume_dir=out / "checkpoints", limit_val_batches=0)
        trainer.fit(module, datamodule=ShufflingLoaderData(), weights_only=True,
                    ckpt_path=resume_checkpoint(out / "checkpoints") if resume else None)
        return torch.cat([p.detach().flatten() for p in module.parameters()])

    straight = fit(tmp_path / "straight")
    with testing.interrupt_training(2), pytest.raises(testing.TrainingInterrupted):
        fit(tmp_path / "cut")
    assert torch.equal(fit(tmp_path / "cut", resume=True), straight)


@pytest.mark.parametrize("after", [1, 2, 3])
def test_a_fit_bounded_by_steps_resumes_exactly_and_keeps_its_csv_log(tmp_path, after):
    """max_epochs=-1 with max_steps (an epoch is 6 batches; 16 steps end inside the third): no
    extra batch after the resume, and logs/metrics.csv ends as the uninterrupted run's, also
    when the interruption came after the final checkpoint (the resumed fit trains no more)."""

    def fit(out, resume=False):
        L.seed_everything(0, verbose=False)
        module = NoisyClassifier(scheduler="none")
        trainer = make_trainer(out, max_epochs=-1, max_steps=16, device="cpu", progress_bar=False,
                               resume_dir=out / "checkpoints", log_every_n_steps=1)
        trainer.fit(module, datamodule=TensorDataModule(FEATURES, LABELS, batch_size=16, seed=0),
                    weights_only=True, ckpt_path=resume_checkpoint(out / "checkpoints") if resume else None)
        return torch.cat([p.detach().flatten() for p in module.parameters()]), trainer.global_step

    straight, steps = fit(tmp_path / "straight")
    with testing.interrupt_training(after), pytest.raises(testing.TrainingInterrupted):
        fit(tmp_path / "cut")
    resumed, resumed_steps = fit(tmp_path / "cut", resume=True)
    assert (steps, resumed_steps) == (16, 16)
    assert torch.equal(resumed, straight)
    log = (tmp_path / "straight" / "logs" / "metrics.csv").read_text()
    assert log.count("\n") > 16 and "val_loss" in log and "train_loss_epoch" in log
    assert (tmp_path / "cut" / "logs" / "metrics.csv").read_text() == log


def test_without_the_random_states_the_continuation_differs(tmp_path, monkeypatch):
    """The check above can fail: dropping the saved random states changes the weights."""
    straight = _fit(tmp_path / "straight")
    with testing.interrupt_training(2), pytest.raises(testing.TrainingInterrupted):
        _fit(tmp_path / "cut")
    monkeypatch.setattr(ResumeCheckpoint, "load_state_dict",
                        lambda self, state: ResumeCheckpoint.__mro__[1].load_state_dict(
                            self, {k: v for k, v in state.items() if k != "random_states"}))
    resumed = _fit(tmp_path / "cut", resume=True)
    assert not torch.equal(resumed, straight)


def test_checkpoint_holds_the_sampler_generator_and_loads_weights_only(tmp_path):
    _fit(tmp_path / "run")
    checkpoint = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    states = checkpoint["callbacks"]["ResumeCheckpoint"]["random_states"]
    assert set(states) == {"python", "numpy", "torch", "cuda", "generators"}
    assert list(states["generators"]) == ["train_dataloader[0].sampler.batches.sampler.generator"]
    assert checkpoint["epoch"] == 4 and checkpoint["optimizer_states"]


def test_resume_checkpoint_names_the_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"--resume: no checkpoint .*checkpoints/last.ckpt"):
        resume_checkpoint(tmp_path / "checkpoints")
    with pytest.raises(ValueError, match="every_n_epochs must be >= 1"):
        ResumeCheckpoint(tmp_path, every_n_epochs=0)


def test_resume_from_checks_the_folder_before_any_work(tmp_path):
    assert resume_from(None, False) is None and resume_from(tmp_path, False) is None
    with pytest.raises(ValueError, match="resume=True needs resume_dir, the folder of the search's"):
        resume_from(None, True, what="the search's checkpoints")
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        resume_from(tmp_path, True)
    assert resume_from(tmp_path, True, required=False) is None  # a stage that had not started
    (tmp_path / "last.ckpt").write_bytes(b"")
    assert resume_from(tmp_path, True) == resume_from(tmp_path, True, required=False) == tmp_path / "last.ckpt"


def train(out: Path, seed: int = 0, epochs: int = 4, lr: float = 0.05, resume: bool = False,
          devices: int = 1, num_nodes: int = 1, strategy: str = "auto", precision: str | None = None) -> dict:
    """Train a small classifier.

    Args:
        epochs: training epochs.
        lr: learning rate.
        resume: continue the interrupted run in --out.
    """
    L.seed_everything(seed, verbose=False)
    module = NoisyClassifier(scheduler="none")
    module.lr = lr
    trainer = make_trainer(out, max_epochs=epochs, device="cpu", logger=False, progress_bar=False,
                           resume_dir=out / "checkpoints")
    trainer.fit(module, datamodule=TensorDataModule(FEATURES, LABELS, batch_size=16, seed=seed),
                ckpt_path=resume_checkpoint(out / "checkpoints") if resume else None, weights_only=True)
    save_weights(module.net, out / "net.safetensors")
    (out / "metrics.json").write_text(f'{{"epochs": {trainer.current_epoch}}}')
    return {}


REUSED = []


def tabulate(out: Path, resume: bool = False) -> dict:
    """Not a training command: its own ``resume`` option (reuse finished jobs).

    Args:
        resume: reuse the jobs of an earlier run.
    """
    REUSED.append(resume)
    return {}


def main(argv=None):
    return run_cli("paperzoo-test", {"train": train, "tabulate": tabulate}, argv)


def test_a_resume_option_of_a_command_that_does_not_train_is_its_own(tmp_path):
    out = tmp_path / "t"
    assert main(["tabulate", "--out", str(out)]) == 0
    assert main(["tabulate", "--out", str(out), "--overwrite", "--resume", "true"]) == 0
    assert REUSED == [False, True]


def test_cli_resume_continues_an_interrupted_run_exactly(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "straight"), "--seed", "3"]) == 0
    cut = tmp_path / "cut"
    with testing.interrupt_training(2), pytest.raises(testing.TrainingInterrupted):
        main(["train", "--out", str(cut), "--seed", "3"])
    err = capsys.readouterr().err
    assert f"stopped after saving {cut / 'checkpoints' / 'last.ckpt'}" in err and "--resume" in err
    assert (cut / "config.yaml").is_file() and not (cut / "metrics.json").exists()
    # without --resume the folder is refused, with the hint
    assert main(["train", "--out", str(cut), "--seed", "3"]) == 2
    assert "holds an interrupted run" in capsys.readouterr().err
    # other options than the run's are refused, naming them
    assert main(["train", "--out", str(cut), "--seed", "3", "--epochs", "6", "--resume"]) == 2
    assert "--epochs: 4 in the run, 6 now" in capsys.readouterr().err
    assert main(["train", "--out", str(cut), "--resume", "--threads", "1"]) == 2
    assert "--seed: 3 in the run, 0 now" in capsys.readouterr().err
    assert main(["train", "--out", str(cut), "--seed", "3", "--resume", "--overwrite"]) == 2
    assert "pass one of them" in capsys.readouterr().err
    config = (cut / "config.yaml").read_text()
    # the folder may be spelt otherwise, and --threads may change
    assert main(["train", "--out", f"{cut}/", "--seed", "3", "--resume", "--threads", "1"]) == 0
    assert (cut / "config.yaml").read_text() == config and yaml.safe_load(config)["resume"] is False
    straight = load_state_dict(tmp_path / "straight" / "net.safetensors")
    resumed = load_state_dict(cut / "net.safetensors")
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    # a finished run has nothing to resume
    assert main(["train", "--out", str(cut), "--seed", "3", "--resume"]) == 2
    assert "holds a finished run" in capsys.readouterr().err


def test_cli_resume_refuses_a_folder_it_cannot_continue(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "none"), "--resume"]) == 2
    assert "config.yaml not found" in capsys.readouterr().err
    empty = tmp_path / "no_checkpoint"
    empty.mkdir()
    (empty / "config.yaml").write_text("seed: 0\n")
    assert main(["train", "--out", str(empty), "--resume"]) == 2
    assert "holds no checkpoint" in capsys.readouterr().err


def test_a_failure_after_a_resumed_checkpoint_keeps_the_config(tmp_path):
    """A run interrupted twice resumes twice: the config stays with its checkpoints."""
    cut = tmp_path / "cut"
    with testing.interrupt_training(1), pytest.raises(testing.TrainingInterrupted):
        main(["train", "--out", str(cut)])
    with testing.interrupt_training(1), pytest.raises(testing.TrainingInterrupted):
        main(["train", "--out", str(cut), "--resume"])
    assert (cut / "config.yaml").is_file()
    assert torch.load(cut / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 1
    assert main(["train", "--out", str(cut), "--resume"]) == 0
    assert (cut / "metrics.json").read_text() == '{"epochs": 4}'
