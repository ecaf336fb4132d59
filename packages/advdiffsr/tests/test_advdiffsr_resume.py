"""``train --resume``: a run interrupted after some epoch checkpoints and continued gives the
uninterrupted run's weights, losses and logs bit for bit (one fit, the RWAE's noise stream, and
the four fits of ``--lambda_pde auto``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from paperzoo.advdiffsr.cli import main
from paperzoo.advdiffsr.module import RESUME_STATE_KEY
from paperzoo.core import testing
from paperzoo.core.checkpoint import load_state_dict

# 2 sequences of 10 frames, windows of 4: 14 windows, 4 steps per epoch of batch 4
TINY = ["--preset", "tiny", "--window", "4", "--batch_size", "4", "--seed", "1"]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    from paperzoo.advdiffsr.data import simulate_dataset

    out = tmp_path_factory.mktemp("advdiffsr-resume-data")
    simulate_dataset(out, n_train=2, n_val=2, n_test=1, hr=32, scale=4, frames=10, seed=0)
    return out


def _train(data: Path, out: Path, options: list[str], *extra: str) -> int:
    return main(["train", "--data", str(data), "--out", str(out), *TINY, *options, *extra])


def _straight_and_resumed(data: Path, tmp_path: Path, options: list[str], after: int):
    """An uninterrupted run, and one stopped after ``after`` checkpoints then resumed."""
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    assert _train(data, straight, options) == 0
    with testing.interrupt_training(after), pytest.raises(testing.TrainingInterrupted):
        _train(data, cut, options)
    assert not (cut / "metrics.json").exists() and (cut / "config.yaml").is_file()
    assert _train(data, cut, options, "--resume") == 0
    return straight, cut


def _table_without_seconds(run: Path) -> list[list[str]]:
    """The cells of ``results.md``'s table, less the wall times (a ``seconds`` column or row)."""
    lines = [line for line in (run / "results.md").read_text().splitlines() if line.startswith("|")]
    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    header = cells[0]
    keep = [i for i, name in enumerate(header) if name != "seconds"]
    return [[row[i] for i in keep] for row in cells if "seconds" not in row[:1]]


def _assert_same_training(straight: Path, cut: Path, checkpoints: list[str]) -> None:
    """Bit-identical weights, training metrics (all but the wall time), the per-step loss
    history every fit's last checkpoint holds, and Lightning's CSV log when written."""
    weights, resumed = (
        load_state_dict(straight / "model.safetensors"),
        load_state_dict(cut / "model.safetensors"),
    )
    assert weights.keys() == resumed.keys()
    for name in weights:
        assert torch.equal(weights[name], resumed[name]), f"{name} differs after the resume"
    metrics = [json.loads((run / "metrics.json").read_text()) for run in (straight, cut)]
    for run_metrics in metrics:
        run_metrics.pop("seconds")
    assert metrics[0] == metrics[1]
    assert _table_without_seconds(straight) == _table_without_seconds(cut)
    for stage in checkpoints:
        states = [
            torch.load(run / stage / "last.ckpt", weights_only=True)[RESUME_STATE_KEY]
            for run in (straight, cut)
        ]
        assert states[0]["history"] == states[1]["history"], f"{stage}: loss history differs"
    log = Path("logs") / "metrics.csv"
    assert (straight / log).is_file() == (cut / log).is_file()
    if (straight / log).is_file():
        assert (straight / log).read_text() == (cut / log).read_text()


@pytest.mark.parametrize("after", [13, 15])
def test_physics_resumed_mid_run_equals_the_uninterrupted_run_and_keeps_the_csv_log(
    tiny_data, tmp_path, after
):
    """60 steps, 15 epochs: cut after epoch 13 (step 52) or after the last one (step 60), after
    Lightning's CSV row of step 49."""
    straight, cut = _straight_and_resumed(
        tiny_data, tmp_path, ["--lambda_pde", "1.0", "--steps", "60"], after=after
    )
    assert "49" in (straight / "logs" / "metrics.csv").read_text()
    _assert_same_training(straight, cut, ["checkpoints"])
    saved = torch.load(cut / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["global_step"] == 60 and len(saved[RESUME_STATE_KEY]["history"]) == 60
    assert saved["optimizer_states"] and saved["lr_schedulers"]


def test_rwae_resumed_mid_run_continues_its_noise_stream(tiny_data, tmp_path):
    """10 steps (epochs of 4, 4, 2): cut after the first epoch; the RWAE draws its posterior
    noise and MMD picks from the module's generator, whose state the checkpoint holds."""
    options = ["--model", "rwae", "--lambda_pde", "1.0", "--static_latent", "2", "--steps", "10"]
    straight, cut = _straight_and_resumed(tiny_data, tmp_path, options, after=1)
    _assert_same_training(straight, cut, ["checkpoints"])
    saved = torch.load(cut / "checkpoints" / "last.ckpt", weights_only=True)
    (noise_state,) = saved[RESUME_STATE_KEY]["noise_generator_states"]
    assert isinstance(noise_state, torch.Tensor)


@pytest.mark.parametrize("after", [5, 11])
def test_auto_weight_choice_resumed_inside_a_candidate_or_the_chosen_fit(
    tiny_data, tmp_path, after
):
    """``--lambda_pde auto`` fits hard, soft 0.3, soft 3 (hold-out candidates) and the chosen
    setting, 3 checkpoints each: cut inside soft 0.3 (5) or inside the chosen fit (11)."""
    stages = ["hard", "soft_0.3", "soft_3", "chosen"]
    options = ["--model", "physics", "--lambda_pde", "auto", "--steps", "10"]
    straight, cut = _straight_and_resumed(tiny_data, tmp_path, options, after=after)
    # with the candidates' rows (hold-out errors) in results.md
    _assert_same_training(straight, cut, [f"checkpoints/{stage}" for stage in stages])
    assert len(_table_without_seconds(cut)) == 2 + len(stages) - 1


def test_interrupted_checkpoint_loads_weights_only_with_the_package_state(tiny_data, tmp_path):
    """The checkpoint of an interrupted RWAE run loads with ``weights_only=True`` and holds the
    loss history so far and the noise generator's state; ``--resume`` then finishes the run."""
    options = ["--model", "rwae", "--lambda_pde", "1.0", "--steps", "10"]
    cut = tmp_path / "cut"
    with testing.interrupt_training(2), pytest.raises(testing.TrainingInterrupted):
        _train(tiny_data, cut, options)
    saved = torch.load(cut / "checkpoints" / "last.ckpt", weights_only=True)
    state = saved[RESUME_STATE_KEY]
    assert saved["global_step"] == 8 and [r["step"] for r in state["history"]] == list(range(8))
    (noise_state,) = state["noise_generator_states"]
    assert isinstance(noise_state, torch.Tensor) and saved["optimizer_states"]
    assert _train(tiny_data, cut, options, "--resume") == 0
    assert json.loads((cut / "metrics.json").read_text())["steps"] == 10
    assert (cut / "model.safetensors").is_file()


def test_library_training_without_a_resume_folder_saves_no_checkpoint(tiny_data, tmp_path):
    from paperzoo.advdiffsr.pipeline import TrainConfig, train_sr

    config = TrainConfig(preset="tiny", steps=1, window=4)
    train_sr(tiny_data / "train_lr.npz", config, out_dir=tmp_path)
    assert not list(tmp_path.rglob("*.ckpt"))
    with pytest.raises(ValueError, match="resume=True needs resume_dir"):
        train_sr(tiny_data / "train_lr.npz", config, resume=True)
