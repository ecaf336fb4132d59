"""A user's own files: unusual but legitimate encodings are read right, wrong ones refused by name."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from paperzoo.hodinet.data import RGBDSODFolder, read_depth, read_gt

from .conftest import write_set


def _with_orientation(array: np.ndarray, path, orientation: int) -> None:
    image = Image.fromarray(array)
    exif = image.getexif()
    exif[0x0112] = orientation
    image.save(path, exif=exif)


def _palette_image(indices: np.ndarray, palette: list[int]) -> Image.Image:
    image = Image.frombytes("P", indices.shape[::-1], indices.astype(np.uint8).tobytes())
    image.putpalette(palette)
    return image


def test_exif_orientation_is_not_applied_and_differing_tags_are_warned_of(tmp_path):
    """Pixels are read as stored (the core's policy): an RGB tagged 'turned 90 degrees' still
    pairs with its stored-size depth and GT, with a warning; stored at the shown size, the size
    error says why."""
    folder = write_set(tmp_path / "NJU2K", stems=("a", "b"), size=(40, 30))
    stored = np.asarray(Image.open(folder / "RGB" / "a.jpg"))
    (folder / "RGB" / "a.jpg").unlink()
    _with_orientation(stored, folder / "RGB" / "a.png", 6)
    with pytest.warns(UserWarning, match=r"1 RGB/depth/GT triples carry different EXIF orientations, "
                                         r"e\.g\. a \(EXIF orientations RGB 6, depth 1, GT 1"):
        dataset = RGBDSODFolder(folder, 40)
    assert dataset.stems == ["a", "b"]
    as_stored = torch.from_numpy(stored / np.float32(255)).permute(2, 0, 1)[None]
    expected = F.interpolate(as_stored, size=(40, 40), mode="bilinear", align_corners=False)[0]
    torch.testing.assert_close(dataset[0][0], expected, atol=0, rtol=0)
    _with_orientation(np.ascontiguousarray(np.rot90(stored)), folder / "RGB" / "a.png", 6)
    with pytest.raises(ValueError, match=r"a\.png is 30x40 but depth .*a\.png is 40x30 \(EXIF orientations RGB 6"):
        RGBDSODFolder(folder, 40)


@pytest.mark.parametrize(("name", "levels", "expected"), [
    ("grey_palette", None, [[0, 1], [1, 0]]),
    ("sixteen_bit_grey", np.array([[0, 20000], [40000, 65535]], np.uint16), [[0, 0], [1, 1]]),
    ("sixteen_bit_0_1", np.array([[0, 1], [1, 0]], np.uint16), [[0, 1], [1, 0]]),
    ("sixteen_bit_8_bit_levels", np.array([[0, 255], [200, 100]], np.uint16), [[0, 1], [1, 0]]),
    ("anti_aliased", np.array([[127, 128], [255, 0]], np.uint8), [[0, 1], [1, 0]]),
    ("opaque_la", np.dstack([np.array([[0, 255], [255, 0]], np.uint8), np.full((2, 2), 255, np.uint8)]),
     [[0, 1], [1, 0]]),
])
def test_gt_encodings_are_read_at_their_own_scale(tmp_path, name, levels, expected):
    path = tmp_path / f"{name}.png"
    if levels is None:  # index 0 is white, index 1 black: read by colour, not by index
        _palette_image(np.array([[0, 1], [1, 0]]), [255, 255, 255, 0, 0, 0]).save(path)
        expected = [[1, 0], [0, 1]]
    else:
        Image.fromarray(levels).save(path)
    assert read_gt(path)[0].tolist() == expected


def _davis_palette_mask(path) -> None:
    _palette_image(np.array([[0, 1], [1, 0]]), [0, 0, 0, 128, 0, 0]).save(path)  # object: dark red


@pytest.mark.parametrize(("writer", "message"), [
    (_davis_palette_mask, "in colour"),
    (lambda p: Image.fromarray(np.dstack([np.zeros((8, 8), np.uint8)] * 3 + [np.eye(8, dtype=np.uint8) * 255])
                               ).save(p), "transparent pixels"),
    (lambda p: Image.fromarray(np.dstack([np.eye(4, dtype=np.uint8) * 255, np.zeros((4, 4, 2), np.uint8)])).save(p),
     "in colour"),
])
def test_ambiguous_gt_is_refused_by_name(tmp_path, writer, message):
    path = tmp_path / "m.png"
    writer(path)
    with pytest.raises(ValueError, match=f"{path.name}.*{message}|{message}.*{path.name}"):
        read_gt(path)


def test_palette_depth_is_read_by_its_grey_levels_not_its_indices(tmp_path):
    palette = [250, 250, 250, 200, 200, 200, 100, 100, 100, 10, 10, 10]
    _palette_image(np.array([[0, 1], [2, 3]]), palette).save(tmp_path / "d.png")
    np.testing.assert_array_equal(read_depth(tmp_path / "d.png"), [[250.0, 200.0], [100.0, 10.0]])


def test_colour_mapped_depth_and_transparent_depth_are_refused(tmp_path):
    jet = np.zeros((8, 8, 3), np.uint8)
    jet[..., 0] = np.linspace(0, 255, 8, dtype=np.uint8)
    jet[..., 2] = 255 - jet[..., 0]
    Image.fromarray(jet).save(tmp_path / "jet.png")
    with pytest.raises(ValueError, match=r"jet\.png is a colour image"):
        read_depth(tmp_path / "jet.png")
    grey = np.full((8, 8, 3), 90, np.uint8)
    Image.fromarray(grey).save(tmp_path / "grey.png")  # 3 equal channels: grey
    np.testing.assert_array_equal(read_depth(tmp_path / "grey.png"), np.full((8, 8), 90.0))
    Image.fromarray(np.dstack([grey, np.full((8, 8), 255, np.uint8)])).save(tmp_path / "opaque.png")
    np.testing.assert_array_equal(read_depth(tmp_path / "opaque.png"), np.full((8, 8), 90.0))


def test_gt_of_another_size_than_its_rgb_is_refused_when_the_folder_opens(tmp_path):
    folder = write_set(tmp_path / "SIP", size=(40, 30))
    Image.fromarray(np.zeros((15, 20), np.uint8)).save(folder / "GT" / "b.png")
    with pytest.raises(ValueError, match=r"b\.jpg is 40x30 but GT .*b\.png is 20x15"):
        RGBDSODFolder(folder, 32)


def test_hidden_files_are_skipped_and_extensions_are_any_case(tmp_path):
    folder = write_set(tmp_path / "NLPR", stems=("a", "b"))
    (folder / "RGB" / "b.jpg").rename(folder / "RGB" / "b.JPG")
    (folder / "GT" / "b.png").rename(folder / "GT" / "b.PNG")
    (folder / "RGB" / "._a.jpg").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (folder / "depth" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dataset = RGBDSODFolder(folder, 32)
    assert dataset.stems == ["a", "b"]
    (folder / "RGB" / "c.jpg").write_bytes((folder / "RGB" / "a.jpg").read_bytes())
    with pytest.raises(ValueError, match=r"1 in .*RGB without a partner \(e\.g\. c\)"):
        RGBDSODFolder(folder, 32)
