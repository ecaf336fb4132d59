"""A user's own files: frames in unusual but legitimate encodings are read as displayed, broken or
ambiguous ones are refused naming the file; list, split and genotype files and npz arrays alike."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from paperzoo.core import testing
from paperzoo.forgerynas.data import (
    FrameList,
    celebdf_frames,
    csv_frames,
    ffpp_frames,
    npz_frames,
    read_celebdf_test_list,
    read_ffpp_split,
)
from paperzoo.forgerynas.pipeline import load_trace
from paperzoo.forgerynas.search_space import BUILTIN_GENOTYPES, load_genotype

# a 4 x 4 frame: left half (200, 100, 50), right half black
RGB = np.zeros((4, 4, 3), np.uint8)
RGB[:, :2] = (200, 100, 50)


def _read(path):
    """The frame as FrameList returns it, scaled back to 0..255."""
    image = FrameList([(path, 0, "v")], size=4)[0][0]
    return (image.permute(1, 2, 0).numpy() * 255).round().astype(int)


def _save(path, image, **kwargs):
    image.save(path, **kwargs)
    return path


@pytest.mark.parametrize("name, make, expected", testing.image_encodings())
def test_frames_in_other_encodings_read_as_displayed(tmp_path, name, make, expected):
    testing.check_image_read(_read, tmp_path, name, make, expected)


def _celebdf_tree(celeb, *extra):
    """A Celeb-DF frame tree of one-frame videos: three training videos, the test video
    ``YouTube-real/00000`` and ``extra`` ``(folder, video)`` pairs."""
    for sub, video in (
        ("Celeb-real", "id0_0000"),
        ("Celeb-real", "id1_0000"),
        ("Celeb-synthesis", "id0_id1_0000"),
        *extra,
        ("YouTube-real", "00000"),
    ):
        (celeb / sub / "frames" / video).mkdir(parents=True)
        Image.fromarray(RGB).save(celeb / sub / "frames" / video / "0000.png")
    return celeb


TRAINING_VIDEOS = {"Celeb-real/id0_0000", "Celeb-real/id1_0000", "Celeb-synthesis/id0_id1_0000"}


def _train_and_val_videos(celeb):
    return {
        video
        for split in ("train", "val")
        for video in celebdf_frames(celeb, split, size=4, val_fraction=0.3).videos
    }


def test_a_jpeg_frame_is_turned_by_its_exif_orientation(tmp_path):
    wide = np.zeros((4, 8, 3), np.uint8)
    wide[:, :4] = 255  # left half white; orientation 6: displayed turned 90 degrees clockwise
    exif = Image.Exif()
    exif[0x0112] = 6
    path = _save(tmp_path / "turned.jpg", Image.fromarray(wide), exif=exif, quality=100)
    pixels = _read(path).mean(axis=2)
    assert pixels[0].min() > 240 and pixels[3].max() < 15  # white on top, not on the left


@pytest.mark.parametrize(
    "name, make, match",
    [
        (
            "alpha.png",
            lambda: Image.fromarray(np.dstack([RGB, np.zeros((4, 4), np.uint8)]), "RGBA"),
            "alpha.png .*transparent pixels",
        ),
        (
            "grey_alpha.png",
            lambda: Image.fromarray(np.dstack([RGB[..., 0], RGB[..., 1]]), "LA"),
            "grey_alpha.png .*transparent pixels",
        ),
    ],
)
def test_transparent_frames_are_refused_up_front(tmp_path, name, make, match):
    path = _save(tmp_path / name, make())
    with pytest.raises(ValueError, match=match):
        FrameList([(path, 0, "v")], size=4)


def test_float_frames_outside_the_unit_range_are_refused(tmp_path):
    path = _save(tmp_path / "wide.tif", Image.fromarray(np.full((4, 4), 200.0, np.float32), "F"))
    with pytest.raises(
        ValueError, match=r"wide\.tif \(video v\): .*32-bit float samples must lie in \[0, 1\]"
    ):
        _read(path)


def test_hidden_files_in_frame_folders_are_skipped(tmp_path):
    """macOS leaves ``._0000.png`` (not an image) and ``.DS_Store`` beside the frames, and a
    hidden folder (``.ipynb_checkpoints``) beside the videos."""
    root = tmp_path / "ffpp"
    for folder in (
        "original_sequences/youtube/c23/frames/000",
        "original_sequences/youtube/c23/frames/001",
        "manipulated_sequences/Deepfakes/c23/frames/000_001",
        "manipulated_sequences/Deepfakes/c23/frames/001_000",
    ):
        (root / folder).mkdir(parents=True)
        Image.fromarray(RGB).save(root / folder / "0000.png")
        (root / folder / "._0000.png").write_bytes(b"\x00\x05\x16\x07")
        (root / folder / ".DS_Store").write_bytes(b"\x00\x00")
    (root / "splits").mkdir()
    (root / "splits/train.json").write_text(json.dumps([["000", "001"]]))
    frames = ffpp_frames(root, "train", methods=("Deepfakes",), size=4)
    assert len(frames) == 4 and all(p.name == "0000.png" for p in frames.paths)

    celeb = _celebdf_tree(tmp_path / "celeb")
    (celeb / "Celeb-real/frames/.ipynb_checkpoints").mkdir()
    (celeb / "List_of_testing_videos.txt").write_text("1 YouTube-real/00000.mp4\n")
    train = celebdf_frames(celeb, "train", size=4, val_fraction=0.3)
    val = celebdf_frames(celeb, "val", size=4, val_fraction=0.3)
    assert len(train) + len(val) == 3  # the hidden folder is no video


def test_macos_archive_folders_beside_celebdf_videos_are_skipped(tmp_path):
    """A zip made on macOS holds ``__MACOSX/`` with ``._`` twins of the frames: no video."""
    celeb = _celebdf_tree(tmp_path / "celeb", ("Celeb-synthesis", "__MACOSX"))
    (celeb / "Celeb-synthesis/frames/__MACOSX/._0000.png").write_bytes(b"\x00\x05\x16\x07")
    (celeb / "List_of_testing_videos.txt").write_text("1 YouTube-real/00000.mp4\n")
    assert _train_and_val_videos(celeb) == TRAINING_VIDEOS


def test_a_celebdf_test_list_with_windows_separators_is_read(tmp_path):
    """``1 YouTube-real\\00000.mp4`` names the same video as ``1 YouTube-real/00000.mp4``: its
    test videos are found, and kept out of train and val."""
    celeb = _celebdf_tree(tmp_path / "celeb", ("Celeb-synthesis", "id1_id0_0000"))
    (celeb / "List_of_testing_videos.txt").write_bytes(
        b"1 YouTube-real\\00000.mp4\r\n0 Celeb-synthesis\\id1_id0_0000.mp4\r\n"
    )
    assert read_celebdf_test_list(celeb) == [
        (0, "YouTube-real/00000.mp4"),
        (1, "Celeb-synthesis/id1_id0_0000.mp4"),
    ]
    test = celebdf_frames(celeb, "test", size=4)
    assert test.videos == ["Celeb-synthesis/id1_id0_0000", "YouTube-real/00000"]
    assert test.labels.tolist() == [0, 1]
    assert _train_and_val_videos(celeb) == TRAINING_VIDEOS


def test_text_files_with_a_byte_order_mark_are_read(tmp_path):
    """Spreadsheet and Windows editors start UTF-8 files with a BOM."""
    Image.fromarray(RGB).save(tmp_path / "a.png")
    (tmp_path / "list.csv").write_text("\ufeffpath,label,video_id\na.png,1,v\n", encoding="utf-8")
    assert csv_frames(tmp_path / "list.csv", size=4).labels.tolist() == [1]
    (tmp_path / "List_of_testing_videos.txt").write_text("\ufeff1 YouTube-real/00000.mp4\n")
    assert read_celebdf_test_list(tmp_path) == [(0, "YouTube-real/00000.mp4")]
    genotype = BUILTIN_GENOTYPES["paper-cross"]
    (tmp_path / "g.json").write_text("\ufeff" + json.dumps(genotype.to_dict()), encoding="utf-8")
    assert load_genotype(tmp_path / "g.json") == genotype


def test_malformed_text_files_are_refused_naming_the_file(tmp_path):
    Image.fromarray(RGB).save(tmp_path / "a.png")
    (tmp_path / "short.csv").write_text("path,label,video_id\na.png,1\n")
    with pytest.raises(ValueError, match=r"short.csv:2: a row needs path, label and video_id"):
        csv_frames(tmp_path / "short.csv")
    (tmp_path / "latin.csv").write_bytes(
        "path,label,video_id\nvisage_é.png,1,v\n".encode("latin-1")
    )
    with pytest.raises(
        ValueError, match=r"frame list \S*latin\.csv is not UTF-8 text \(.* at byte 27: b'\\xe9'\)"
    ):
        csv_frames(tmp_path / "latin.csv")
    (tmp_path / "List_of_testing_videos.txt").write_bytes(b"1 YouTube-real/caf\xe9.mp4\n")
    with pytest.raises(
        ValueError, match=r"Celeb-DF test list \S*List_of_testing_videos\.txt is not UTF-8 text"
    ):
        read_celebdf_test_list(tmp_path)
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits/train.json").write_text('[["000", "001"],]')
    with pytest.raises(
        ValueError, match=r"FF\+\+ split file \S*train\.json is not valid JSON: .* line 1, column"
    ):
        read_ffpp_split(tmp_path / "splits/train.json")
    (tmp_path / "latin.json").write_bytes(b'{"space": "caf\xe9"}')
    with pytest.raises(ValueError, match=r"genotype file \S*latin\.json is not UTF-8 text"):
        load_genotype(tmp_path / "latin.json")
    (tmp_path / "trace.json").write_text('{"format": ')
    with pytest.raises(ValueError, match=r"search trace \S*trace\.json is not valid JSON"):
        load_trace(tmp_path / "trace.json")
    data = BUILTIN_GENOTYPES["paper-cross"].to_dict()
    for field, value, match in (
        ("normal_concat", "2345", "normal_concat must be a list of state indices, got '2345'"),
        ("reduce_concat", [2.5, 3], r"reduce_concat must be a list of state indices"),
        ("normal_concat", None, "normal_concat must be a list of state indices, got None"),
        ("space", ["forgery"], r"space must be a string, got \['forgery'\]"),
    ):
        (tmp_path / "g.json").write_text(json.dumps({**data, field: value}))
        with pytest.raises(ValueError, match=r"g\.json: " + match):
            load_genotype(tmp_path / "g.json")


def test_npz_frames_in_big_endian_and_fortran_order_are_read(tmp_path):
    images = np.random.default_rng(0).random((2, 3, 4, 4))
    for name, stored in (
        ("big.npz", images.astype(">f4")),
        ("fortran.npz", np.asfortranarray(images)),
        ("half.npz", images.astype(np.float16)),
    ):
        np.savez(tmp_path / name, images=stored, labels=np.array([0, 1], ">i8"))
        frames = npz_frames(tmp_path / name)
        assert np.allclose(frames.images.numpy(), stored.astype(np.float64), atol=0)
        assert frames.labels.tolist() == [0, 1]
