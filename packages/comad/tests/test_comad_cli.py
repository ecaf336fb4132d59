"""The CLI end to end in-process: generate, fit, score, explain; bad input exits 2 with one line."""

import csv
import json
import shutil

import numpy as np
import pytest

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
    with open(scores / "scores.csv", newline="") as handle:
        labelled = list(csv.DictReader(handle))
    assert {r["kind"] for r in labelled} == {"good", "logical", "structural"}  # LOCO labels kept
    assert {r["subtype"] for r in labelled if r["kind"] == "good"} == {"good"}
    image = sorted((data / "bag/test/logical_anomalies").glob("*.png"))[0]
    explained = tmp_path / "explain"
    assert main(["explain", "--out", str(explained), "--run", str(run), "--image", str(image)]) == 0
    detail = json.loads((explained / "explanation.json").read_text())
    assert detail["dominant_measure"] in ("area", "colour", "count")
    assert (explained / "components.png").is_file() and (explained / "explanation.png").is_file()
    # bad input: one line, exit 2, before work is lost
    capsys.readouterr()
    kept = json.loads((run / "model.safetensors.json").read_text())["meta"]["kept"]
    dropped = [k for k in range(5) if k not in kept]
    assert dropped, f"the bag fit kept every component ({kept}); nothing to test"
    score_args = ["score", "--run", str(run), "--data", str(data), "--category", "bag"]
    for components, fusion, message in (
        (dropped[0], "raw", "dropped by the component filter"),
        (9, "raw", "components [9] do not exist"),
        (kept[0], "znorm", "use --fusion raw or --fusion none with --components"),
    ):
        args = ["--components", str(components), "--fusion", fusion, "--out", str(tmp_path / "s2")]
        assert main([*score_args, *args]) == 2
        assert message in capsys.readouterr().err
        assert not (tmp_path / "s2" / "metrics.json").exists()
    subset = tmp_path / "subset"
    args = ["--components", str(kept[0]), "--fusion", "raw", "--out", str(subset)]
    assert main([*score_args, *args]) == 0
    metrics = json.loads((subset / "metrics.json").read_text())
    assert "score_logical_auroc" in metrics and not any(k.startswith("fused_") for k in metrics)
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


