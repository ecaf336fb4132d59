from pathlib import Path

import pytest
import yaml

from paperzoo.core import testing
from paperzoo.core.cli import prepare_out_dir, run_cli

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
    assert main(["train", "--out", str(out), "--overwrite", "true"]) == 0


def test_user_errors_exit_2_with_one_line(tmp_path, capsys):
    assert main(["train", "--epochs", "0", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "paperzoo-test train: error: epochs must be >= 1, got 0" in err
    with pytest.raises(SystemExit):
        main(["train", "--epochs", "notanint"])


def test_prepare_out_dir_refuses_a_file(tmp_path):
    target = tmp_path / "f"
    target.write_text("x")
    with pytest.raises(NotADirectoryError):
        prepare_out_dir(target)
