"""The CLI end to end, in process: help, config round trip, search -> derive -> train -> evaluate
on user arrays, refusals, the README's Python example, and (slow) demo, a one-epoch tiny search
and a reduced validation run."""

from __future__ import annotations

import json
import time

import pytest
import torch

from paperzoo.core import testing
from paperzoo.forgerynas.cli import main

from .conftest import toy_frames

VERBS = ["search", "derive", "train", "evaluate", "demo", "validate"]
VALIDATE_NAMES = [
    "in_auc_min",
    "cross_auc_cdc_in",
    "cross_auc_cdc_cross",
    "cross_auc_vanilla",
    "cross_auc_random",
    "cross_auc_cnn",
    "cross_auc_timm",
    "cross_auc_cdc_in_std",
    "cross_minus_in_search",
    "probe_auc_max",
    "cdc_theta0_max_err",
    "cdc_closed_form_max_err",
    "arch_grad_leak",
    "genotype_roundtrip",
    "pc_act_mem_ratio_k4",
]
SMALL_SEARCH = [
    "--epochs",
    "2",
    "--batches_per_epoch",
    "1",
    "--C",
    "4",
    "--layers",
    "2",
    "--steps",
    "2",
    "--K",
    "2",
]


def test_help_and_print_config(tmp_path):
    testing.check_cli_help(main, VERBS)
    config = testing.check_print_config(main, "search", ["--K", "4", "--space", "darts"], tmp_path)
    assert config["K"] == 4 and config["devices"] == 1 and config["strategy"] == "auto"


