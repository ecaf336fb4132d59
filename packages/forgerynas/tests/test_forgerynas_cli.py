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


def test_search_derive_train_evaluate_on_user_arrays(tmp_path, npz_pair, capsys):
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
    capsys.readouterr()
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
    error = capsys.readouterr().err
    assert (
        f"{train_out / 'model.safetensors'}: the weights were trained for another genotype" in error
    )
    assert "'paper-cross'" in error
    # npz frames of another size than the training one (32x32): an npz file is not resized, and
    # a 48x48 array was scored by the 32x32 checkpoint (32x48 ones passed as "size 32")
    import numpy as np

    images, labels = toy_frames(8, size=48)
    np.savez(tmp_path / "big.npz", images=images.numpy(), labels=labels.numpy())
    np.savez(tmp_path / "rect.npz", images=images[..., :32, :].numpy(), labels=labels.numpy())
    np.savez(
        tmp_path / "x255.npz", images=255 * images[..., :32, :32].numpy(), labels=labels.numpy()
    )
    ckpt = str(train_out / "model.safetensors")
    for name, message in (
        ("big", f"frames are 48x48 (height x width) but {ckpt} was trained on 32x32 frames"),
        ("rect", "frames must be square (S x S), got 32x48 (height x width)"),
        ("x255", "x255.npz: float images must lie in [0, 1], found values in"),
    ):
        args = ["evaluate", "--ckpt", ckpt, "--data", f"npz:{tmp_path / name}.npz"]
        assert main([*args, "--out", str(tmp_path / f"eval_{name}")]) == 2
        assert message in capsys.readouterr().err
        assert not (tmp_path / f"eval_{name}").exists()


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
    # validation frames of another size than the training frames (npz files are not resized)
    import numpy as np

    images, labels = toy_frames(8, size=48)
    np.savez(tmp_path / "big.npz", images=images.numpy(), labels=labels.numpy())
    args = ["train", "--train_data", f"npz:{a}", "--val_data", f"npz:{tmp_path / 'big.npz'}"]
    assert main([*args, "--out", str(tmp_path / "o")]) == 2
    assert "its frames are 48x48, the training frames 32x32" in capsys.readouterr().err
    assert not (tmp_path / "o" / "model.safetensors").exists()


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


def test_prune_within_the_warm_up_is_refused():
    """Architecture steps start after ``warmup`` epochs: a prune at or before it would rank
    untrained (random) architecture weights."""
    from paperzoo.forgerynas.search import SearchConfig

    with pytest.raises(ValueError, match=r"prune_at .*within the warm-up \(warmup=15"):
        SearchConfig(preset="paper", epochs=60, warmup=15, prune_at=(5, 10, 15, 20))
    with pytest.raises(ValueError, match="warmup=1"):
        SearchConfig(preset="tiny", prune_at=(1, 2))
    with pytest.raises(ValueError, match="warmup=1"):
        SearchConfig(preset="tiny", epochs=2, warmup=1, prune_at=(1,))
    # the presets, the demo's and the validation's schedules satisfy it
    assert SearchConfig(preset="tiny").prune_at == (2, 3)
    assert SearchConfig(preset="paper").prune_at[0] == 20
    SearchConfig(C=4, layers=3, steps=2, K=2, epochs=2, warmup=1, prune_at=(2,))
    from paperzoo.forgerynas.validation import ValidationConfig

    for epochs in (2, 3, 6):
        config = ValidationConfig(search_epochs=epochs).search_config("forgery")
        assert config.warmup == 1 and config.prune_at == tuple(range(2, epochs + 1))


