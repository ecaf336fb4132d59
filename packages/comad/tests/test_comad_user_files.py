"""A user's own files: images in unusual but legitimate encodings are read as displayed, LOCO
masks in other encodings give the same defect, broken or ambiguous files are refused naming them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from paperzoo.comad.data import LocoCategory, load_images, read_images
from paperzoo.core import testing

# a 4 x 4 image: left half (200, 100, 50), right half black
RGB = np.zeros((4, 4, 3), np.uint8)
RGB[:, :2] = (200, 100, 50)


@pytest.mark.parametrize("name, make, expected", testing.image_encodings())
def test_images_in_other_encodings_read_as_displayed(tmp_path, name, make, expected):
    testing.check_image_read(lambda p: read_images([p])[0], tmp_path, name, make, expected)


def test_a_jpeg_is_turned_by_its_exif_orientation(tmp_path):
    wide = np.zeros((4, 8, 3), np.uint8)
    wide[:, :4] = 255  # left half white; orientation 6: displayed turned 90 degrees clockwise
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(wide).save(tmp_path / "turned.jpg", exif=exif, quality=100)
    grey = read_images([tmp_path / "turned.jpg"])[0].mean(axis=2)
    assert grey.shape == (8, 4)
    assert grey[:3].min() > 240 and grey[5:].max() < 15  # white on top


@pytest.mark.parametrize(
    "name, make, match",
    [
        (
            "alpha.png",
            lambda: Image.fromarray(np.dstack([RGB, np.zeros((4, 4), np.uint8)]), "RGBA"),
            r"alpha\.png has transparent pixels",
        ),
        (
            "wide.tif",
            lambda: Image.fromarray(np.full((4, 4), 200.0, np.float32), "F"),
            r"wide\.tif: 32-bit float samples must lie in \[0, 1\]",
        ),
    ],
)
def test_transparent_images_and_floats_outside_the_unit_range_are_refused(
    tmp_path, name, make, match
):
    make().save(tmp_path / name)
    with pytest.raises(ValueError, match=match):
        read_images([tmp_path / name])


def test_hidden_files_in_image_folders_are_skipped_and_an_empty_npz_refused(tmp_path):
    """macOS leaves ``._a.png`` (not an image) and ``.DS_Store`` beside the images."""
    (tmp_path / "own").mkdir()
    Image.fromarray(RGB).save(tmp_path / "own" / "a.png")
    (tmp_path / "own" / "._a.png").write_bytes(b"\x00\x05\x16\x07")
    (tmp_path / "own" / ".DS_Store").write_bytes(b"\x00\x00")
    assert [p.name for p in load_images(tmp_path / "own").paths] == ["a.png"]
    np.savez(tmp_path / "empty.npz", images=np.zeros((0, 4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match=r"empty\.npz:images must be .* N >= 1"):
        load_images(f"npz:{tmp_path / 'empty.npz'}")


def _loco(root, masks):
    """A LOCO category whose one logical test image has the ground-truth ``masks``."""
    folder = root / "cat"
    for sub in ("train/good", "validation/good", "test/good", "test/structural_anomalies"):
        (folder / sub).mkdir(parents=True)
    for i in range(6):
        Image.fromarray(RGB).save(folder / "train/good" / f"{i:03d}.png")
    (folder / "test/logical_anomalies").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "test/logical_anomalies/000.png")
    gt = folder / "ground_truth/logical_anomalies/000"
    gt.mkdir(parents=True)
    for i, mask in enumerate(masks):
        mask.save(gt / f"{i:03d}.png")
    config = [
        {"defect_name": "missing", "pixel_value": 255},
        {"defect_name": "extra", "pixel_value": 254},
    ]
    (folder / "defects_config.json").write_text(json.dumps(config))
    return folder


def _mask(value=255, dtype=np.uint8):
    mask = np.zeros((8, 8), dtype)
    mask[2:6, 2:6] = value
    return mask


def _anti_aliased():
    mask = _mask()
    mask[1, 2:6] = 254  # a grey edge that happens to be another defect's pixel value
    mask[6, 2:6] = 128
    return Image.fromarray(mask)


@pytest.mark.parametrize(
    "make",
    [
        lambda: Image.fromarray(_mask()),
        lambda: Image.fromarray(np.dstack([_mask()] * 3)),  # grey RGB
        lambda: Image.fromarray(_mask()).convert("P"),
        lambda: Image.fromarray(_mask(255 * 257, np.uint16)),  # 16-bit, scaled by 257
        lambda: Image.fromarray(_mask(255, np.uint16)),  # 16-bit, the 8-bit value as is
        _anti_aliased,
        lambda: Image.fromarray(
            np.dstack([_mask()] * 3 + [np.full((8, 8), 255, np.uint8)]), "RGBA"
        ),
    ],
    ids=["grey", "rgb", "palette", "16bit-scaled", "16bit-raw", "anti-aliased", "opaque-alpha"],
)
def test_masks_in_other_encodings_give_the_same_defect(tmp_path, make):
    loco = LocoCategory(_loco(tmp_path, [make()]).parent, "cat")
    assert loco.test("logical").subtypes == ["missing"]


@pytest.mark.parametrize(
    "make, match",
    [
        (
            lambda: Image.fromarray(np.dstack([_mask(), _mask(0), _mask(0)])),
            r"000\.png: a colour mask",
        ),
        (lambda: Image.fromarray(_mask(1000, np.uint16)), r"000\.png: 16-bit mask values"),
        (lambda: Image.fromarray(np.full((4, 4), 255, np.uint8)), r"mask .*000\.png is 4x4 .*8x8"),
        (  # black pixels, the defect in the alpha band: read without it, an empty mask
            lambda: Image.fromarray(np.dstack([_mask(0)] * 3 + [_mask()]), "RGBA"),
            r"000\.png has transparent pixels .*alpha band",
        ),
    ],
    ids=["colour", "16bit-other", "size", "mask-in-alpha"],
)
def test_masks_that_cannot_be_read_as_defect_values_are_refused(tmp_path, make, match):
    loco = LocoCategory(_loco(tmp_path, [make()]).parent, "cat")
    with pytest.raises(ValueError, match=match):
        loco.test("logical")


def test_hidden_entries_in_ground_truth_are_skipped(tmp_path):
    folder = _loco(tmp_path, [Image.fromarray(_mask())])
    (folder / "ground_truth/logical_anomalies/.ipynb_checkpoints").mkdir()
    (folder / "ground_truth/logical_anomalies/000/._000.png").write_bytes(b"\x00\x05\x16\x07")
    loco = LocoCategory(tmp_path, "cat")
    assert loco.test("logical").subtypes == ["missing"]
    assert len(loco.masks(folder / "test/logical_anomalies/000.png")) == 1


def test_hidden_and_macos_archive_folders_in_ground_truth_are_skipped(tmp_path):
    """A zip made on macOS holds ``__MACOSX/`` beside the stems, with ``._`` twins inside."""
    folder = _loco(tmp_path, [Image.fromarray(_mask())])
    twins = folder / "ground_truth/logical_anomalies/__MACOSX/000"
    twins.mkdir(parents=True)
    (twins / "._000.png").write_bytes(b"\x00\x05\x16\x07")
    (tmp_path / "__MACOSX").mkdir()
    loco = LocoCategory(tmp_path, "cat")
    assert loco.test("logical").subtypes == ["missing"]
    with pytest.raises(FileNotFoundError, match=r"categories here: \['cat'\]"):
        LocoCategory(tmp_path, "dog")


def _turned_loco(root, mask, mask_exif=None):
    """A LOCO category whose logical test image is stored 8 wide, 4 high with EXIF orientation 6
    (displayed 4 wide, 8 high), and has the ground-truth ``mask``."""
    exif = Image.Exif()
    exif[0x0112] = 6
    folder = _loco(root, [Image.fromarray(mask)])
    stored = np.zeros((4, 8, 3), np.uint8)
    Image.fromarray(stored).save(folder / "test/logical_anomalies/000.png", exif=exif)
    if mask_exif is not None:
        Image.fromarray(mask).save(
            folder / "ground_truth/logical_anomalies/000/000.png", exif=mask_exif
        )
    return LocoCategory(root, "cat"), folder / "test/logical_anomalies/000.png"


def test_masks_are_read_as_displayed_like_their_image(tmp_path):
    """Images are read upright; a mask drawn on the upright image lines up with it, a mask drawn
    on the stored pixels is refused with the orientation named, and a mask carrying the same
    EXIF orientation as its image is turned with it."""
    on_stored = np.zeros((4, 8), np.uint8)
    on_stored[:, :2] = 255  # the first two stored columns: the top two rows as displayed
    upright = np.rot90(on_stored, -1).copy()  # orientation 6: turned 90 degrees clockwise
    loco, image = _turned_loco(tmp_path / "a", upright)
    (mask,) = loco.masks(image)
    assert mask.shape == loco.test("logical").images.shape[1:3] == (8, 4)
    assert mask[:2].min() == 255 and mask[2:].max() == 0
    loco, image = _turned_loco(tmp_path / "b", on_stored)
    with pytest.raises(
        ValueError,
        match=r"is 8x4 but its image .* is 4x8 as displayed \(EXIF "
        r"orientation 6 turns its stored 8x4 pixels\)",
    ):
        loco.masks(image)
    exif = Image.Exif()
    exif[0x0112] = 6
    loco, image = _turned_loco(tmp_path / "c", on_stored, mask_exif=exif)
    (mask,) = loco.masks(image)
    assert mask[:2].min() == 255 and mask[2:].max() == 0


def test_a_defects_config_with_a_byte_order_mark_reads_and_latin1_is_refused(tmp_path):
    folder = _loco(tmp_path, [Image.fromarray(_mask())])
    config = folder / "defects_config.json"
    config.write_bytes(b"\xef\xbb\xbf" + config.read_bytes())  # saved by a Windows editor
    assert LocoCategory(tmp_path, "cat").test("logical").subtypes == ["missing"]
    config.write_bytes(b'[{"defect_name": "\xe9cart", "pixel_value": 255}]')
    with pytest.raises(ValueError, match=r"defects config .*defects_config\.json is not UTF-8"):
        LocoCategory(tmp_path, "cat")


def test_a_weights_file_with_nan_is_refused_naming_the_key(tmp_path):
    import timm

    from paperzoo.comad.features import TimmViT
    from paperzoo.core.checkpoint import save_weights

    kwargs = dict(depth=1, embed_dim=24, num_heads=2)
    source = timm.create_model(
        "vit_small_patch8_224.dino", pretrained=False, num_classes=0, img_size=32, **kwargs
    )
    with torch.no_grad():
        source.pos_embed[0, 0, 0] = float("nan")
    path = save_weights(source, tmp_path / "nan.safetensors")
    with pytest.raises(ValueError, match=r"nan\.safetensors: weight 'pos_embed' holds NaN"):
        TimmViT("vit_small_patch8_224.dino", path, img_size=32, **kwargs)


class TrainingState:
    """A class pickled into a checkpoint: loading it would run arbitrary code."""


def _tiny_vit_state():
    import timm

    kwargs = dict(depth=1, embed_dim=24, num_heads=2)
    source = timm.create_model(
        "vit_small_patch8_224.dino", pretrained=False, num_classes=0, img_size=32, **kwargs
    )
    return source.state_dict(), kwargs


def _dino_full_checkpoint(state, teacher_prefix="backbone.", **extra):
    """A DINO full training checkpoint as facebookresearch/dino's main_dino.py saves it."""
    import argparse

    return {
        "student": {
            **{f"module.backbone.{k}": v for k, v in state.items()},
            "module.head.mlp.0.weight": torch.ones(3, 24),
        },
        "teacher": {
            **{f"{teacher_prefix}{k}": v for k, v in state.items()},
            "head.mlp.0.weight": torch.ones(3, 24),
            "head.last_layer.weight_g": torch.ones(5, 1),
        },
        "optimizer": {
            "state": {0: {"step": torch.tensor(3.0)}},
            "param_groups": [{"lr": 0.0005, "params": [0]}],
        },
        "epoch": 3,
        "args": argparse.Namespace(arch="vit_small", patch_size=8, out_dim=65536),
        "dino_loss": {"center": torch.zeros(1, 5)},
        "fp16_scaler": None,
        **extra,
    }


