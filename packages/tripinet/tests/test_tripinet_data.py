"""Every real layout on a tiny tree of its own shape, with the right mask polarity; bad data
fails with the file named."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from paperzoo.tripinet.data import (
    IMLDataModule,
    Record,
    RecordDataset,
    SyntheticForgeryDataModule,
    list_layout,
    load_record,
    read_forgery_mask,
)

H, W = 40, 56
TRUTH = np.zeros((H, W), dtype=np.uint8)
TRUTH[8:24, 16:40] = 1  # the tampered region of every fixture image


def _image(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)
    Image.fromarray(array).save(path)
    return path


def _mask(
    path: Path, inverted: bool = False, colour: bool = False, size=(H, W), high: int = 255
) -> Path:
    """A mask of TRUTH: ``high`` (255, or 1 for a 0/1 mask) marks the region (or, ``inverted``,
    the rest)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    truth = np.zeros(size, dtype=np.uint8)
    truth[: min(size[0], H), : min(size[1], W)] = TRUTH[: size[0], : size[1]]
    if colour:  # Columbia: red authentic region, green spliced region
        array = np.zeros((*size, 3), dtype=np.uint8)
        array[..., 0] = 255 * (1 - truth)
        array[..., 1] = 255 * truth
    else:
        array = (high * (1 - truth) if inverted else high * truth).astype(np.uint8)
    Image.fromarray(array).save(path)
    return path


def _check(listing, forged: int, authentic: int):
    records = listing.records
    assert (
        sum(r.label for r in records) == forged and sum(1 - r.label for r in records) == authentic
    )
    for record in records:
        image, mask = load_record(record)
        assert image.shape == (H, W, 3)
        assert np.array_equal(mask, TRUTH if record.label else np.zeros_like(TRUTH)), record


def test_casia2(tmp_path):
    for stem in ("Tp_S_1", "Tp_D_2"):
        _image(tmp_path / "Tp" / f"{stem}.jpg")
        _mask(tmp_path / "Gt" / f"{stem}_gt.png")
    _image(tmp_path / "Au" / "Au_1.jpg")
    _check(list_layout("casia2", tmp_path), 2, 1)


def test_casia1(tmp_path):
    _image(tmp_path / "Tp" / "CM" / "cm1.jpg")
    _image(tmp_path / "Tp" / "Sp" / "sp1.jpg")
    _mask(tmp_path / "masks" / "CM" / "cm1_gt.png")
    _mask(tmp_path / "masks" / "Sp" / "sp1_gt.png")
    _image(tmp_path / "Au" / "a.jpg")
    _check(list_layout("casia1", tmp_path, gt_root=tmp_path / "masks"), 2, 1)


def test_columbia_tricolour_masks(tmp_path):
    _image(tmp_path / "4cam_splc" / "canong3_01_sub_01.tif")
    _mask(tmp_path / "4cam_splc" / "edgemask" / "canong3_01_sub_01_edgemask.jpg", colour=True)
    _image(tmp_path / "4cam_auth" / "canong3_02_sub_01.tif")
    _check(list_layout("columbia", tmp_path), 1, 1)


def test_coverage(tmp_path):
    for n in (1, 2):
        _image(tmp_path / "image" / f"{n}t.tif")
        _image(tmp_path / "image" / f"{n}.tif")
        _mask(tmp_path / "mask" / f"{n}forged.tif")
    _check(list_layout("coverage", tmp_path), 2, 2)


def test_nist16_masks_are_inverted(tmp_path):
    _image(tmp_path / "probe" / "p1.jpg")
    _image(tmp_path / "probe" / "p2.jpg")
    _mask(tmp_path / "reference" / "manipulation" / "mask" / "p1.png", inverted=True)
    csv = tmp_path / "reference" / "manipulation" / "NC2016-manipulation-ref.csv"
    csv.write_text(
        "TaskID|ProbeFileID|ProbeFileName|ProbeMaskFileName|IsTarget\n"
        "manipulation|p1|probe/p1.jpg|reference/manipulation/mask/p1.png|Y\n"
        "manipulation|p2|probe/p2.jpg||N\n"
    )
    _check(list_layout("nist16", tmp_path), 1, 1)
    csv.write_text("TaskID|ProbeFileName|IsTarget\nmanipulation|probe/p1.jpg|Y\n")
    with pytest.raises(ValueError, match="ProbeMaskFileName"):
        list_layout("nist16", tmp_path)