def test_search_epochs_scale_the_preset_schedule(npz_pair, tmp_path, monkeypatch):
    """``search --epochs N`` scales the preset's warm-up and prune epochs (it used to replace
    them with prunes every 5th epoch from 5 and warm-up N // 4: prunes at 5, 10, 15 inside the
    paper preset's warm-up of 15)."""
    from paperzoo.forgerynas import pipeline
    from paperzoo.forgerynas.search import SEARCH_PRESETS, SearchConfig, scaled_schedule

    for preset, base in SEARCH_PRESETS.items():
        assert scaled_schedule(preset, base["epochs"]) == (base["warmup"], base["prune_at"])
        for epochs in range(1, 130):
            warmup, prune_at = scaled_schedule(preset, epochs)
            assert 0 <= warmup < epochs and prune_at and min(prune_at) > warmup
            SearchConfig(preset=preset, epochs=epochs, warmup=warmup, prune_at=prune_at)
    assert scaled_schedule("paper", 30) == (8, (10, 13, 15, 18, 20, 23, 25))
    assert scaled_schedule("tiny", 2) == (1, (2,))  # as before for the short runs

    class Captured(Exception):
        pass

    seen = {}

    def capture(weight, arch, config, **kwargs):
        seen["config"] = config
        raise Captured

    a, c = npz_pair
    monkeypatch.setattr(pipeline, "search_architecture", capture)
    with pytest.raises(Captured):
        main(
            ["search", "--train", f"npz:{a}", "--arch_val", f"npz:{c}", "--preset", "paper"]
            + ["--epochs", "60", "--out", str(tmp_path / "s")]
        )
    assert seen["config"].warmup == 15
    assert seen["config"].prune_at == (20, 25, 30, 35, 40, 45, 50)


def _ckpt(tmp_path):
    from paperzoo.forgerynas.pipeline import build_detector, save_detector

    torch.manual_seed(0)
    return save_detector(
        build_detector("hand_cnn", C=4), tmp_path / "m.safetensors", "hand_cnn", {"C": 4}
    )