def _read_scores(folder):
    with open(folder / "scores.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_fit_on_own_good_images_then_score_a_folder(tray_root, tmp_path, capsys):
    """fit --train DIR --validation npz:FILE needs no LOCO layout; score on a folder writes no
    label (empty kind and subtype) and no AUROC; a LOCO root with train/good and validation/good
    only is fitted too, and its missing test split is named when scoring asks for it."""
    from PIL import Image

    category = tray_root / "tray"
    good = tmp_path / "my_good"
    shutil.copytree(category / "train" / "good", good)
    validation = sorted((category / "validation" / "good").glob("*.png"))
    pixels = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in validation])
    np.savez(tmp_path / "validation.npz", images=pixels)
    run = tmp_path / "run"
    fit = ["fit", "--out", str(run), "--model", "tiny", "--train", str(good)]
    assert main([*fit, "--validation", f"npz:{tmp_path / 'validation.npz'}"]) == 0
    metrics = testing.check_metrics_json(run, ["n_train", "n_validation", "n_kept"])
    assert metrics["n_train"] == 12 and metrics["n_validation"] == len(validation) == 6
    assert (run / "model.safetensors").is_file() and (run / "components.png").is_file()
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    for kind in ("good", "logical_anomalies"):
        for path in sorted((category / "test" / kind).glob("*.png"))[:3]:
            shutil.copy(path, incoming / f"{kind}_{path.name}")
    scores = tmp_path / "scores"
    assert main(["score", "--out", str(scores), "--run", str(run), "--data", str(incoming)]) == 0
    rows = _read_scores(scores)
    assert len(rows) == 6 and all(r["kind"] == "" and r["subtype"] == "" for r in rows)
    assert all(np.isfinite(float(r["fused"])) for r in rows)
    assert json.loads((scores / "metrics.json").read_text()) == {"n_images": 6}
    assert not (scores / "scores.png").exists()

    # without --validation the run has no z-norm: score says how to fit it or which fusion works
    bare = tmp_path / "bare"
    assert main(["fit", "--out", str(bare), "--model", "tiny", "--train", str(good)]) == 0
    assert json.loads((bare / "metrics.json").read_text())["n_validation"] == 0
    capsys.readouterr()
    score = ["score", "--run", str(bare), "--data", str(incoming)]
    assert main([*score, "--out", str(tmp_path / "s_znorm")]) == 2
    assert "fit --validation" in capsys.readouterr().err
    assert main([*score, "--out", str(tmp_path / "s_raw"), "--fusion", "raw"]) == 0
    assert len(_read_scores(tmp_path / "s_raw")) == 6

    # a LOCO root holding only the good splits: fit reads it, score --category names the gap
    root = tmp_path / "root"
    for split in ("train", "validation"):
        shutil.copytree(category / split / "good", root / "parts" / split / "good")
    loco_run = tmp_path / "loco_run"
    loco = ["fit", "--out", str(loco_run), "--model", "tiny", "--data", str(root)]
    assert main([*loco, "--category", "parts"]) == 0
    assert json.loads((loco_run / "metrics.json").read_text())["n_validation"] == 6
    capsys.readouterr()
    args = ["score", "--out", str(tmp_path / "s_loco"), "--run", str(loco_run), "--data", str(root)]
    assert main([*args, "--category", "parts"]) == 2
    assert "split folder not found: " + str(root / "parts" / "test" / "good") in (
        capsys.readouterr().err
    )

    # exactly one source of good images; each refusal is one line, before any work
    npz = f"npz:{tmp_path / 'validation.npz'}"
    for extra, message in (
        ([], "fit needs its good images"),
        (["--train", str(good), "--data", str(root), "--category", "parts"], "not both"),
        (["--data", str(root)], "needs --category"),
        (["--train", str(good), "--category", "parts"], "leave --category out"),
        (["--data", str(root), "--category", "parts", "--validation", npz], "goes with --train"),
        (["--train", str(tmp_path / "missing")], "folder not found"),
    ):
        out = tmp_path / "refused"
        assert main(["fit", "--out", str(out), "--model", "tiny", *extra]) == 2, extra
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, (extra, err)
        assert not out.exists()


def test_generate_overwrite_replaces_the_category_folder(tmp_path, capsys):
    data = tmp_path / "data"
    sizes = ["--train", "6", "--validation", "2", "--good", "3", "--logical", "3"]
    args = ["generate", "--out", str(data), "--category", "bottle", "--image_size", "64", *sizes]
    assert main([*args, "--structural", "2"]) == 0
    (data / "bottle" / "test" / "good" / "stray.png").write_bytes(b"left over")
    assert main([*args, "--structural", "1", "--overwrite"]) == 0
    assert not (data / "bottle" / "test" / "good" / "stray.png").exists()
    assert len(list((data / "bottle" / "test" / "structural_anomalies").glob("*.png"))) == 1
    assert len(list((data / "bottle" / "ground_truth" / "structural_anomalies").iterdir())) == 1
    fresh = tmp_path / "fresh"
    assert main([*args, "--structural", "1", "--out", str(fresh)]) == 0
    listing = sorted(p.relative_to(data) for p in (data / "bottle").rglob("*"))
    assert listing == sorted(p.relative_to(fresh) for p in (fresh / "bottle").rglob("*"))
    # another category under the same root stays; the library refuses without overwrite
    assert (
        main(
            [
                "generate",
                "--out",
                str(data),
                "--category",
                "tray",
                "--image_size",
                "64",
                *sizes,
                "--overwrite",
            ]
        )
        == 0
    )
    assert (data / "bottle" / "defects_config.json").is_file()
    from paperzoo.comad.synth import SplitSizes, generate_category

    with pytest.raises(FileExistsError, match=r"bottle already holds a data set.*--overwrite"):
        generate_category(data, "bottle", sizes=SplitSizes(6, 2, 3, 3, 1), image_size=64)


