"""The generator writes the LOCO layout deterministically; the loader reads real layouts and
refuses bad trees with errors that name the path."""

import hashlib
import json

import numpy as np
import pytest
from PIL import Image

from paperzoo.comad.data import LocoCategory, load_images
from paperzoo.comad.synth import SplitSizes, generate_category, render

SMALL = SplitSizes(6, 2, 2, 5, 3)


def _digest(folder):
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_generator_writes_the_loco_layout_deterministically(tmp_path):
    a = generate_category(tmp_path / "a", "bottle", seed=3, sizes=SMALL, image_size=64)
    b = generate_category(tmp_path / "b", "bottle", seed=3, sizes=SMALL, image_size=64)
    for sub in (
        "train/good",
        "validation/good",
        "test/good",
        "test/logical_anomalies",
        "test/structural_anomalies",
        "ground_truth/logical_anomalies",
        "components/train/good",
    ):
        assert (a / sub).is_dir(), sub
    assert len(list((a / "train/good").glob("*.png"))) == 6
    assert _digest(a) == _digest(b)
    config = json.loads((a / "defects_config.json").read_text())
    assert {e["defect_name"] for e in config} >= {"mismatch", "low_fill", "missing_icon"}
    loco = LocoCategory(tmp_path / "a", "bottle")
    test = loco.test()
    assert test.kinds.count("logical") == 5 and test.kinds.count("structural") == 3
    assert set(test.subtypes) - {"good"} <= {e["defect_name"] for e in config}
    parts = loco.components("test", test.paths[:1])
    assert parts.shape == (1, 64, 64) and set(np.unique(parts)) <= {0, 1, 2}
    c = generate_category(tmp_path / "c", "bottle", seed=4, sizes=SMALL, image_size=64)
    assert _digest(c) != _digest(a)


def test_every_defect_has_a_mask():
    from paperzoo.comad.synth import DEFECTS

    for category, defects in DEFECTS.items():
        for defect in defects:
            _, _, masks = render(category, 0, 1, defect, size=96)
            assert masks and any(m.any() for m in masks), (category, defect)


def _tree(root, n_train=6, size=(16, 16)):
    folder = root / "cat"
    for sub in (
        "train/good",
        "validation/good",
        "test/good",
        "test/logical_anomalies",
        "test/structural_anomalies",
    ):
        (folder / sub).mkdir(parents=True)
    pixels = np.zeros((*size, 3), dtype=np.uint8)
    for i in range(n_train):
        Image.fromarray(pixels).save(folder / "train/good" / f"{i:03d}.png")
    for sub in (
        "validation/good",
        "test/good",
        "test/logical_anomalies",
        "test/structural_anomalies",
    ):
        Image.fromarray(pixels).save(folder / sub / "000.png")
    gt = folder / "ground_truth/logical_anomalies/000"
    gt.mkdir(parents=True)
    mask = np.zeros(size, dtype=np.uint8)
    mask[2:4, 2:4] = 200
    Image.fromarray(mask).save(gt / "000.png")
    mask2 = np.zeros(size, dtype=np.uint8)
    mask2[8:10, 8:10] = 200
    Image.fromarray(mask2).save(gt / "001.png")
    (folder / "defects_config.json").write_text(
        json.dumps(
            [
                {
                    "defect_name": "missing",
                    "pixel_value": 200,
                    "saturation_threshold": 1,
                    "relative_saturation": True,
                }
            ]
        )
    )
    return folder


def test_loader_reads_a_hand_made_tree_with_multi_mask_ground_truth(tmp_path):
    _tree(tmp_path)
    loco = LocoCategory(tmp_path, "cat")
    assert len(loco.train()) == 6 and len(loco.val()) == 1
    logical = loco.test("logical")
    assert logical.subtypes == ["missing"]
    masks = loco.masks(logical.paths[0])
    assert len(masks) == 2 and masks[1][8, 8] == 200