def test_evaluate_refuses_mixed_videos_synthetic_videos_and_missing_splits(tmp_path, capsys):
    import numpy as np

    ckpt = _ckpt(tmp_path)
    # a synthetic domain at video level: its ids are sources shared by reals and fakes
    args = ["evaluate", "--ckpt", str(ckpt), "--data", "synthetic:B", "--level", "video"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 2
    assert "synthetic domains have no videos" in capsys.readouterr().err
    assert not (tmp_path / "a" / "metrics.json").exists()
    # a video id holding both labels is named
    images, labels = toy_frames(16, seed=0)
    videos = np.array([3, 3] + list(range(10, 24)))  # frames 0 (real) and 1 (fake) share id 3
    np.savez(tmp_path / "m.npz", images=images.numpy(), labels=labels.numpy(), video_ids=videos)
    args = ["evaluate", "--ckpt", str(ckpt), "--data", f"npz:{tmp_path / 'm.npz'}"]
    assert main([*args, "--level", "video", "--out", str(tmp_path / "b")]) == 2
    assert "video id 3 holds real and fake frames" in capsys.readouterr().err
    assert main([*args, "--level", "frame", "--out", str(tmp_path / "c")]) == 0
    # a split the synthetic domain lacks (C has train only) is refused, not replaced
    args = ["evaluate", "--ckpt", str(ckpt), "--data", "synthetic:C"]
    assert main([*args, "--out", str(tmp_path / "d")]) == 2
    assert "synthetic domain C has no 'test' split (it has: train)" in capsys.readouterr().err


def test_train_validates_on_the_training_source(tmp_path, npz_pair, capsys, monkeypatch):
    """Without --val_data, train validates on the val split of --train_data (it used to use
    synthetic:A whatever the training data); a source without one needs --val_data."""
    import json as _json

    import numpy as np
    from PIL import Image

    from paperzoo.forgerynas import pipeline
    from paperzoo.forgerynas.data import default_val_spec

    assert default_val_spec("synthetic:A") == "synthetic:A"  # the default run is unchanged
    assert default_val_spec("ffpp:/data/ff") == "ffpp:/data/ff"
    for spec in ("synthetic:C", "csv:/x.csv", "npz:/x.npz"):
        with pytest.raises(ValueError, match="--val_data"):
            default_val_spec(spec)
    a, c = npz_pair
    small = ["--model", "hand_cnn", "--C", "4", "--epochs", "1", "--batch_size", "8"]
    small += ["--batches_per_epoch", "1", "--device", "cpu"]
    assert main(["train", "--train_data", f"npz:{a}", *small, "--out", str(tmp_path / "a")]) == 2
    assert "pass --val_data" in capsys.readouterr().err
    out = tmp_path / "b"  # --val_data '': no validation
    assert (
        main(["train", "--train_data", f"npz:{a}", "--val_data", "", *small, "--out", str(out)])
        == 0
    )
    assert "val_auc" not in _json.loads((out / "metrics.json").read_text())

    # FF++ training data: the val set is FF++'s own val split
    root = tmp_path / "ff"
    for split, (x, y) in (("train", ("000", "001")), ("val", ("002", "003"))):
        for folder in (
            f"original_sequences/youtube/c23/frames/{x}",
            f"original_sequences/youtube/c23/frames/{y}",
            *(
                f"manipulated_sequences/{m}/c23/frames/{v}"
                for m in ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures")
                for v in (f"{x}_{y}", f"{y}_{x}")
            ),
        ):
            (root / folder).mkdir(parents=True)
            Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(root / folder / "0000.png")
        (root / "splits").mkdir(exist_ok=True)
        (root / "splits" / f"{split}.json").write_text(_json.dumps([[x, y]]))

    class Captured(Exception):
        pass

    seen = {}

    def capture(net, train_set, val_set, config, **kwargs):
        seen["train"], seen["val"] = train_set.name, val_set.name
        raise Captured

    monkeypatch.setattr(pipeline, "train_detector", capture)
    with pytest.raises(Captured):
        main(["train", "--train_data", f"ffpp:{root}", *small, "--out", str(tmp_path / "f")])
    assert seen == {"train": "ffpp-train", "val": "ffpp-val"}


def _celebdf_tree(root):
    """A tiny Celeb-DF v2 tree: identities id0..id9, each with a real and a fake video (so every
    seed's held-out identity gives a two-class val split), a listed test pair of id10, an empty
    YouTube-real; two 8x8 frames per video."""
    import numpy as np
    from PIL import Image

    videos = [(f"Celeb-real/id{k}_0000", 40) for k in range(11)]
    videos += [(f"Celeb-synthesis/id{k}_id{(k + 1) % 11}_0000", 200) for k in range(11)]
    for video, level in videos:
        sub, name = video.split("/")
        folder = root / sub / "frames" / name
        folder.mkdir(parents=True)
        for i in range(2):
            frame = np.full((8, 8, 3), level + 10 * i, np.uint8)
            Image.fromarray(frame).save(folder / f"{i:04d}.png")
    (root / "YouTube-real" / "frames").mkdir(parents=True)
    (root / "List_of_testing_videos.txt").write_text(
        "1 Celeb-real/id10_0000.mp4\n0 Celeb-synthesis/id10_id0_0000.mp4\n"
    )


@pytest.fixture(scope="module")
def celebdf_run(tmp_path_factory):
    """A hand CNN trained on the fake Celeb-DF's train split at --size 16 under a seed whose
    held-out (val) identity is not seed 0's: seed 0's val videos are its training videos."""
    from paperzoo.forgerynas.data import celebdf_frames

    root = tmp_path_factory.mktemp("celebdf")
    _celebdf_tree(root)
    val0 = set(celebdf_frames(root, "val", size=8, seed=0).videos)
    seed = next(s for s in range(1, 20) if set(celebdf_frames(root, "val", seed=s).videos) != val0)
    assert val0 <= set(celebdf_frames(root, "train", size=8, seed=seed).videos)
    out = tmp_path_factory.mktemp("celebdf_train")
    args = ["train", "--model", "hand_cnn", "--C", "4", "--train_data", f"celebdf:{root}"]
    args += ["--val_data", "", "--size", "16", "--epochs", "1", "--batch_size", "4"]
    args += ["--batches_per_epoch", "1", "--seed", str(seed), "--out", str(out)]
    assert main(args) == 0
    return root, out / "model.safetensors", seed


def _legacy_copy(ckpt, folder):
    """The checkpoint with its sidecar as written before the size and split were recorded."""
    import shutil

    folder.mkdir()
    copy = folder / "model.safetensors"
    shutil.copy(ckpt, copy)
    sidecar = json.loads(ckpt.with_name(ckpt.name + ".json").read_text())
    sidecar["meta"] = {k: v for k, v in sidecar["meta"].items() if k not in ("size", "split")}
    copy.with_name(copy.name + ".json").write_text(json.dumps(sidecar))
    return copy


def test_evaluate_refuses_another_seed_on_the_training_split(celebdf_run, tmp_path, capsys):
    """Celeb-DF's val identities are drawn with the seed: evaluate (which always drew them with
    seed 0) scored identities a detector trained under another --seed was trained on."""
    from paperzoo.core.checkpoint import read_meta

    root, ckpt, seed = celebdf_run
    base = ["evaluate", "--ckpt", str(ckpt), "--split", "val"]
    for spelled in (f"celebdf:{root}", f"celebdf:{root}/./"):  # the same source spelled another way
        assert main([*base, "--data", spelled, "--out", str(tmp_path / "a")]) == 2
        error = capsys.readouterr().err
        assert "--seed 0" in error and f"--seed {seed}" in error
    assert not (tmp_path / "a" / "metrics.json").exists()
    split = read_meta(ckpt)["split"]
    assert split == {"train_data": f"celebdf:{root.resolve()}", "val_data": None, "seed": seed}
    args = [*base, "--data", f"celebdf:{root}", "--seed", str(seed), "--out", str(tmp_path / "b")]
    assert main(args) == 0
    metrics = testing.check_metrics_json(tmp_path / "b", ["auc", "split_checked"])
    assert metrics["split_checked"] == 1 and metrics["frames"] == 4
    # the official test list does not depend on the seed
    args = ["evaluate", "--ckpt", str(ckpt), "--data", f"celebdf:{root}", "--split", "test"]
    assert main([*args, "--out", str(tmp_path / "c")]) == 0
    assert json.loads((tmp_path / "c" / "metrics.json").read_text())["split_checked"] == 1
    # a checkpoint without the record is scored as before, flagged
    legacy = _legacy_copy(ckpt, tmp_path / "legacy")
    args = ["evaluate", "--ckpt", str(legacy), "--data", f"celebdf:{root}", "--split", "val"]
    assert main([*args, "--size", "16", "--out", str(tmp_path / "d")]) == 0
    assert json.loads((tmp_path / "d" / "metrics.json").read_text())["split_checked"] == 0


def test_evaluate_scores_at_the_training_size(celebdf_run, tmp_path, capsys):
    """evaluate --size defaulted to 32 whatever size the detector was trained at."""
    from paperzoo.core.checkpoint import read_meta

    root, ckpt, seed = celebdf_run
    base = ["evaluate", "--ckpt", str(ckpt), "--data", f"celebdf:{root}", "--split", "test"]
    assert main([*base, "--size", "32", "--out", str(tmp_path / "c")]) == 2
    error = capsys.readouterr().err
    assert "--size 32" in error and "--size 16" in error
    assert not (tmp_path / "c" / "metrics.json").exists()
    assert read_meta(ckpt)["size"] == 16
    assert main([*base, "--out", str(tmp_path / "a")]) == 0
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert metrics["size"] == 16 and metrics["size_checked"] == 1
    assert main([*base, "--size", "16", "--out", str(tmp_path / "b")]) == 0
    # a checkpoint without the record: 32 by default (or --size), flagged
    legacy = _legacy_copy(ckpt, tmp_path / "legacy")
    base[2] = str(legacy)
    assert main([*base, "--out", str(tmp_path / "d")]) == 0
    metrics = json.loads((tmp_path / "d" / "metrics.json").read_text())
    assert metrics["size"] == 32 and metrics["size_checked"] == 0


def test_search_and_training_ask_for_deterministic_algorithms(monkeypatch):
    """Both trainers ran with deterministic=False; 'warn' gives deterministic algorithms (a
    warning, not an error, where a CUDA op has none) and leaves CPU results unchanged."""
    from paperzoo.core import lightning
    from paperzoo.forgerynas.data import TensorFrames
    from paperzoo.forgerynas.pipeline import (
        SearchConfig,
        TrainConfig,
        build_detector,
        search_architecture,
        train_detector,
    )

    class Captured(Exception):
        pass

    seen = []

    def capture(*args, **kwargs):
        seen.append(kwargs["deterministic"])
        raise Captured

    monkeypatch.setattr(lightning, "make_trainer", capture)
    frames = TensorFrames(*toy_frames(16, seed=0), name="toy")
    config = SearchConfig(C=4, layers=2, steps=2, K=2, epochs=2, prune_at=(2,), batch_size=8)
    with pytest.raises(Captured):
        search_architecture(frames, frames, config)
    with pytest.raises(Captured):
        train_detector(build_detector("hand_cnn", C=4), frames, None, TrainConfig(batch_size=8))
    assert seen == ["warn", "warn"]
