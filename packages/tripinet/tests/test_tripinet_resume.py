"""``train --resume``: a run stopped right after one of its per-epoch checkpoints and resumed
gives the uninterrupted run's weights, loss history, metrics and CSV log, bit for bit; the
checkpoint loads with ``torch.load(weights_only=True)``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from paperzoo.core import testing
from paperzoo.core.checkpoint import load_state_dict
from paperzoo.tripinet.cli import main

# 8 generated training images in batches of 2: 4 steps per epoch, 13 checkpoints in 52 steps;
# Lightning logs train_loss every 50 steps, so logs/metrics.csv holds the row of step 50
SYNTHETIC = [
    "train",
    "--data.num_train",
    "8",
    "--data.num_test",
    "4",
    "--data.batch_size",
    "2",
    "--data.crop",
    "32",
    "--steps",
    "52",
    "--device",
    "cpu",
]
HISTORY = "TriPINetLossHistory"
DATA_GENERATORS = "TriPINetDatasetGenerators"


def _checkpoint(run: Path) -> dict:
    return torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)


def _assert_same_run(resumed: Path, straight: Path) -> None:
    """Weights, loss history, optimiser state, metrics (but the wall time), hparams.yaml and
    the CSV log equal."""
    weights, expected = (
        load_state_dict(resumed / "model.safetensors"),
        load_state_dict(straight / "model.safetensors"),
    )
    assert weights.keys() == expected.keys()
    assert all(torch.equal(weights[k], expected[k]) for k in expected)
    metrics = json.loads((resumed / "metrics.json").read_text())
    expected_metrics = json.loads((straight / "metrics.json").read_text())
    assert metrics.pop("train_seconds") > 0
    expected_metrics.pop("train_seconds")
    assert metrics == expected_metrics
    last, expected_last = _checkpoint(resumed), _checkpoint(straight)
    assert last["callbacks"][HISTORY]["losses"] == expected_last["callbacks"][HISTORY]["losses"]
    assert last["global_step"] == expected_last["global_step"]
    state, expected_state = (
        last["optimizer_states"][0]["state"],
        expected_last["optimizer_states"][0]["state"],
    )
    assert all(
        torch.equal(state[i][name], expected_state[i][name])
        for i in expected_state
        for name in ("exp_avg", "exp_avg_sq")
    )
    for name in ("metrics.csv", "hparams.yaml"):  # metrics.csv: a row every 50 steps
        log, expected_log = resumed / "logs" / name, straight / "logs" / name
        assert log.is_file() == expected_log.is_file()
        assert not log.is_file() or log.read_text() == expected_log.read_text()


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("straight") / "run"
    assert main([*SYNTHETIC, "--out", str(run)]) == 0
    return run


def test_the_uninterrupted_run_saves_a_checkpoint_that_loads_weights_only(straight):
    checkpoint = _checkpoint(straight)
    assert checkpoint["epoch"] == 12 and checkpoint["global_step"] == 52
    assert len(checkpoint["callbacks"][HISTORY]["losses"]) == 52
    (generators,) = checkpoint["callbacks"][DATA_GENERATORS]["per_rank"]
    assert list(generators) == ["train_dataloader[0].dataset.generator"]
    assert (straight / "logs" / "metrics.csv").read_text().splitlines()[1].split(",")[1] == "49"


@pytest.mark.parametrize("after", [5, 12])
def test_train_resumed_mid_run_equals_the_uninterrupted_run(tmp_path, straight, after):
    cut = tmp_path / "cut"
    with testing.interrupt_training(after), pytest.raises(testing.TrainingInterrupted):
        main([*SYNTHETIC, "--out", str(cut)])
    checkpoint = _checkpoint(cut)
    assert checkpoint["epoch"] == after - 1 and checkpoint["global_step"] == 4 * after
    assert len(checkpoint["callbacks"][HISTORY]["losses"]) == 4 * after
    assert not (cut / "metrics.json").exists()
    if after == 12:
        # a crash two steps after this checkpoint would have logged step 50's loss: the
        # resumed run logs that step again, and its row must not be there twice
        (cut / "logs" / "metrics.csv").write_text("epoch,step,train_loss\n12,49,0.5\n")
    assert main([*SYNTHETIC, "--out", str(cut), "--resume"]) == 0
    _assert_same_run(cut, straight)


def test_train_stopped_after_its_last_step_resumes_to_the_same_results(tmp_path, straight):
    """A crash after training (while scoring): the resumed run restores the trained weights and
    trains no more; the CSV row logged before the checkpoint is kept."""
    cut = tmp_path / "cut"
    with testing.interrupt_training(13), pytest.raises(testing.TrainingInterrupted):
        main([*SYNTHETIC, "--out", str(cut)])
    assert (cut / "logs" / "metrics.csv").is_file() and not (cut / "model.safetensors").exists()
    assert main([*SYNTHETIC, "--out", str(cut), "--resume"]) == 0
    _assert_same_run(cut, straight)


def _folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    (root / "Tp").mkdir(parents=True)
    (root / "Gt").mkdir()
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (48, 72, 3), dtype=np.uint8)).save(
            root / "Tp" / f"t{i}.png"
        )
        mask = np.zeros((48, 72), dtype=np.uint8)
        mask[10 + i : 30, 20:50] = 255
        Image.fromarray(mask).save(root / "Gt" / f"t{i}.png")
    return root


def test_train_on_a_folder_layout_resumes_its_random_crops_exactly(tmp_path):
    """Real layouts crop at random from the data set's own generator (4 training images,
    batch 2: 2 steps per epoch, 3 checkpoints in 5 steps)."""
    data = _folder(tmp_path / "data")
    args = [
        "train",
        "--data.layout",
        "folder",
        "--data.root",
        str(data),
        "--data.crop",
        "32",
        "--data.batch_size",
        "2",
        "--data.test_fraction",
        "0.34",
        "--steps",
        "5",
        "--model.streams",
        '["rgb","noise"]',
        "--device",
        "cpu",
    ]
    assert main([*args, "--out", str(tmp_path / "straight")]) == 0
    cut = tmp_path / "cut"
    with testing.interrupt_training(1), pytest.raises(testing.TrainingInterrupted):
        main([*args, "--out", str(cut)])
    (generators,) = _checkpoint(cut)["callbacks"][DATA_GENERATORS]["per_rank"]
    assert list(generators) == ["train_dataloader[0].dataset.generator"]
    assert main([*args, "--out", str(cut), "--resume"]) == 0
    _assert_same_run(cut, tmp_path / "straight")


def test_train_localizer_resumes_from_python(tmp_path, small_train):
    from torch.utils.data import DataLoader

    from paperzoo.tripinet.data import ForgeryDataset
    from paperzoo.tripinet.model import create_model
    from paperzoo.tripinet.pipeline import train_localizer

    def fit(folder: Path, resume: bool = False):
        torch.manual_seed(0)
        net = create_model("tiny", streams=("rgb",))
        loader = DataLoader(
            ForgeryDataset(small_train.subset(range(8)), augment=True, seed=3),
            batch_size=4,
            shuffle=True,
            generator=torch.Generator().manual_seed(3),
        )
        options = dict(steps=6, seed=3, progress_bar=False, resume_dir=folder, resume=resume)
        return train_localizer(net, loader, **options)

    straight = fit(tmp_path / "straight")
    with testing.interrupt_training(1), pytest.raises(testing.TrainingInterrupted):
        fit(tmp_path / "cut")
    torch.manual_seed(1234)  # the resume does not depend on the caller's random state
    resumed = fit(tmp_path / "cut", resume=True)
    assert resumed.losses == straight.losses and len(resumed.losses) == 6
    expected = straight.net.state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in resumed.net.state_dict().items())
    with pytest.raises(ValueError, match="resume=True needs resume_dir"):
        train_localizer(resumed.net, [], steps=1, resume=True)
    with pytest.raises(FileNotFoundError, match="--resume: no checkpoint"):
        train_localizer(resumed.net, [], steps=1, resume_dir=tmp_path / "none", resume=True)