def _tiny_dino(monkeypatch):
    """DINO ViT-S/8 with one narrow block (tests only): the weights-file path at a small cost."""
    from paperzoo.comad import features

    class TinyDino(features.TimmViT):
        name = "dino_vits8"

        def __init__(self, weights, img_size=224):
            super().__init__(
                "vit_small_patch8_224.dino", weights, img_size, depth=1, embed_dim=24, num_heads=2
            )

    monkeypatch.setattr(features, "DinoViTS8", TinyDino)


def _weights(path, model_name, seed, **kwargs):
    import timm
    import torch

    from paperzoo.core.checkpoint import save_weights

    torch.manual_seed(seed)
    return save_weights(timm.create_model(model_name, pretrained=False, **kwargs), path)


def test_a_run_fitted_on_weights_files_is_scored_and_explained_with_the_same_files(
    tray_root, tmp_path, monkeypatch, capsys
):
    """score and explain take --dino_weights / --patchcore_weights; the run stores their SHA-256
    and refuses a missing file or another file of the same architecture."""
    import hashlib

    from paperzoo.comad.data import LocoCategory
    from paperzoo.comad.model import ComAD, create_model

    _tiny_dino(monkeypatch)
    vit = dict(num_classes=0, img_size=112, depth=1, embed_dim=24, num_heads=2)
    dino = _weights(tmp_path / "dino.safetensors", "vit_small_patch8_224.dino", 0, **vit)
    other = _weights(tmp_path / "dino_other.safetensors", "vit_small_patch8_224.dino", 1, **vit)
    cnn = _weights(tmp_path / "cnn.safetensors", "resnet10t", 0)
    loco = LocoCategory(tray_root, "tray")
    options = dict(featuriser="dino_vits8", dino_weights=str(dino))
    options.update(patchcore_featuriser="timm_cnn", patchcore_backbone="resnet10t")
    model = create_model("tiny", patchcore_weights=str(cnn), **options)
    model.fit(loco.train().images, loco.val().images)
    run = tmp_path / "run"
    model.save(run / "model.safetensors")
    stored = json.loads((run / "model.safetensors.json").read_text())["meta"]["weights_sha256"]
    assert stored == {
        "dino_weights": hashlib.sha256(dino.read_bytes()).hexdigest(),
        "patchcore_weights": hashlib.sha256(cnn.read_bytes()).hexdigest(),
    }
    weights = ["--dino_weights", str(dino), "--patchcore_weights", str(cnn)]
    score = ["score", "--run", str(run), "--data", str(tray_root), "--category", "tray"]
    capsys.readouterr()
    assert main([*score, "--out", str(tmp_path / "s0"), "--dino_weights", str(dino)]) == 2
    assert "--patchcore_weights FILE" in capsys.readouterr().err
    bad = ["--dino_weights", str(other), "--patchcore_weights", str(cnn)]
    assert main([*score, "--out", str(tmp_path / "s1"), *bad]) == 2
    err = capsys.readouterr().err
    assert "dino_other.safetensors is not the file" in err and "SHA-256" in err
    assert main([*score, "--out", str(tmp_path / "scores"), *weights]) == 0
    metrics = testing.check_metrics_json(tmp_path / "scores", ["n_images", "fused_mean_auroc"])
    assert metrics["n_images"] == len(loco.test())
    image = sorted((tray_root / "tray/test/logical_anomalies").glob("*.png"))[0]
    explain = ["explain", "--run", str(run), "--image", str(image), *weights]
    assert main([*explain, "--out", str(tmp_path / "why")]) == 0
    assert (tmp_path / "why" / "explanation.json").is_file()
    loaded = ComAD.load(run / "model.safetensors", str(dino), str(cnn))
    images = loco.test().images[:3]
    assert np.array_equal(loaded.score(images).fused, model.score(images).fused)


def test_throughput_benchmark_refuses_an_existing_out_file(tmp_path):
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "throughput.py"
    spec = importlib.util.spec_from_file_location("comad_throughput", script)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "bench.json"
    out.write_text("{}\n")
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--out", str(out)])
    assert exit_info.value.code == 2 and out.read_text() == "{}\n"