def test_bad_trees_raise_errors_that_name_the_path(tmp_path):
    import shutil

    folder = _tree(tmp_path / "a")
    shutil.rmtree(folder / "validation")
    with pytest.raises(FileNotFoundError, match="validation/good"):
        LocoCategory(tmp_path / "a", "cat")
    with pytest.raises(FileNotFoundError, match="category folder not found"):
        LocoCategory(tmp_path / "a", "nope")
    _tree(tmp_path / "b", n_train=5)
    with pytest.raises(ValueError, match="at least 6"):
        LocoCategory(tmp_path / "b", "cat")
    folder = _tree(tmp_path / "c")
    Image.fromarray(np.zeros((20, 16, 3), dtype=np.uint8)).save(folder / "train/good" / "009.png")
    with pytest.raises(ValueError, match=r"different sizes.*000\.png.*16x16.*009\.png.*16x20"):
        LocoCategory(tmp_path / "c", "cat").train()
    folder = _tree(tmp_path / "d")
    (folder / "ground_truth/logical_anomalies/777").mkdir()
    with pytest.raises(ValueError, match="777.*no matching test image"):
        LocoCategory(tmp_path / "d", "cat")
    folder = _tree(tmp_path / "e")
    (folder / "defects_config.json").write_text("{not json")
    with pytest.raises(
        ValueError,
        match=r"defects config .*defects_config\.json is not valid JSON: .* line 1, column 2",
    ):
        LocoCategory(tmp_path / "e", "cat")
    folder = _tree(tmp_path / "f")
    (folder / "train/good" / "000.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot read image"):
        LocoCategory(tmp_path / "f", "cat").train()


def test_a_root_with_only_the_good_splits_serves_fitting(tmp_path):
    """splits=("train", "validation") needs neither the test folders nor defects_config.json;
    reading the test split later checks it then. The default still checks every split."""
    import shutil

    folder = _tree(tmp_path)
    shutil.rmtree(folder / "test")
    shutil.rmtree(folder / "ground_truth")
    (folder / "defects_config.json").unlink()
    loco = LocoCategory(tmp_path, "cat", splits=("train", "validation"))
    assert len(loco.train()) == 6 and len(loco.val()) == 1
    with pytest.raises(FileNotFoundError, match=r"split folder not found: .*test/good"):
        loco.test()
    with pytest.raises(FileNotFoundError, match=r"split folder not found: .*test/good"):
        LocoCategory(tmp_path, "cat")
    (folder / "test" / "good").mkdir(parents=True)
    (folder / "test" / "logical_anomalies").mkdir()
    (folder / "test" / "structural_anomalies").mkdir()
    with pytest.raises(FileNotFoundError, match="defects config not found"):
        LocoCategory(tmp_path, "cat", splits=("test",))
    with pytest.raises(ValueError, match="unknown splits"):
        LocoCategory(tmp_path, "cat", splits=("holdout",))
    # a test-only check leaves the train split to its first read
    _tree(tmp_path / "b")
    shutil.rmtree(tmp_path / "b" / "cat" / "train")
    loco = LocoCategory(tmp_path / "b", "cat", splits=("test",))
    assert loco.test("logical").subtypes == ["missing"]
    with pytest.raises(FileNotFoundError, match=r"split folder not found: .*train/good"):
        loco.train()


def test_user_images_from_npz_and_folder(tmp_path):
    images = np.zeros((3, 8, 8, 3), dtype=np.uint8)
    np.savez(tmp_path / "x.npz", images=images)
    unlabelled = load_images(f"npz:{tmp_path / 'x.npz'}")
    assert len(unlabelled) == 3
    assert unlabelled.kinds == [""] * 3 and unlabelled.subtypes == [""] * 3  # no label
    (tmp_path / "folder").mkdir()
    Image.fromarray(images[0]).save(tmp_path / "folder" / "a.png")
    own = load_images(tmp_path / "folder")
    assert own.kinds == [""] and own.subtypes == [""]
    np.savez(tmp_path / "bad.npz", images=images.astype(np.float32))
    with pytest.raises(ValueError, match="uint8"):
        load_images(f"npz:{tmp_path / 'bad.npz'}")
    np.savez(tmp_path / "other.npz", pictures=images)
    with pytest.raises(
        ValueError, match=r"other\.npz lacks array\(s\) \['images'\]; it holds \['pictures'\]"
    ):
        load_images(f"npz:{tmp_path / 'other.npz'}")
    np.save(tmp_path / "bare.npy", images)
    with pytest.raises(ValueError, match=r"bare\.npy is not an \.npz archive"):
        load_images(f"npz:{tmp_path / 'bare.npy'}")
    with pytest.raises(FileNotFoundError):
        load_images(tmp_path / "missing")
