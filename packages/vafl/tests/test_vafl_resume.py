"""``train --resume`` for the Lightning references (``--runtime central`` and ``single``): a run
interrupted after an epoch's checkpoint and resumed gives the uninterrupted run's weights bit for bit and the
same metrics; the federated runtimes refuse ``--resume``."""

import json

import pytest
import torch

from paperzoo.core import testing
from paperzoo.core.checkpoint import load_state_dict
from paperzoo.vafl import cli

CENTRAL = ["train", "--dataset", "breast_cancer", "--runtime", "central", "--epochs", "4"]
# 3 epochs per party: resume checkpoints 1-3 are party 0's, 4-6 party 1's, 7-9 party 2's, ...
SINGLE = ["train", "--dataset", "breast_cancer", "--runtime", "single", "--epochs", "3",
          "--federation.preset", "tiny"]
NEVER = 10**6  # interrupt_training(NEVER) only counts the checkpoints a run saves


def _assert_same_weights(first, second):
    assert first.keys() == second.keys()
    different = [k for k in first if not torch.equal(first[k], second[k])]
    assert not different, f"weights differ: {different[:5]}"


def _checkpoints(out):
    return {str(p.relative_to(out)): torch.load(p, weights_only=True) for p in sorted(out.rglob("last.ckpt"))}


@pytest.mark.parametrize(("argv", "after", "total"), [(CENTRAL, 2, 4), (SINGLE, 2, 12), (SINGLE, 8, 12)],
                         ids=["central", "single_in_party0", "single_in_party2"])
def test_train_interrupted_and_resumed_equals_the_uninterrupted_run(tmp_path, argv, after, total):
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    assert cli.main([*argv, "--out", str(straight)]) == 0
    with testing.interrupt_training(after), pytest.raises(testing.TrainingInterrupted):
        cli.main([*argv, "--out", str(cut)])
    assert not (cut / "metrics.json").exists()
    with testing.interrupt_training(NEVER) as saves:
        assert cli.main([*argv, "--out", str(cut), "--resume"]) == 0
    assert saves["count"] == total - after  # it continued: only the epochs left were trained
    _assert_same_weights(load_state_dict(straight / "model.safetensors"), load_state_dict(cut / "model.safetensors"))
    assert json.loads((cut / "metrics.json").read_text()) == json.loads((straight / "metrics.json").read_text())
    straight_checkpoints, cut_checkpoints = _checkpoints(straight), _checkpoints(cut)
    assert list(straight_checkpoints) == list(cut_checkpoints)
    assert len(straight_checkpoints) == (1 if argv is CENTRAL else 4)
    for name, checkpoint in straight_checkpoints.items():  # every party's training, also the lost ones
        _assert_same_weights(checkpoint["state_dict"], cut_checkpoints[name]["state_dict"])


def test_checkpoint_loads_weights_only_with_the_sampler_generator(tmp_path):
    out = tmp_path / "central"
    assert cli.main([*CENTRAL, "--epochs", "1", "--out", str(out)]) == 0
    checkpoint = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["epoch"] == 0 and checkpoint["optimizer_states"]
    generators = checkpoint["callbacks"]["ResumeCheckpoint"]["random_states"]["generators"]
    assert any(path.endswith("sampler.generator") for path in generators), list(generators)


def test_federated_runtimes_refuse_resume_and_save_no_checkpoint(tmp_path, capsys):
    from paperzoo.vafl.commands import train

    out = tmp_path / "sim"
    argv = ["train", "--dataset", "breast_cancer", "--budget", "20", "--eval_every", "10", "--out", str(out)]
    assert cli.main(argv) == 0
    assert not list(out.rglob("*.ckpt"))
    for runtime in ("sim", "threads", "sync"):
        with pytest.raises(ValueError, match=f"--resume continues --runtime central and single only.*--runtime "
                                             f"{runtime} runs outside Lightning"):
            train(tmp_path / runtime, dataset="breast_cancer", runtime=runtime, resume=True)
    capsys.readouterr()
    assert cli.main([*argv, "--resume"]) == 2
    assert "holds a finished run" in capsys.readouterr().err
    for path in out.iterdir():  # a killed run leaves its config.yaml only (as the README says)
        if path.name != "config.yaml":
            path.unlink()
    assert cli.main([*argv, "--resume"]) == 2
    err = capsys.readouterr().err
    assert "holds no checkpoint" in err and "start it again with --overwrite" in err


def test_library_references_without_a_resume_folder_write_no_checkpoint(tmp_path, monkeypatch, cancer_data):
    from paperzoo.vafl.config import FederationConfig
    from paperzoo.vafl.pipeline import train_centralised, train_single_parties

    monkeypatch.chdir(tmp_path)
    train_centralised(cancer_data, FederationConfig(seed=0), epochs=1)
    assert not list(tmp_path.rglob("*.ckpt"))
    with pytest.raises(ValueError, match="resume=True needs resume_dir"):
        train_single_parties(cancer_data, FederationConfig(seed=0), epochs=1, resume=True)