def test_folder_and_json(tmp_path):
    _image(tmp_path / "Tp" / "a.png")
    _mask(tmp_path / "Gt" / "a.png")
    _image(tmp_path / "Au" / "b.png")
    _check(list_layout("folder", tmp_path), 1, 1)
    listing = tmp_path / "list.json"
    listing.write_text(json.dumps([["Tp/a.png", "Gt/a.png"], ["Au/b.png", "Negative"]]))
    _check(list_layout("json", listing), 1, 1)


def test_zero_one_masks_read_like_zero_255_masks(tmp_path):
    """A 0/1 PNG (a label map saved as is) marks the same region as a 0/255 one, in the reader,
    the folder layout and the evaluation loader; an inverted 0/1 mask (NIST16) too."""
    for name, high in (("m255", 255), ("m01", 1)):
        mask = read_forgery_mask(_mask(tmp_path / f"{name}.png", high=high))
        assert mask.dtype == np.uint8 and np.array_equal(mask, TRUTH), name
        inverted = read_forgery_mask(_mask(tmp_path / f"i{name}.png", True, high=high), invert=True)
        assert np.array_equal(inverted, TRUTH), name
    Image.fromarray(np.zeros((H, W), np.uint8)).save(tmp_path / "empty.png")
    assert read_forgery_mask(tmp_path / "empty.png").sum() == 0
    root = tmp_path / "folder"
    for i, high in enumerate((1, 255, 1)):
        _image(root / "Tp" / f"t{i}.png", seed=i)
        _mask(root / "Gt" / f"t{i}.png", high=high)
    _image(root / "Au" / "a.png", seed=9)
    _check(list_layout("folder", root), 3, 1)
    module = IMLDataModule("folder", root, test_fraction=1.0)
    tampered = [float(b["mask"].sum()) for b in module.test_dataloader() if b["label"].item()]
    assert tampered == [float(TRUTH.sum())] * 3


def test_nist16_zero_one_masks_are_inverted(tmp_path):
    _image(tmp_path / "probe" / "p1.jpg")
    _image(tmp_path / "probe" / "p2.jpg")
    _mask(tmp_path / "reference" / "manipulation" / "mask" / "p1.png", inverted=True, high=1)
    csv = tmp_path / "reference" / "manipulation" / "NC2016-manipulation-ref.csv"
    csv.write_text(
        "TaskID|ProbeFileID|ProbeFileName|ProbeMaskFileName|IsTarget\n"
        "manipulation|p1|probe/p1.jpg|reference/manipulation/mask/p1.png|Y\n"
        "manipulation|p2|probe/p2.jpg||N\n"
    )
    _check(list_layout("nist16", tmp_path), 1, 1)  # 0 = manipulated, 1 = background


def test_mask_size_differs_from_image(tmp_path):
    _image(tmp_path / "Tp" / "a.png")
    _mask(tmp_path / "Gt" / "a.png", size=(H, W - 8))
    record = list_layout("folder", tmp_path).records[0]
    with pytest.raises(ValueError, match=r"a\.png is 48 x 40 .* is 56 x 40"):
        load_record(record)


def test_non_binary_and_colour_masks(tmp_path):
    grey = tmp_path / "grey.png"
    Image.fromarray(np.tile(np.arange(W, dtype=np.uint8) * 4, (H, 1))).save(grey)
    with pytest.raises(ValueError, match="grey.png is not binary"):
        read_forgery_mask(grey)
    colour = _mask(tmp_path / "colour.png", colour=True)
    with pytest.raises(ValueError, match="colour.png is a colour image"):
        read_forgery_mask(colour)


def test_unreadable_and_truncated_images(tmp_path):
    bad = tmp_path / "Tp" / "a.jpg"
    bad.parent.mkdir()
    bad.write_bytes(b"not an image")
    with pytest.raises(ValueError, match="a.jpg"):
        load_record(Record(bad, None))
    good = _image(tmp_path / "full.jpg")
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ValueError, match="cut.jpg"):
        load_record(Record(truncated, None))


