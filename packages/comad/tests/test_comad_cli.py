"""The CLI end to end in-process: generate, fit, score, explain; bad input exits 2 with one line."""

import json

from paperzoo.comad.cli import main
from paperzoo.core import testing

VERBS = ["fit", "score", "explain", "generate", "demo", "validate"]


def test_help_and_print_config(tmp_path):
    testing.check_cli_help(main, VERBS)
    config = testing.check_print_config(main, "validate", ["--seeds", "2"], tmp_path)
    assert config["seeds"] == 2


def test_generate_fit_score_explain(tmp_path, capsys):
    data = tmp_path / "data"
    assert (
        main(
            [
                "generate",
                "--out",
                str(data),
                "--category",
                "bag",
                "--image_size",
                "112",
                "--train",
                "10",
                "--validation",
                "4",
                "--good",
                "4",
                "--logical",
                "6",
                "--structural",
                "2",
            ]
        )
        == 0
    )
    run = tmp_path / "run"
    assert (
        main(
            ["fit", "--out", str(run), "--data", str(data), "--category", "bag", "--model", "tiny"]
        )
        == 0
    )
    assert (run / "model.safetensors").is_file() and (run / "components.png").is_file()
    scores = tmp_path / "scores"
    assert (
        main(
            [
                "score",
                "--out",
                str(scores),
                "--run",
                str(run),
                "--data",
                str(data),
                "--category",
                "bag",
            ]
        )
        == 0
    )
    metrics = testing.check_metrics_json(
        scores, ["n_images", "fused_logical_auroc", "comad_structural_auroc"]
    )
    assert metrics["n_images"] == 12
    assert (scores / "scores.csv").read_text().count("\n") == 13 and (
        scores / "scores.png"
    ).is_file()
    image = sorted((data / "bag/test/logical_anomalies").glob("*.png"))[0]
    explained = tmp_path / "explain"
    assert main(["explain", "--out", str(explained), "--run", str(run), "--image", str(image)]) == 0
    detail = json.loads((explained / "explanation.json").read_text())
    assert detail["dominant_measure"] in ("area", "colour", "count")
    assert (explained / "components.png").is_file() and (explained / "explanation.png").is_file()
    # bad input: one line, exit 2, before work is lost
    capsys.readouterr()
    assert (
        main(
            [
                "score",
                "--out",
                str(tmp_path / "s2"),
                "--run",
                str(run),
                "--data",
                str(data),
                "--category",
                "bag",
                "--components",
                "9",
            ]
        )
        == 2
    )
    assert "dropped by the component filter" in capsys.readouterr().err
    assert (
        main(["fit", "--out", str(tmp_path / "r2"), "--data", str(data), "--category", "tray"]) == 2
    )
    assert "category folder not found" in capsys.readouterr().err
    assert (
        main(
            [
                "fit",
                "--out",
                str(tmp_path / "r3"),
                "--data",
                str(data),
                "--category",
                "bag",
                "--model",
                "paper",
            ]
        )
        == 2
    )
    assert "local weights file" in capsys.readouterr().err
    assert main(["validate", "--out", str(tmp_path / "v"), "--categories", "car"]) == 2
    assert main(["generate", "--out", str(tmp_path / "g"), "--train", "3"]) == 2
    assert "train must be >= 6" in capsys.readouterr().err
