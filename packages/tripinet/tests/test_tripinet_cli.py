"""The CLI end to end, in-process: help, configs, demo, train -> test -> predict on a folder
layout, bad input exits with one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from paperzoo.core import testing
from paperzoo.tripinet.cli import main

VERBS = ["train", "test", "predict", "demo", "validate"]


def test_help_lists_every_verb():
    testing.check_cli_help(main, VERBS)


def test_console_script_runs():
    script = Path(sys.executable).with_name("paperzoo-tripinet")
    done = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and "predict" in done.stdout


def test_print_config_round_trips(tmp_path):
    config = testing.check_print_config(
        main, "train", ["--model.streams", '["rgb","noise"]', "--data.layout", "folder"], tmp_path
    )
    assert config["model"]["streams"] == ["rgb", "noise"] and config["data"]["layout"] == "folder"


def _folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for i in range(3):
        (root / "Tp").mkdir(parents=True, exist_ok=True)
        (root / "Gt").mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (48, 72, 3), dtype=np.uint8)).save(
            root / "Tp" / f"t{i}.png"
        )
        mask = np.zeros((48, 72), dtype=np.uint8)
        mask[10:30, 20:50] = 255
        Image.fromarray(mask).save(root / "Gt" / f"t{i}.png")
    return root


def test_demo_writes_metrics_checkpoint_and_overlays(tmp_path):
    assert (
        main(
            [
                "demo",
                "--steps",
                "2",
                "--num_train",
                "16",
                "--num_test",
                "12",
                "--out",
                str(tmp_path),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    metrics = testing.check_metrics_json(tmp_path, ["f1", "auc", "train_seconds"])
    assert 0 <= metrics["f1"] <= 1
    for name in ("model.safetensors", "overlays.png", "results.md", "config.yaml"):
        assert (tmp_path / name).is_file(), name
    assert not (tmp_path / "checkpoints").exists()  # only train saves resume checkpoints


def test_train_test_predict_on_a_folder_layout(tmp_path, capsys, caplog):
    data = _folder(tmp_path / "data")
    run = tmp_path / "train"
    assert (
        main(
            [
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
                "--data.eval_mode",
                "resize",
                "--data.eval_size",
                "64",
                "--steps",
                "2",
                "--model.streams",
                '["rgb","noise"]',
                "--out",
                str(run),
            ]
        )
        == 0
    )
    ckpt = run / "model.safetensors"
    assert ckpt.is_file() and (run / "overlays.png").is_file()
    assert testing.check_metrics_json(run, ["f1", "eval_mode_resize"])["eval_mode_resize"] == 1
    split = json.loads((run / "model.safetensors.json").read_text())["meta"]["split"]
    keys = split.pop("train_image_keys")
    assert split == {
        "layout": "folder",
        "root": str(data.resolve()),
        "test_fraction": 0.34,
        "seed": 0,
        "num_records": 3,
    }
    assert len(keys) == 2 and all(len(key) == 16 for key in keys)  # the two training images
    # the same root and layout with another split would score training images: refused
    test_args = ["test", "--ckpt", str(ckpt), "--data.layout", "folder", "--data.root", str(data)]
    capsys.readouterr()
    for option, value, trained in (
        ("--data.test_fraction", "1.0", "0.34"),
        ("--seed", "1", "0"),
    ):
        split_args = ["--data.test_fraction", "0.34", option, value]
        assert main([*test_args, *split_args, "--out", str(tmp_path / "t1")]) == 2
        err = capsys.readouterr().err
        assert f"{option} {value} differs" in err and f"{option} {trained}" in err, err
        assert not (tmp_path / "t1" / "metrics.json").exists()
    tested = tmp_path / "test"
    args = ["--data.test_fraction", "0.34", "--perturb", "jpeg:75", "--out", str(tested)]
    caplog.clear()
    assert main([*test_args, *args]) == 0
    metrics = testing.check_metrics_json(tested, ["f1", "auc", "eval_mode_resize"])
    assert metrics["num_images"] == 1 and metrics["eval_mode_resize"] == 0
    # one tampered image and no authentic one: no image AUC, said in a warning and the counts
    assert metrics["num_tampered"] == 1 and metrics["num_authentic"] == 0
    assert "image_auc" not in metrics and "image_auc needs both" in caplog.text
    assert metrics["split_checked"] == 1
    # the same images under another root (links to the files): found by resolved path, refused
    alias = tmp_path / "alias"
    for path in data.rglob("*"):
        if path.is_file():
            (alias / path.relative_to(data)).parent.mkdir(parents=True, exist_ok=True)
            (alias / path.relative_to(data)).symlink_to(path)
    alias_args = [*test_args[:5], "--data.root", str(alias), "--data.test_fraction", "1.0"]
    assert main([*alias_args, "--out", str(tmp_path / "alias_test")]) == 2
    assert "2 of the 3 test images" in capsys.readouterr().err
    assert not (tmp_path / "alias_test" / "metrics.json").exists()
    # a checkpoint written before the split was stored: scored as before, flagged unchecked
    old = tmp_path / "old" / "model.safetensors"
    old.parent.mkdir()
    old.write_bytes(ckpt.read_bytes())
    sidecar = json.loads((run / "model.safetensors.json").read_text())
    del sidecar["meta"]["split"]
    (tmp_path / "old" / "model.safetensors.json").write_text(json.dumps(sidecar))
    old_args = [*test_args[:2], str(old), *test_args[3:], "--data.test_fraction", "1.0"]
    assert main([*old_args, "--out", str(tmp_path / "old_test")]) == 0
    metrics = json.loads((tmp_path / "old_test" / "metrics.json").read_text())
    assert metrics["num_images"] == 3 and metrics["split_checked"] == 0
    predicted = tmp_path / "predict"
    image = data / "Tp" / "t0.png"
    assert (
        main(["predict", "--ckpt", str(ckpt), "--image", f'["{image}"]', "--out", str(predicted)])
        == 0
    )
    assert (predicted / "t0_prob.png").is_file() and (predicted / "t0_overlay.png").is_file()
    assert Image.open(predicted / "t0_prob.png").size == (72, 48)
    assert (predicted / "scores.csv").read_text().splitlines()[0] == "image,score,tampered_fraction"
    predicted_metrics = testing.check_metrics_json(predicted, ["images", "max_score"])
    assert predicted_metrics["images"] == 1 and 0 <= predicted_metrics["max_score"] <= 1
    assert (predicted / "results.md").is_file()

    capsys.readouterr()
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"garbage")
    assert (
        main(
            ["predict", "--ckpt", str(ckpt), "--image", f'["{bad}"]', "--out", str(tmp_path / "p2")]
        )
        == 2
    )
    assert "bad.png" in capsys.readouterr().err
    ckpt.write_bytes(b"corrupt")
    assert main(["test", "--ckpt", str(ckpt), "--out", str(tmp_path / "t2")]) == 2
    assert "model.safetensors" in capsys.readouterr().err


def test_bad_options_exit_with_one_line(tmp_path, capsys):
    assert main(["train", "--steps", "0", "--out", str(tmp_path / "a")]) == 2
    assert "--steps" in capsys.readouterr().err
    assert (
        main(
            ["train", "--model.streams", '["noise"]', "--steps", "1", "--out", str(tmp_path / "b")]
        )
        == 2
    )
    assert "rgb" in capsys.readouterr().err
    assert main(["train", "--data.layout", "casia2", "--out", str(tmp_path / "c")]) == 2
    assert "--data.root" in capsys.readouterr().err
    assert (
        main(
            ["test", "--ckpt", "x.safetensors", "--perturb", "blur:3", "--out", str(tmp_path / "d")]
        )
        == 2
    )
    assert "perturbation" in capsys.readouterr().err
    assert main(["validate", "--seeds", "0", "--out", str(tmp_path / "e")]) == 2
    assert "seeds" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()


def test_validate_writes_every_required_name(tmp_path):
    """A few steps only: the names, the table and the figures, not the numbers."""
    required = [
        "rgb_f1",
        "nofreq_f1",
        "nofreq_auc",
        "full_f1",
        "full_auc",
        "full_image_auc",
        "full_minus_plain_f1",
        "full_f1_noise",
        "nonoise_f1_noise",
        "full_f1_jpeg",
        "nofreq_f1_jpeg",
        "noisevar_f1",
        "noisevar_auc",
        "robust_jpeg75_f1",
        "robust_resize50_f1",
        "plain_f1",
        "seconds",
    ]
    assert (
        main(
            [
                "validate",
                "--steps",
                "1",
                "--num_train",
                "16",
                "--num_test",
                "16",
                "--seeds",
                "1",
                "--workers",
                "1",  # in this process; two workers are checked in test_tripinet_workers.py
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    testing.check_metrics_json(tmp_path, required)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["spec_data"] == 1 and metrics["generator_final_jpeg_prob"] == 0.5
    for name in ("f1_per_kind.png", "robustness.png", "overlays.png", "full_seed0.safetensors"):
        assert (tmp_path / name).is_file(), name


def test_validate_on_a_generator_variant_is_flagged(tmp_path, capsys):
    args = ["validate", "--steps", "1", "--num_train", "16", "--num_test", "16", "--seeds", "1"]
    args += ["--workers", "1", "--arms", "[rgb]"]
    assert main([*args, "--final_jpeg_prob", "1.5", "--out", str(tmp_path / "bad")]) == 2
    assert "final_jpeg_prob" in capsys.readouterr().err
    assert not (tmp_path / "bad" / "metrics.json").exists()
    assert main([*args, "--final_jpeg_prob", "0", "--out", str(tmp_path / "variant")]) == 0
    metrics = json.loads((tmp_path / "variant" / "metrics.json").read_text())
    assert metrics["spec_data"] == 0 and metrics["generator_final_jpeg_prob"] == 0.0
    assert "not the spec's data" in (tmp_path / "variant" / "results.md").read_text()


def test_throughput_benchmark_refuses_an_existing_out_file(tmp_path):
    import importlib.util

    import pytest

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "throughput.py"
    spec = importlib.util.spec_from_file_location("tripinet_throughput", script)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "bench.json"
    args = ["--out", str(out), "--sizes", "32", "--presets", "tiny", "--batch", "2"]
    bench.main([*args, "--repeats", "1"])
    first = out.read_text()
    assert json.loads(first)["records"][0]["size"] == 32
    with pytest.raises(SystemExit) as exit_info:
        bench.main([*args, "--repeats", "1"])
    assert exit_info.value.code == 2 and out.read_text() == first
    bench.main([*args, "--repeats", "1", "--overwrite"])
    assert json.loads(out.read_text())["records"][0]["preset"] == "tiny"


def test_a_reordered_csv_on_the_training_root_cannot_score_training_images(tmp_path):
    """The same NIST16 root and row count with the CSV rows in another order gives another
    split: the options match, but the stored training-image keys catch the overlap."""
    from PIL import Image

    from paperzoo.tripinet.commands import DataOptions, _check_split, _split_meta
    from paperzoo.tripinet.data import IMLDataModule

    root = tmp_path / "nist"
    (root / "probe").mkdir(parents=True)
    (root / "reference" / "manipulation" / "mask").mkdir(parents=True)
    rows = []
    for i in range(10):
        pixels = np.random.default_rng(i).integers(0, 256, (20, 20, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "probe" / f"p{i}.jpg")
        mask = np.full((20, 20), 255, np.uint8)
        mask[5:10, 5:10] = 0
        Image.fromarray(mask).save(root / "reference" / "manipulation" / "mask" / f"p{i}.png")
        rows.append(f"manipulation|p{i}|probe/p{i}.jpg|reference/manipulation/mask/p{i}.png|Y")
    head = "TaskID|ProbeFileID|ProbeFileName|ProbeMaskFileName|IsTarget\n"
    csv = root / "reference" / "manipulation" / "NC2016-manipulation-ref.csv"
    csv.write_text(head + "\n".join(rows) + "\n")
    (root / "reversed.csv").write_text(head + "\n".join(reversed(rows)) + "\n")
    trained = IMLDataModule("nist16", root, test_fraction=0.3, seed=0)
    meta = _split_meta(DataOptions(layout="nist16", root=str(root), test_fraction=0.3), trained, 0)
    assert (
        _check_split(
            meta,
            DataOptions(layout="nist16", root=str(root), test_fraction=0.3),
            trained,
            0,
            "ckpt",
        )
        == 1
    )  # the training split itself: fine
    options = DataOptions(
        layout="nist16", root=str(root), csv=str(root / "reversed.csv"), test_fraction=0.3
    )
    reordered = IMLDataModule(
        "nist16", root, csv_path=root / "reversed.csv", test_fraction=0.3, seed=0
    )
    overlap = {r.image for r in reordered.test_records} & {r.image for r in trained.train_records}
    assert overlap  # the reordered listing really does draw training images into its test split
    with pytest.raises(
        ValueError, match=rf"{len(overlap)} of the 3 test images .* are training images of ckpt"
    ):
        _check_split(meta, options, reordered, 0, "ckpt")
