"""A user's own files: unusual but legitimate encodings are read right, wrong ones refused by name."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from PIL import Image

from paperzoo.tripinet.data import (
    check_records,
    list_layout,
    read_forgery_mask,
    read_rgb,
)


def _save_with_orientation(array: np.ndarray, path, orientation: int) -> None:
    image = Image.fromarray(array)
    exif = image.getexif()
    exif[0x0112] = orientation
    image.save(path, exif=exif)


def _folder(root, count: int = 3, size=(24, 32)):
    (root / "Tp").mkdir(parents=True)
    (root / "Gt").mkdir()
    rng = np.random.default_rng(0)
    mask = np.zeros(size, np.uint8)
    mask[4:12, 8:20] = 255
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(
            root / "Tp" / f"t{i}.png"
        )
        Image.fromarray(mask).save(root / "Gt" / f"t{i}.png")
    return root


def test_sixteen_bit_grey_image_is_scaled_not_clipped(tmp_path):
    Image.fromarray(np.array([[0, 257], [32896, 65535]], np.uint16)).save(tmp_path / "a.png")
    assert read_rgb(tmp_path / "a.png")[..., 0].tolist() == [[0, 1], [128, 255]]


def test_sixteen_bit_masks_are_read_over_65535(tmp_path):
    levels = np.zeros((10, 10), np.uint16)
    levels[2:6, 2:6] = 65535
    levels[9, 9] = 20000  # 0.31 of full scale: not tampered (clipped to 8 bits it was 255)
    Image.fromarray(levels).save(tmp_path / "m.png")
    expected = (levels == 65535).astype(np.uint8)
    np.testing.assert_array_equal(read_forgery_mask(tmp_path / "m.png"), expected)
    Image.fromarray((levels == 65535).astype(np.uint16)).save(tmp_path / "m01.png")  # 0/1
    np.testing.assert_array_equal(read_forgery_mask(tmp_path / "m01.png"), expected)
    eight_bit = (levels == 65535).astype(np.uint16) * 255  # 8-bit levels in a 16-bit file
    Image.fromarray(eight_bit).save(tmp_path / "m255.png")
    np.testing.assert_array_equal(read_forgery_mask(tmp_path / "m255.png"), expected)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (
            np.dstack([np.zeros((8, 8, 3), np.uint8), np.eye(8, dtype=np.uint8) * 255]),
            "transparent pixels",
        ),
    ],
    ids=["mask_in_alpha"],
)
def test_masks_that_would_read_as_empty_are_refused(tmp_path, array, message):
    Image.fromarray(array).save(tmp_path / "m.png")
    with pytest.raises(ValueError, match=rf"mask .*m\.png .*{message}"):
        read_forgery_mask(tmp_path / "m.png")


def test_exif_orientation_is_not_applied_and_differing_tags_are_warned_of(tmp_path):
    root = _folder(tmp_path / "data")
    stored = np.asarray(Image.open(root / "Tp" / "t0.png"))
    _save_with_orientation(stored, root / "Tp" / "t0.png", 6)
    listing = list_layout("folder", root)
    with pytest.warns(
        UserWarning, match=r"1 image/mask pairs .*t0\.png \(EXIF orientations: image 6, mask 1"
    ):
        check_records(listing.records)
    _save_with_orientation(np.ascontiguousarray(np.rot90(stored)), root / "Tp" / "t0.png", 6)
    with pytest.raises(
        ValueError, match=r"24 x 32 \(width x height\) \(EXIF orientations: image 6"
    ):
        check_records(listing.records)


def test_hidden_files_are_skipped_and_extensions_are_any_case(tmp_path):
    root = _folder(tmp_path / "data")
    (root / "Tp" / "t2.png").rename(root / "Tp" / "t2.PNG")
    for folder in ("Tp", "Gt"):
        (root / folder / "._t0.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
        (root / folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    records = list_layout("folder", root).records
    assert [r.image.name for r in records] == ["t0.png", "t1.png", "t2.PNG"]
    check_records(records)


def test_json_entries_must_be_path_strings(tmp_path):
    (tmp_path / "list.json").write_text(json.dumps([["a.png", None]]))
    with pytest.raises(ValueError, match=r"list\.json: entry 0 is \['a\.png', None\]"):
        list_layout("json", tmp_path / "list.json")


def test_list_files_in_another_encoding_or_invalid_json_are_refused_by_name(tmp_path):
    (tmp_path / "latin.json").write_bytes(b'[["caf\xe9.png", "Negative"]]')
    with pytest.raises(
        ValueError, match=r"JSON list \S*latin\.json is not UTF-8 text \(.* at byte 6: b'\\xe9'\)"
    ):
        list_layout("json", tmp_path / "latin.json")
    (tmp_path / "broken.json").write_text('[["a.png", "Negative"],\n]')
    # the position is Python's: "Expecting value" at line 2, column 1 on 3.11, "Illegal trailing
    # comma" at line 1, column 23 on 3.13
    with pytest.raises(
        ValueError, match=r"JSON list \S*broken\.json is not valid JSON: .* line \d+, column \d+"
    ):
        list_layout("json", tmp_path / "broken.json")
    (tmp_path / "ref.csv").write_bytes(
        b"TaskID|ProbeFileName|ProbeMaskFileName|IsTarget\nmanipulation|probe/caf\xe9.jpg||N\n"
    )
    with pytest.raises(
        ValueError, match=r"NIST16 reference CSV \S*ref\.csv is not UTF-8 text \(.* at byte 70"
    ):
        list_layout("nist16", tmp_path, csv_path=tmp_path / "ref.csv")


def test_nist16_reference_csv_with_bom_and_an_appledouble_twin_is_read(tmp_path):
    """Found under ``reference/manipulation/``, the macOS ``._`` twin of the reference CSV (which
    sorts first) is no reference; a byte-order mark and CRLF line ends are read."""
    folder = tmp_path / "reference" / "manipulation"
    folder.mkdir(parents=True)
    (folder / "._NC2016-manipulation-ref.csv").write_bytes(b"\x00\x05\x16\x07\x00\x02Mac OS X")
    (folder / "NC2016-manipulation-ref.csv").write_text(
        "\ufeffTaskID|ProbeFileName|ProbeMaskFileName|IsTarget\r\nmanipulation|probe/a.jpg||N\r\n",
        encoding="utf-8",
        newline="",
    )
    records = list_layout("nist16", tmp_path).records
    assert [(r.image, r.mask) for r in records] == [(tmp_path / "probe" / "a.jpg", None)]


def test_nist16_row_with_missing_fields_is_named(tmp_path):
    csv = tmp_path / "ref.csv"
    csv.write_text("TaskID|ProbeFileName|ProbeMaskFileName|IsTarget\nmanipulation|probe/a.jpg\n")
    with pytest.raises(ValueError, match=r"ref\.csv line 2 has fewer fields"):
        list_layout("nist16", tmp_path, csv_path=csv)


def test_predict_takes_a_folder_and_warns_of_exif_tags(tmp_path, caplog):
    from paperzoo.tripinet.cli import main
    from paperzoo.tripinet.model import create_model
    from paperzoo.tripinet.pipeline import save_localizer

    ckpt = save_localizer(
        create_model("tiny", streams=("rgb",)),
        tmp_path / "model.safetensors",
        "tiny",
        {"streams": ("rgb",)},
    )
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (20, 36, 3), dtype=np.uint8)).save(images / "a.png")
    _save_with_orientation(rng.integers(0, 256, (20, 36, 3), dtype=np.uint8), images / "B.JPG", 6)
    (images / "._a.png").write_bytes(b"\x00\x05\x16\x07")
    (images / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING):
        assert (
            main(["predict", "--ckpt", str(ckpt), "--image", f'["{images}"]', "--out", str(out)])
            == 0
        )
    assert sorted(p.name for p in out.glob("*_prob.png")) == ["B_prob.png", "a_prob.png"]
    assert Image.open(out / "B_prob.png").size == (36, 20)  # the stored pixels, not turned
    assert "1 image(s) carry an EXIF orientation tag" in caplog.text