def test_search_derive_train_evaluate_on_user_arrays(tmp_path, npz_pair):
    a, c = npz_pair
    search_out = tmp_path / "search"
    assert (
        main(
            [
                "search",
                "--train",
                f"npz:{a}",
                "--arch_val",
                f"npz:{c}",
                *SMALL_SEARCH,
                "--out",
                str(search_out),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    for name in (
        "genotype.json",
        "genotype_alpha.json",
        "trace.json",
        "arch_weights.png",
        "cells.png",
    ):
        assert (search_out / name).stat().st_size > 0
    derive_out = tmp_path / "derive"
    assert (
        main(
            [
                "derive",
                "--trace",
                str(search_out / "trace.json"),
                "--derive_by",
                "alpha",
                "--out",
                str(derive_out),
            ]
        )
        == 0
    )
    genotype = json.loads((derive_out / "genotype.json").read_text())
    assert genotype["steps"] == 2 and len(genotype["normal"]) == 4
    train_out = tmp_path / "train"
    assert (
        main(
            [
                "train",
                "--genotype",
                str(search_out / "genotype.json"),
                "--train_data",
                f"npz:{a}",
                "--val_data",
                f"npz:{c}",
                "--C",
                "4",
                "--layers",
                "4",
                "--epochs",
                "2",
                "--restarts",
                "1",
                "--restart_check_epoch",
                "1",
                "--restart_min_val_auc",
                "0.999999",
                "--batch_size",
                "8",
                "--batches_per_epoch",
                "2",
                "--out",
                str(train_out),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    metrics = testing.check_metrics_json(train_out, ["first_loss", "val_auc", "attempts"])
    assert 0 <= metrics["val_auc"] <= 1
    # the restart rule ran: a second attempt unless the first reached validation AUC 1
    assert metrics["attempts"] in (1, 2)
    eval_out = tmp_path / "eval"
    assert (
        main(
            [
                "evaluate",
                "--ckpt",
                str(train_out / "model.safetensors"),
                "--data",
                f"npz:{c}",
                "--level",
                "video",
                "--out",
                str(eval_out),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    scores = testing.check_metrics_json(eval_out, ["auc", "ap", "acc", "eer"])
    assert 0 <= scores["auc"] <= 1 and (eval_out / "roc.png").is_file()
    # weights for another genotype are refused, naming the checkpoint
    status = main(
        [
            "evaluate",
            "--ckpt",
            str(train_out / "model.safetensors"),
            "--data",
            f"npz:{c}",
            "--genotype",
            "paper-cross",
            "--out",
            str(tmp_path / "eval2"),
        ]
    )
    assert status == 2 and not (tmp_path / "eval2").exists()


def test_bad_inputs_exit_2_before_work(tmp_path, npz_pair, capsys):
    a, _ = npz_pair
    assert (
        main(
            [
                "search",
                "--train",
                "synthetic:A",
                "--arch_val",
                "synthetic:B",
                "--out",
                str(tmp_path / "x"),
            ]
        )
        == 2
    )
    assert "contaminated" in capsys.readouterr().err
    assert (
        main(
            [
                "search",
                "--train",
                f"npz:{a}",
                "--arch_val",
                f"npz:{a}",
                "--K",
                "3",
                "--C",
                "8",
                "--out",
                str(tmp_path / "y"),
            ]
        )
        == 2
    )
    assert "divisible" in capsys.readouterr().err
    assert main(["train", "--genotype", "random:x", "--out", str(tmp_path / "z")]) == 2
    assert (
        main(["train", "--genotype", str(tmp_path / "none.json"), "--out", str(tmp_path / "w")])
        == 2
    )
    assert "not found" in capsys.readouterr().err
    assert main(["derive", "--trace", str(a), "--out", str(tmp_path / "v")]) == 2
    assert main(["train", "--epochs", "0", "--out", str(tmp_path / "u")]) == 2
    capsys.readouterr()
    warm = ["--epochs", "2", "--lr_warmup_epochs", "2", "--out", str(tmp_path / "t")]
    assert main(["train", *warm]) == 2
    assert "lr_warmup_epochs" in capsys.readouterr().err
    warm = ["--train_lr_warmup_epochs", "-1", "--out", str(tmp_path / "s")]
    assert main(["validate", *warm]) == 2
    assert "train_lr_warmup_epochs" in capsys.readouterr().err
    again = ["--epochs", "2", "--restarts", "1", "--restart_check_epoch", "2"]
    assert main(["train", *again, "--out", str(tmp_path / "q")]) == 2
    assert "restart_check_epoch" in capsys.readouterr().err
    assert main(["validate", "--train_restarts", "-1", "--out", str(tmp_path / "p")]) == 2
    assert "train_restarts" in capsys.readouterr().err
    assert not (tmp_path / "p" / "metrics.json").exists()
    assert main(["validate", "--eval_C", "9", "--out", str(tmp_path / "r")]) == 2
    assert "eval_C must be even" in capsys.readouterr().err
    assert not (tmp_path / "r" / "metrics.json").exists()


def test_readme_python_example():
    # the README's "Python" section, verbatim apart from the sizes
    from paperzoo.forgerynas import (
        CascadedPyramidNet,
        SearchConfig,
        TrainConfig,
        evaluate_detector,
        search_architecture,
        train_detector,
    )
    from paperzoo.forgerynas.data import TensorFrames

    images, labels = toy_frames(32, seed=0)  # your (N, 3, 32, 32) crops in [0, 1], fake = 1
    aux_images, aux_labels = toy_frames(32, seed=1)  # another forgery domain for the architecture
    train = TensorFrames(images, labels, name="mine")
    aux = TensorFrames(aux_images, aux_labels, name="aux")
    config = SearchConfig(
        preset="tiny",
        C=4,
        layers=2,
        steps=2,
        K=2,
        epochs=2,
        prune_at=(2,),
        batches_per_epoch=1,
        batch_size=8,
    )
    search = search_architecture(train, aux, config, seed=0)  # cross-dataset search
    search.genotype.save("/tmp/forgerynas_readme_genotype.json")
    model = CascadedPyramidNet(search.genotype, C=4, layers=4)  # or any nn.Module giving 2 logits
    run = train_detector(
        model, train, config=TrainConfig(epochs=1, batch_size=8, batches_per_epoch=2)
    )
    scores = evaluate_detector(run.model, aux).scores  # {'auc', 'ap', 'acc', 'eer'}
    assert set(scores) == {"auc", "ap", "acc", "eer"} and "none" not in search.genotype.ops_used()


def test_checkpoint_roundtrip(tmp_path):
    from paperzoo.forgerynas.model import create_model

    testing.check_checkpoint_roundtrip(create_model("tiny", C=4, layers=4), tmp_path)


@pytest.mark.slow
def test_demo_end_to_end(tmp_path):
    out = tmp_path / "demo"
    assert (
        main(["demo", "--out", str(out), "--n_train", "128", "--epochs", "1", "--device", "cpu"])
        == 0
    )
    metrics = testing.check_metrics_json(out, ["A-test_auc", "B_auc", "search_seconds"])
    assert 0 <= metrics["B_auc"] <= 1 and (out / "cells.png").is_file()


@pytest.mark.slow
def test_one_epoch_tiny_search_under_a_minute():
    from paperzoo.forgerynas.data import TensorFrames
    from paperzoo.forgerynas.pipeline import SearchConfig, search_architecture

    images, labels = toy_frames(64)
    data = TensorFrames(images, labels, name="toy")
    started = time.perf_counter()
    search_architecture(
        data,
        data,
        SearchConfig(preset="tiny", epochs=1, warmup=0, prune_at=(1,), batches_per_epoch=2),
        seed=0,
    )
    assert time.perf_counter() - started < 60


@pytest.mark.slow
def test_reduced_validation(tmp_path):
    out = tmp_path / "validate"
    assert (
        main(
            [
                "validate",
                "--out",
                str(out),
                "--seeds",
                "1",
                "--n_train",
                "1600",
                "--search_batches",
                "2",
                "--train_epochs",
                "6",  # the spec's tiny retraining length (4 leaves BatchNorm statistics stale)
                "--eval_layers",
                "4",
                "--arms",
                "[cdc_in, cdc_cross, cnn]",
                "--mechanism",
                "false",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["cdc_theta0_max_err"] <= 1e-5 and metrics["arch_grad_leak"] == 0
    assert metrics["probe_auc_max"] <= 0.6 and metrics["in_auc_cnn"] >= 0.85
    assert torch.isfinite(torch.tensor(metrics["cross_minus_in_search"]))