@pytest.mark.parametrize("teacher_prefix", ["backbone.", "module.backbone."])
def test_a_dino_full_training_checkpoint_gives_its_teacher_backbone(tmp_path, teacher_prefix):
    from paperzoo.comad.features import TimmViT

    state, kwargs = _tiny_vit_state()
    student = {k: torch.zeros_like(v) for k, v in state.items()}
    backbone_only = tmp_path / "dino_pretrain.pth"
    torch.save(state, backbone_only)
    full = tmp_path / "dino_pretrain_full_checkpoint.pth"
    checkpoint = _dino_full_checkpoint(state, teacher_prefix)
    checkpoint["student"] = {f"module.backbone.{k}": v for k, v in student.items()}
    torch.save(checkpoint, full)
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    expected = TimmViT("vit_small_patch8_224.dino", backbone_only, img_size=32, **kwargs)(images)
    found = TimmViT("vit_small_patch8_224.dino", full, img_size=32, **kwargs)(images)
    assert torch.equal(found, expected)


def _namespace_without_teacher(state):
    import argparse

    return {"model": state, "args": argparse.Namespace(arch="vit_small")}


@pytest.mark.parametrize(
    ("make_checkpoint", "message"),
    [
        (
            lambda state: _dino_full_checkpoint(state, trainer=TrainingState()),
            r"full_checkpoint\.pth cannot be read safely .*pickled \S*TrainingState.*"
            r"backbone-only release \(e\.g\. dino_deitsmall8_pretrain\.pth\) or a \.safetensors",
        ),
        (
            lambda state: _dino_full_checkpoint(
                {k: v for k, v in state.items() if k != "pos_embed"}
            ),
            r"full_checkpoint\.pth \(teacher backbone of a DINO training checkpoint\): "
            r"missing key 'pos_embed'",
        ),
        (_namespace_without_teacher, r"full_checkpoint\.pth holds neither .*'teacher'"),
    ],
    ids=["another_pickled_class", "teacher_misses_a_key", "namespace_without_teacher"],
)
def test_a_bad_dino_checkpoint_is_refused_naming_the_file(tmp_path, make_checkpoint, message):
    from paperzoo.comad.features import TimmViT

    state, kwargs = _tiny_vit_state()
    path = tmp_path / "full_checkpoint.pth"
    torch.save(make_checkpoint(state), path)
    with pytest.raises(ValueError, match=message):
        TimmViT("vit_small_patch8_224.dino", path, img_size=32, **kwargs)
