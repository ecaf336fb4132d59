"""The fitted model: presets, checkpoint round trip, fusion on validation data only, the
component restriction, the Lightning module and every bad option of the spec."""

import numpy as np
import pytest
import torch

from paperzoo.comad.model import ComAD, create_model, list_models


def test_presets_and_overrides():
    assert list_models() == ["offline", "paper", "tiny"]
    model = create_model("tiny", n_components=3)
    assert model.config["n_components"] == 3 and model.config["image_size"] == 112
    with pytest.raises(ValueError, match="unknown model 'large'; choose from offline, paper, tiny"):
        create_model("large")
    with pytest.raises(ValueError, match="local weights file"):
        create_model("paper")
    with pytest.raises(ValueError, match="n_components"):
        create_model("tiny", n_components=1)
    with pytest.raises(ValueError, match="unknown crf 'grabcut'; choose from local, dense, none"):
        create_model("tiny", crf="grabcut")
    with pytest.raises(ValueError, match="unknown featuriser"):
        create_model("tiny", featuriser="sift")
    with pytest.raises(ValueError, match="patchcore_ratio"):
        create_model("tiny", patchcore_ratio=0.0)
    with pytest.raises(ValueError, match="image_size"):
        create_model("tiny", image_size=100)


def test_fit_score_and_explain(fitted_tiny):
    model, loco = fitted_tiny
    test = loco.test()
    result = model.score(test.images)
    n = len(test)
    assert result.logical.total.shape == (n,) and result.structural.shape == (n,)
    assert result.fused is not None and np.isfinite(result.fused).all()
    assert result.grey.shape == (n, 5, 112, 112) and result.anomaly_maps.shape == (n, 112, 112)
    explanation = result.logical.explain(0)
    assert explanation["dominant_component"] in model.kept
    assert explanation["dominant_measure"] in ("area", "colour", "count")
    parts = sum(
        v
        for p in explanation["parts"].values()
        for k, v in p.items()
        if k in ("area", "colour", "count")
    )
    assert parts == pytest.approx(explanation["total"], rel=1e-6)


def test_fusion_statistics_come_from_validation_only(fitted_tiny):
    from paperzoo.comad.fusion import TrimmedZNorm

    model, loco = fitted_tiny
    val = model.score(loco.val().images, fusion_ready=False)
    expected = TrimmedZNorm().fit({"comad": val.logical.total, "patchcore": val.structural})
    assert model.znorm.stats == expected.stats
    before = dict(model.znorm.stats)
    model.score(loco.test().images)
    assert model.znorm.stats == before


def test_checkpoint_round_trip_gives_identical_scores(fitted_tiny, tmp_path):
    model, loco = fitted_tiny
    images = loco.test().images[:4]
    path = model.save(tmp_path / "run.safetensors")
    loaded = ComAD.load(path)
    a, b = model.score(images), loaded.score(images)
    assert np.array_equal(a.logical.total, b.logical.total)
    assert np.array_equal(a.structural, b.structural) and np.array_equal(a.fused, b.fused)
    assert loaded.kept == model.kept
    with pytest.raises(ValueError, match="image_size=112, not 224"):
        ComAD.load(path, image_size=224)
    with pytest.raises(ValueError, match="featuriser='colour_texture', not 'dino_vits8'"):
        ComAD.load(path, featuriser="dino_vits8")


def test_components_option_and_its_errors(fitted_tiny):
    model, loco = fitted_tiny
    images = loco.test().images[:3]
    one = model.score(images, components=[model.kept[0]])
    assert one.logical.components == [model.kept[0]]
    assert one.fused is None  # the z-norm statistics belong to the score of all kept components
    dropped = [k for k in range(5) if k not in model.kept]
    assert dropped, f"the fixture's filter kept every component ({model.kept}); nothing to test"
    with pytest.raises(ValueError, match="dropped by the component filter"):
        model.score(images, components=[dropped[0]])
    with pytest.raises(ValueError, match=r"components \[9\] do not exist.*K=5"):
        model.score(images, components=[9])