def test_missing_or_empty_folders_and_missing_masks(tmp_path):
    with pytest.raises(FileNotFoundError, match="data root"):
        list_layout("casia2", tmp_path / "nowhere")
    (tmp_path / "Tp").mkdir()
    (tmp_path / "Gt").mkdir()
    with pytest.raises(ValueError, match="holds no images"):
        list_layout("casia2", tmp_path)
    for i in range(10):
        _image(tmp_path / "Tp" / f"t{i}.jpg")
    _mask(tmp_path / "Gt" / "t0_gt.png")
    with pytest.raises(ValueError, match=r"9 of 10 forged images have no mask \(e.g. t1.jpg"):
        list_layout("casia2", tmp_path)
    with pytest.raises(ValueError, match="unknown layout"):
        list_layout("imagenet", tmp_path)


def test_datasets_crop_on_the_grid_and_pad_for_evaluation(tmp_path):
    _image(tmp_path / "Tp" / "a.png")
    _mask(tmp_path / "Gt" / "a.png")
    records = list_layout("folder", tmp_path).records
    train = RecordDataset(records, train=True, crop=32)[0]
    assert train["image"].shape == (3, 32, 32) and train["valid"].all()
    test = RecordDataset(records, train=False)[0]
    assert test["image"].shape == (3, 64, 64) and test["valid"].sum() == H * W
    assert torch.equal(test["mask"][0, :H, :W], torch.from_numpy(TRUTH).float())
    resized = RecordDataset(records, train=False, eval_mode="resize", eval_size=64)[0]
    assert resized["image"].shape == (3, 64, 64)
    with pytest.raises(ValueError, match="crop"):
        RecordDataset(records, train=True, crop=40)
    module = IMLDataModule("folder", tmp_path, test_fraction=1.0)
    assert len(module.test_records) == 1 and next(iter(module.test_dataloader()))[
        "image"
    ].shape == (1, 3, 64, 64)


def test_synthetic_datamodule_batches():
    module = SyntheticForgeryDataModule(num_train=32, num_test=8, batch_size=8)
    batch = next(iter(module.train_dataloader()))
    assert batch["image"].shape == (8, 3, 64, 64) and batch["mask"].shape == (8, 1, 64, 64)
    assert batch["image"].max() <= 1 and len(batch["kind"]) == 8
    with pytest.raises(ValueError, match="num_train"):
        SyntheticForgeryDataModule(num_train=0)


def test_datamodule_checks_every_header_before_any_work(tmp_path):
    for i in range(4):
        _image(tmp_path / "Tp" / f"t{i}.png", seed=i)
        _mask(tmp_path / "Gt" / f"t{i}.png")
    assert len(IMLDataModule("folder", tmp_path).train_records) == 3
    _mask(tmp_path / "Gt" / "t3.png", size=(H, W - 8))  # found without loading a batch
    with pytest.raises(ValueError, match=r"mask .*t3\.png is 48 x 40 but its image .*t3\.png"):
        IMLDataModule("folder", tmp_path)
    _mask(tmp_path / "Gt" / "t3.png")
    (tmp_path / "Tp" / "t2.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"cannot read image .*t2\.png"):
        IMLDataModule("folder", tmp_path)
    (tmp_path / "Gt" / "t1.png").write_bytes(b"not a mask")
    _image(tmp_path / "Tp" / "t2.png")
    with pytest.raises(ValueError, match=r"cannot read mask .*t1\.png"):
        IMLDataModule("folder", tmp_path)
    # what needs the pixels is found when read: a file cut after its header
    _mask(tmp_path / "Gt" / "t1.png")
    good = (tmp_path / "Tp" / "t0.png").read_bytes()
    (tmp_path / "Tp" / "t0.png").write_bytes(good[:200])
    module = IMLDataModule("folder", tmp_path, test_fraction=1.0)
    with pytest.raises(ValueError, match=r"t0\.png"):
        for _ in module.test_dataloader():
            pass
