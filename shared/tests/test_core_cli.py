import sys
from pathlib import Path

import pytest
import yaml

from paperzoo.core import testing
from paperzoo.core.cli import prepare_out_dir, run_cli
from paperzoo.core.lightning import make_trainer

CALLS = []


def train(out: Path, seed: int = 0, epochs: int = 3, anchors: str = "eeis:4", lr: float = 0.1) -> dict:
    """Train something.

    Args:
        epochs: Number of epochs.
        anchors: Anchor specification.
        lr: Learning rate.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    CALLS.append({"out": out, "seed": seed, "epochs": epochs, "anchors": anchors, "lr": lr})
    return {"acc": 0.5}


def main(argv=None):
    return run_cli("paperzoo-test", {"train": train, "demo": train}, argv, version="9.9")


def test_help_and_print_config_round_trip(tmp_path):
    testing.check_cli_help(main, ["train", "demo"])
    config = testing.check_print_config(main, "train", ["--epochs", "7"], tmp_path)
    assert config["epochs"] == 7 and config["anchors"] == "eeis:4"


def test_yaml_config_is_applied_and_saved(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"epochs": 5, "anchors": "greedy:mu=1.5", "seed": 3}))
    out = tmp_path / "run"
    assert main(["train", "--config", str(config), "--lr", "0.01", "--out", str(out)]) == 0
    assert CALLS[-1] == {"out": out, "seed": 3, "epochs": 5, "anchors": "greedy:mu=1.5", "lr": 0.01}
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["epochs"] == 5 and saved["lr"] == 0.01 and saved["seed"] == 3


def test_existing_out_is_never_overwritten_silently(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out)]) == 0
    assert main(["train", "--out", str(out)]) == 2
    assert "already holds results" in capsys.readouterr().err
    assert main(["train", "--out", str(out), "--overwrite"]) == 0


def test_user_errors_exit_2_with_one_line(tmp_path, capsys):
    assert main(["train", "--epochs", "0", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "paperzoo-test train: error: epochs must be >= 1, got 0" in err
    assert main(["train", "--epochs", "notanint"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == 'paperzoo-test train: error: Parser key "epochs": Expected a <class \'int\'>. Got value: notanint'


def test_prepare_out_dir_refuses_a_file(tmp_path):
    target = tmp_path / "f"
    target.write_text("x")
    with pytest.raises(NotADirectoryError):
        prepare_out_dir(target)


def _scaled(out: Path, seed: int = 0, epochs: int = 1, devices: int = 1, num_nodes: int = 1,
            strategy: str = "auto", precision: str | None = None, threads: int = 0) -> dict:
    """A training verb with the Lightning scale options."""
    import torch

    CALLS.append({"devices": devices, "num_nodes": num_nodes, "strategy": strategy,
                  "precision": precision, "threads": threads, "torch_threads": torch.get_num_threads()})
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    return {}


def _scaled_main(argv):
    return run_cli("paperzoo-test", {"train": _scaled, "demo": train}, argv)


def test_training_verbs_get_the_lightning_scale_options(tmp_path, monkeypatch):
    argv = ["train", "--devices", "2", "--num_nodes", "3", "--strategy", "ddp",
            "--precision", "bf16-mixed", "--out", str(tmp_path / "a")]
    monkeypatch.setattr(sys, "argv", ["paperzoo-test", *argv])  # as typed: ddp may relaunch it
    assert _scaled_main(argv) == 0
    assert {k: CALLS[-1][k] for k in ("devices", "num_nodes", "strategy", "precision")} == {
        "devices": 2, "num_nodes": 3, "strategy": "ddp", "precision": "bf16-mixed"}
    status, text = testing._run(_scaled_main, ["train", "--help"])
    assert status == 0 and all(o in text for o in ("--devices", "--num_nodes", "--strategy", "--precision"))
    status, text = testing._run(_scaled_main, ["demo", "--help"])
    assert "--devices" not in text and "--threads" in text


def test_threads_apply_to_the_run_and_are_restored(tmp_path):
    import torch

    before = torch.get_num_threads()
    target = 1 if before != 1 else 2
    assert _scaled_main(["train", "--threads", str(target), "--out", str(tmp_path / "t")]) == 0
    assert CALLS[-1]["threads"] == target and CALLS[-1]["torch_threads"] == target
    assert torch.get_num_threads() == before


def test_failed_run_leaves_no_config_and_the_same_out_works_after(tmp_path, capsys):
    out = tmp_path / "run"
    assert _scaled_main(["train", "--epochs", "0", "--out", str(out)]) == 2
    assert not out.exists()
    existing = tmp_path / "kept"
    existing.mkdir()
    assert _scaled_main(["train", "--epochs", "0", "--out", str(existing)]) == 2
    assert existing.is_dir() and not (existing / "config.yaml").exists()
    assert _scaled_main(["train", "--epochs", "2", "--out", str(out)]) == 0
    assert (out / "config.yaml").is_file()


def _gate(out: Path, seed: int = 0, fail_after_results: bool = True) -> dict:
    """A verb that writes its results and then fails its pass check."""
    from paperzoo.core.results import write_results

    write_results(out, {"score": 0.25}, title="gate")
    if fail_after_results:
        raise ValueError("score 0.25 is under the pass line 0.5")
    return {"score": 0.25}


def _failing(out: Path, seed: int = 0) -> dict:
    """A verb that fails before writing anything."""
    raise ValueError("bad input")


def test_run_that_fails_after_writing_metrics_keeps_its_config(tmp_path, capsys):
    out = tmp_path / "gate"
    assert run_cli("paperzoo-test", {"gate": _gate}, ["gate", "--seed", "5", "--out", str(out)]) == 2
    assert "pass line" in capsys.readouterr().err
    assert (out / "metrics.json").is_file()
    assert yaml.safe_load((out / "config.yaml").read_text())["seed"] == 5


def test_failed_overwrite_run_puts_the_previous_config_back(tmp_path):
    out = tmp_path / "kept"
    commands = {"gate": _gate, "bad": _failing}
    argv = ["gate", "--fail_after_results", "false", "--seed", "3", "--out", str(out)]
    assert run_cli("paperzoo-test", commands, argv) == 0
    before = (out / "config.yaml").read_text()
    assert run_cli("paperzoo-test", commands, ["bad", "--out", str(out), "--overwrite"]) == 2
    assert (out / "config.yaml").read_text() == before
    # a failed --overwrite run that replaced a checkpoint first: no config claims that mixture
    def _saves_then_fails(out: Path, seed: int = 0) -> dict:
        """Writes a checkpoint, then fails."""
        (out / "model.safetensors").write_bytes(b"new")
        raise ValueError("the data broke after saving")

    assert run_cli("paperzoo-test", {"save": _saves_then_fails}, ["save", "--out", str(out), "--overwrite"]) == 2
    assert not (out / "config.yaml").exists() and (out / "model.safetensors").read_bytes() == b"new"
    (out / "model.safetensors").unlink()
    (out / "config.yaml").write_text(before)
    # a failed --overwrite run of the gate itself wrote new metrics: its own config stays
    argv = ["gate", "--seed", "4", "--out", str(out), "--overwrite"]
    assert run_cli("paperzoo-test", commands, argv) == 2
    assert yaml.safe_load((out / "config.yaml").read_text())["seed"] == 4


def test_invalid_choice_prints_one_line(tmp_path, capsys):
    from typing import Literal

    def pick(out: Path, kind: Literal["a", "b"] = "a") -> dict:
        """Pick."""
        return {}

    assert run_cli("paperzoo-test", {"pick": pick}, ["pick", "--kind", "z"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("paperzoo-test pick: error:") and "kind" in err
    assert run_cli("paperzoo-test", {"pick": pick}, ["nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "invalid choice" in err
    assert main(["train", "--device", "tpu"]) == 2
    assert "device" in capsys.readouterr().err


def test_cuda_is_refused_for_a_verb_without_a_device(tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert main(["train", "--device", "cuda", "--out", str(tmp_path / "c")]) == 2
    assert "runs on the CPU only" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_a_seed_is_refused_for_a_verb_that_takes_none(tmp_path, capsys):
    def score(out: Path, scale: float = 1.0) -> dict:
        """Score (deterministic)."""
        return {"scale": scale}

    commands = {"score": score}
    assert run_cli("paperzoo-test", commands, ["score", "--seed", "7", "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert "--seed 7: this command takes no seed" in err
    assert not (tmp_path / "s").exists()
    assert run_cli("paperzoo-test", commands, ["score", "--seed", "0", "--out", str(tmp_path / "s")]) == 0
    status, text = testing._run(lambda argv: run_cli("paperzoo-test", commands, argv), ["score", "--help"])
    assert status == 0 and "Not used by this command" in " ".join(text.split())


def test_partial_trainer_options_are_a_programming_error():
    def half(out: Path, devices: int = 1) -> dict:
        """Half."""
        return {}

    with pytest.raises(TypeError, match="num_nodes"):
        run_cli("paperzoo-test", {"half": half}, ["half", "--help"])


def test_an_overwrite_run_names_the_earlier_files_it_did_not_write(tmp_path, capsys):
    def plot(out: Path, name: str = "a") -> dict:
        """Writes one named plot."""
        (out / f"{name}.png").write_bytes(name.encode())
        return {}

    out = tmp_path / "o"
    assert run_cli("paperzoo-test", {"plot": plot}, ["plot", "--name", "a", "--out", str(out)]) == 0
    assert "note:" not in capsys.readouterr().err  # nothing was there before
    assert run_cli("paperzoo-test", {"plot": plot}, ["plot", "--name", "b", "--out", str(out), "--overwrite"]) == 0
    err = capsys.readouterr().err
    assert "1 file(s) in" in err and "not written by this run (kept from an earlier one): a.png" in err
    assert (out / "a.png").is_file()  # kept, not deleted
    assert run_cli("paperzoo-test", {"plot": plot}, ["plot", "--name", "a", "--out", str(out), "--overwrite"]) == 0
    assert "b.png" in capsys.readouterr().err and (out / "a.png").read_bytes() == b"a"


def test_a_timeout_of_an_external_tool_is_one_line(tmp_path, capsys):
    def synth(out: Path) -> dict:
        """Calls a tool that hangs."""
        raise TimeoutError("espeak-ng did not answer within 60 s (utterance a/b.wav)")

    assert run_cli("paperzoo-test", {"synth": synth}, ["synth", "--out", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "paperzoo-test synth: error: espeak-ng did not answer within 60 s (utterance a/b.wav)"


@pytest.mark.parametrize("scale", [["--devices", "2"], ["--devices", "0,1", "--strategy", "ddp"],
                                   ["--num_nodes", "2", "--strategy", "ddp"]])
def test_a_relaunching_strategy_is_refused_for_arguments_of_the_callers_own(tmp_path, capsys, scale):
    """Lightning's ddp reruns sys.argv once per extra device: from Python that is the caller's
    program (pytest here), so it is refused before anything runs; one device passes."""
    CALLS.clear()
    assert _scaled_main(["train", *scale, "--out", str(tmp_path / "a")]) == 2
    error = capsys.readouterr().err
    assert "relaunches this program's command line" in error and "under torchrun" in error
    assert CALLS == [] and not (tmp_path / "a").exists()
    assert _scaled_main(["train", "--devices", "1", "--strategy", "ddp", "--out", str(tmp_path / "b")]) == 0


@pytest.mark.parametrize("strategy", ["ddp_spawn", "ddp_fork", "ddp_notebook", "ddp_spawn_find_unused_parameters_true"])
def test_a_spawning_strategy_is_refused_before_any_work(tmp_path, capsys, strategy):
    """Lightning's spawning launchers hand back only the weights: the results a training function
    reads from its trainer after fit would be an untrained copy's. Refused on the command line,
    one device or several, before the command runs or --out is made, and by make_trainer."""
    CALLS.clear()
    for devices in ("1", "2"):
        assert _scaled_main(["train", "--devices", devices, "--strategy", strategy,
                             "--out", str(tmp_path / "a")]) == 2
        error = capsys.readouterr().err
        assert f"--strategy {strategy} is not supported" in error and "Use --strategy ddp" in error
    assert CALLS == [] and not (tmp_path / "a").exists()
    with pytest.raises(ValueError, match=f"--strategy {strategy} is not supported"):
        make_trainer(None, strategy=strategy)


def test_secondary_rank_reads_every_launcher_variable(monkeypatch):
    from paperzoo.core.runtime import RANK_VARIABLES, secondary_rank

    for name in RANK_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert secondary_rank() is None
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("NODE_RANK", "0")
    assert secondary_rank() is None  # rank 0 of node 0, as Lightning's launcher marks it
    monkeypatch.setenv("NODE_RANK", "1")
    assert secondary_rank() == "NODE_RANK=1"  # local rank 0 of the second node
    monkeypatch.setenv("NODE_RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert secondary_rank() == "LOCAL_RANK=3"
    monkeypatch.setenv("RANK", "5")
    assert secondary_rank() == "RANK=5"


def test_a_secondary_rank_writes_nothing_into_out(tmp_path, monkeypatch, capsys):
    """A rank other than 0 runs the command with a temporary --out that is gone afterwards: the
    real --out (already holding rank 0's config) is neither refused nor touched."""
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--epochs", "2"]) == 0
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    capsys.readouterr()
    monkeypatch.setenv("LOCAL_RANK", "1")
    CALLS.clear()
    assert main(["train", "--out", str(out), "--epochs", "2", "--seed", "4"]) == 0
    scratch = CALLS[-1]["out"]
    assert scratch != out and not scratch.exists() and "LOCAL_RANK1" in scratch.name
    assert CALLS[-1]["seed"] == 4 and CALLS[-1]["epochs"] == 2
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    assert capsys.readouterr().out == ""  # rank 0 alone prints the results
    assert main(["train", "--out", str(out), "--epochs", "0"]) == 2
    assert "(LOCAL_RANK=1): error: epochs must be >= 1" in capsys.readouterr().err


def test_a_command_can_tell_an_explicit_cuda_from_auto(tmp_path):
    from paperzoo.core.runtime import requested_device

    seen = []

    def fit(out: Path, device: str = "auto") -> dict:
        seen.append((device, requested_device()))
        return {}

    for request in ("auto", "cpu"):
        assert run_cli("paperzoo-test", {"fit": fit}, ["fit", "--device", request,
                                                        "--out", str(tmp_path / request)]) == 0
    from paperzoo.core.runtime import resolve_device

    assert seen == [(resolve_device("auto"), "auto"), ("cpu", "cpu")]
    assert requested_device() is None  # outside a command