def test_znorm_fusion_is_refused_for_a_component_subset(fitted_tiny):
    from paperzoo.comad.pipeline import score_images

    model, loco = fitted_tiny
    test = loco.test()
    with pytest.raises(ValueError, match="use --fusion raw or --fusion none with --components"):
        score_images(model, test, "znorm", [model.kept[0]])
    subset = score_images(model, test, "raw", [model.kept[0]])
    assert subset.metrics and not any(k.startswith("fused_") for k in subset.metrics)
    assert all("fused" not in row for row in subset.rows)  # no column of NaN
    full = model.score(test.images)
    assert not np.array_equal(subset.result.logical.total, full.logical.total)
    assert np.array_equal(subset.result.final("raw"), subset.result.raw)


def test_a_run_file_that_lacks_a_tensor_names_file_and_tensor(fitted_tiny, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    from paperzoo.core.checkpoint import sidecar_path

    model, _ = fitted_tiny
    path = model.save(tmp_path / "run.safetensors")
    state = load_file(str(path))
    for key in ("patchcore.bank", "logic.train_hist_0", "segmenter.kept", "logic.multipliers"):
        broken = tmp_path / f"no_{key}.safetensors"
        save_file({k: v for k, v in state.items() if k != key}, str(broken))
        shutil.copy(sidecar_path(path), sidecar_path(broken))
        with pytest.raises(ValueError, match=rf"no_{key}\.safetensors lacks the tensor '{key}'"):
            ComAD.load(broken)


def test_fusion_without_validation_and_unfitted_model_are_refused(tray_root):
    from paperzoo.comad.data import LocoCategory

    loco = LocoCategory(tray_root, "tray")
    model = create_model("tiny")
    with pytest.raises(ValueError, match="not fitted"):
        model.score(loco.test().images[:1])
    with pytest.raises(ValueError, match="at least 6"):
        model.fit(loco.train().images[:5])
    model.fit(loco.train().images)
    result = model.score(loco.test().images[:2])
    with pytest.raises(ValueError, match="validation"):
        result.final("znorm")
    assert np.array_equal(result.final("none"), result.logical.total)
    from paperzoo.comad.pipeline import score_images

    report = score_images(model, loco.test(), "raw")
    assert all("fused" not in row for row in report.rows)  # no fused column without validation
    assert not any(key.startswith("fused_") for key in report.metrics)
    with pytest.raises(ValueError, match="uint8"):
        model.score(loco.test().images[:1].astype(np.float32))


def test_same_seed_same_scores(tray_root):
    from paperzoo.comad.data import LocoCategory

    loco = LocoCategory(tray_root, "tray")
    train, test = loco.train().images, loco.test().images[:3]
    a = create_model("tiny", seed=1).fit(train).score(test)
    b = create_model("tiny", seed=1).fit(train).score(test)
    assert np.array_equal(a.logical.total, b.logical.total) and np.array_equal(
        a.structural, b.structural
    )


def test_lightning_module_fits_in_one_epoch(tray_root, tmp_path):
    from paperzoo.comad.data import LocoDataModule
    from paperzoo.comad.module import ComADModule
    from paperzoo.core.lightning import make_trainer

    data = LocoDataModule(tray_root, "tray", batch_size=8)
    module = ComADModule(preset="tiny")
    trainer = make_trainer(tmp_path, max_epochs=1, device="cpu", logger=False, progress_bar=False)
    trainer.fit(module, datamodule=data)
    assert module.model.fitted and module.model.znorm is not None
    trainer.test(module, datamodule=data, verbose=False)
    labels = np.concatenate([o["labels"] for o in module.test_outputs])
    assert len(labels) == len(data.category.test())


@pytest.mark.parametrize(
    ("device", "world_size", "message"),
    [
        ("meta", 1, "runs on the CPU"),
        ("cpu", 2, "world size 2: each rank would fit on its own share"),
    ],
)
def test_lightning_module_refuses_a_gpu_and_several_processes(device, world_size, message):
    from types import SimpleNamespace

    from paperzoo.comad.module import ComADModule

    module = ComADModule(preset="tiny")
    module.trainer = SimpleNamespace(
        strategy=SimpleNamespace(root_device=torch.device(device)), world_size=world_size
    )
    with pytest.raises(ValueError, match=message):
        module.setup("fit")
    module.trainer = SimpleNamespace(
        strategy=SimpleNamespace(root_device=torch.device("cpu")), world_size=1
    )
    module.setup("fit")
