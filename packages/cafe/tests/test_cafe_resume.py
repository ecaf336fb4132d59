"""``defend --resume``: a run interrupted in its clean or its defended training and resumed gives
the uninterrupted run's weights bit for bit and the same metrics (the attack after training
reruns under the seed)."""

import json

import pytest
import torch

from paperzoo.cafe.cli import main
from paperzoo.cafe.module import DEFENSE_GENERATOR_KEY, VFLClassifier
from paperzoo.core import testing
from paperzoo.core.checkpoint import load_state_dict

# 3 epochs per training: resume checkpoints 1-3 are the clean training's, 4-6 the defended one's
DEFEND = ["defend", "--scenario.defense.name", "noise", "--scenario.defense.noise_std", "0.01", "--epochs", "3",
          "--attack_iters", "5", "--scenario.n_samples", "20", "--scenario.batch_size", "10"]
NEVER = 10**6  # interrupt_training(NEVER) only counts the checkpoints a run saves
TIMINGS = ("attack_seconds", "attack_iters_per_s")  # wall-clock, not results


def _results(out):
    metrics = json.loads((out / "metrics.json").read_text())
    return {k: v for k, v in metrics.items() if k not in TIMINGS}


def _checkpoint_weights(out, stage):
    return torch.load(out / "checkpoints" / stage / "last.ckpt", weights_only=True)["state_dict"]


def _assert_same_weights(first, second):
    assert first.keys() == second.keys()
    different = [k for k in first if not torch.equal(first[k], second[k])]
    assert not different, f"weights differ: {different[:5]}"


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    out = tmp_path_factory.mktemp("cafe_resume") / "straight"
    assert main([*DEFEND, "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("after", [2, 5], ids=["in_clean", "in_defended"])
def test_defend_interrupted_and_resumed_equals_the_uninterrupted_run(straight, tmp_path, after):
    cut = tmp_path / "cut"
    with testing.interrupt_training(after), pytest.raises(testing.TrainingInterrupted):
        main([*DEFEND, "--out", str(cut)])
    assert not (cut / "metrics.json").exists()
    with testing.interrupt_training(NEVER) as saves:
        assert main([*DEFEND, "--out", str(cut), "--resume"]) == 0
    assert saves["count"] == 6 - after  # it continued: only the epochs left were trained
    _assert_same_weights(load_state_dict(straight / "vfl_model.safetensors"),
                         load_state_dict(cut / "vfl_model.safetensors"))
    for stage in ("clean", "defended"):
        _assert_same_weights(_checkpoint_weights(straight, stage), _checkpoint_weights(cut, stage))
    assert _results(cut) == _results(straight)


def test_checkpoint_loads_weights_only_with_the_defence_generator(straight):
    checkpoint = torch.load(straight / "checkpoints" / "defended" / "last.ckpt", weights_only=True)
    assert checkpoint["epoch"] == 2 and checkpoint["optimizer_states"]
    assert isinstance(checkpoint[DEFENSE_GENERATOR_KEY], torch.Tensor)
    assert "random_states" in checkpoint["callbacks"]["ResumeCheckpoint"]
    clean = torch.load(straight / "checkpoints" / "clean" / "last.ckpt", weights_only=True)
    assert DEFENSE_GENERATOR_KEY not in clean  # no defence, no generator


def test_without_the_defence_generator_the_resumed_run_differs(straight, tmp_path, monkeypatch):
    """The check above can fail: a resume that does not restore the defence's noise generator
    redraws the noise of the defended training's first epoch, and its weights differ."""
    cut = tmp_path / "cut"
    with testing.interrupt_training(5), pytest.raises(testing.TrainingInterrupted):
        main([*DEFEND, "--out", str(cut)])
    monkeypatch.setattr(VFLClassifier, "on_load_checkpoint", lambda self, checkpoint: None)
    assert main([*DEFEND, "--out", str(cut), "--resume"]) == 0
    straight_weights = load_state_dict(straight / "vfl_model.safetensors")
    resumed_weights = load_state_dict(cut / "vfl_model.safetensors")
    assert not all(torch.equal(straight_weights[k], resumed_weights[k]) for k in straight_weights)


def test_library_calls_without_a_resume_folder_write_no_checkpoint(tmp_path, monkeypatch):
    from paperzoo.cafe.pipeline import run_utility

    monkeypatch.chdir(tmp_path)
    run_utility(parties=2, epochs=1, batch_size=200)
    assert not list(tmp_path.rglob("*.ckpt"))
    with pytest.raises(ValueError, match="resume=True needs resume_dir"):
        run_utility(parties=2, epochs=1, resume=True)
