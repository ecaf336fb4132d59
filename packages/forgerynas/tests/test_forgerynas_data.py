from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from paperzoo.forgerynas.data import (
    BalancedBatchSampler,
    celebdf_frames,
    csv_frames,
    ffpp_frames,
    load_frames,
    npz_frames,
)
from paperzoo.forgerynas.forgeries import PHOTO_POOLS, make_domain, source_pools


def _frames(folder, n=3, size=8):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(np.full((size, size, 3), 40 * i, np.uint8)).save(folder / f"{i:04d}.png")


def _ffpp(root, pairs):
    for a, b in pairs:
        for vid in (a, b):
            _frames(root / "original_sequences/youtube/c23/frames" / vid)
        for vid in (f"{a}_{b}", f"{b}_{a}"):
            _frames(root / "manipulated_sequences/Deepfakes/c23/frames" / vid)
    (root / "splits").mkdir(parents=True, exist_ok=True)
    (root / "splits/train.json").write_text(json.dumps([list(pairs[0])]))
    (root / "splits/test.json").write_text(json.dumps([list(pairs[1])]))


def test_ffpp_splits_are_pair_disjoint(tmp_path):
    _ffpp(tmp_path, [("000", "001"), ("002", "003")])
    train = ffpp_frames(tmp_path, "train", methods=("Deepfakes",), frames_per_video=2, size=8)
    test = ffpp_frames(tmp_path, "test", methods=("Deepfakes",), frames_per_video=2, size=8)
    ids = lambda s: {part for v in s.videos for part in v.split("/")[1].split("_")}  # noqa: E731
    assert ids(train) == {"000", "001"} and ids(test) == {"002", "003"}
    assert len(train) == 8 and train.labels.sum() == 4
    image, label, video = train[0]
    assert image.shape == (3, 8, 8)


def test_ffpp_bad_inputs(tmp_path):
    _ffpp(tmp_path, [("000", "001"), ("002", "003")])
    (tmp_path / "splits/val.json").write_text(json.dumps([["000"]]))
    with pytest.raises(ValueError, match="pairs"):
        ffpp_frames(tmp_path, "val")
    for p in (tmp_path / "original_sequences/youtube/c23/frames/000").iterdir():
        p.unlink()
    with pytest.raises(ValueError, match="empty frame folder"):
        ffpp_frames(tmp_path, "train", methods=("Deepfakes",))
    with pytest.raises(FileNotFoundError, match="split file"):
        ffpp_frames(tmp_path, "nosuch")


def test_missing_dataset_folders_are_refused_naming_them(tmp_path):
    """A missing FF++ root, FF++ method folder or Celeb-DF root: the error names the folder
    (they were reported as a missing split file, test list or one video's frame folder)."""
    import re
    import shutil

    missing = tmp_path / "nowhere"
    for call in (lambda: ffpp_frames(missing, "train"), lambda: load_frames(f"ffpp:{missing}")):
        with pytest.raises(FileNotFoundError, match=re.escape(f"FF++ root not found: {missing}")):
            call()
    for call in (
        lambda: celebdf_frames(missing, "test"),
        lambda: load_frames(f"celebdf:{missing}", "train"),
    ):
        with pytest.raises(
            FileNotFoundError, match=f"Celeb-DF root not found: {re.escape(str(missing))}$"
        ):
            call()
    root = tmp_path / "ffpp"
    _ffpp(root, [("000", "001"), ("002", "003")])
    # the tree holds Deepfakes only: the default methods ask for Face2Face too
    face2face = root / "manipulated_sequences/Face2Face/c23/frames"
    message = f"FF++ method folder not found: {face2face} (method Face2Face, compression c23)"
    with pytest.raises(FileNotFoundError, match=re.escape(message)):
        ffpp_frames(root, "train")
    shutil.rmtree(root / "manipulated_sequences/Deepfakes")
    deepfakes = root / "manipulated_sequences/Deepfakes/c23/frames"
    message = f"FF++ method folder not found: {deepfakes} (method Deepfakes, compression c23)"
    with pytest.raises(FileNotFoundError, match=re.escape(message)):
        ffpp_frames(root, "train", methods=("Deepfakes",))
    shutil.rmtree(root / "original_sequences")
    originals = root / "original_sequences/youtube/c23/frames"
    with pytest.raises(
        FileNotFoundError, match=re.escape(f"real frame folder not found: {originals}")
    ):
        ffpp_frames(root, "train", methods=("Deepfakes",))


def _celebdf(root, lines):
    for sub, vid in (
        ("Celeb-real", "id0_0000"),
        ("Celeb-synthesis", "id0_id1_0000"),
        ("YouTube-real", "00000"),
        ("Celeb-real", "id2_0001"),
        ("Celeb-synthesis", "id3_id2_0001"),
        ("Celeb-real", "id4_0002"),
    ):
        _frames(root / sub / "frames" / vid, n=2)
    (root / "List_of_testing_videos.txt").write_text(lines)


def test_celebdf_flips_polarity(tmp_path):
    _celebdf(tmp_path, "1 Celeb-real/id0_0000.mp4\n0 Celeb-synthesis/id0_id1_0000.mp4\n")
    test = celebdf_frames(tmp_path, "test", size=8)
    assert test.labels.tolist() == [0, 0, 1, 1]  # 1 = real in the list, fake = 1 here
    train, val = (
        celebdf_frames(tmp_path, "train", size=8),
        celebdf_frames(tmp_path, "val", size=8, val_fraction=0.3),
    )
    assert not set(train.videos) & set(test.videos) and not set(val.videos) & set(train.videos)


@pytest.mark.parametrize(
    "lines,match",
    [
        ("2 Celeb-real/id0_0000.mp4\n", ":1:"),
        ("1\n", ":1:"),
        ("1 Celeb-real/id9_0009.mp4\n", "no frame folder"),
    ],
)
def test_celebdf_bad_list(tmp_path, lines, match):
    _celebdf(tmp_path, lines)
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        celebdf_frames(tmp_path, "test")


def test_csv_and_npz_frames(tmp_path):
    _frames(tmp_path / "f", n=2)
    (tmp_path / "l.csv").write_text("path,label,video_id\nf/0000.png,0,a\nf/0001.png,1,b\n")
    assert csv_frames(tmp_path / "l.csv", size=8).labels.tolist() == [0, 1]
    (tmp_path / "bad.csv").write_text("path,label,video_id\nf/0000.png,real,a\n")
    with pytest.raises(ValueError, match="bad.csv:2"):
        csv_frames(tmp_path / "bad.csv")
    np.savez(
        tmp_path / "x.npz", images=np.zeros((4, 8, 8, 3), np.uint8), labels=np.array([0, 1, 0, 1])
    )
    assert npz_frames(tmp_path / "x.npz")[0][0].shape == (3, 8, 8)
    np.savez(tmp_path / "y.npz", images=np.zeros((4, 3, 8, 8)), labels=np.array([0, 1, 0, 2]))
    with pytest.raises(ValueError, match="labels"):
        npz_frames(tmp_path / "y.npz")
    with pytest.raises(ValueError, match="synthetic:A"):
        load_frames("imagenet:/x")


def test_balanced_batches():
    labels = torch.tensor([0] * 10 + [1] * 3)
    batches = list(BalancedBatchSampler(labels, 6, 4, seed=0))
    assert all(labels[b].sum() == 3 for b in batches)
    assert batches == list(BalancedBatchSampler(labels, 6, 4, seed=0))
    groups = torch.tensor([0] * 5 + [1] * 5 + [0, 1, 1])
    first = list(BalancedBatchSampler(labels, 2, 2, groups=groups))
    assert set(groups[first[0]].tolist()) == {0} and set(groups[first[1]].tolist()) == {1}


@pytest.fixture(scope="module")
def pools():
    return source_pools(32)


def test_source_pools_are_disjoint(pools):
    faces = {k: {tuple(f.flatten()[:20].tolist()) for f in v["faces"]} for k, v in pools.items()}
    assert (
        not faces["train"] & faces["val"]
        and not faces["train"] & faces["test"]
        and not faces["val"] & faces["test"]
    )
    names = [set(v) for v in PHOTO_POOLS.values()]
    assert not (names[0] & names[1] or names[0] & names[2] or names[1] & names[2])


def test_generator_is_seeded_balanced_and_post_processes_alike(pools):
    a = make_domain("A", "train", n=40, seed=3, pools=pools)
    b = make_domain("A", "train", n=40, seed=3, pools=pools)
    assert torch.equal(a.images, b.images) and int(a.labels.sum()) == 20
    assert not torch.equal(a.images, make_domain("A", "train", n=40, seed=4, pools=pools).images)
    for name in ("A", "B", "C"):
        d = make_domain(name, "test" if name == "B" else "train", n=40, seed=0, pools=pools)
        assert d.images.shape == (40, 3, 32, 32) and d.images.min() >= 0 and d.images.max() <= 1
        # reals and fakes carry the same acquisition noise and JPEG: their mean local variation is close
        grad = (d.images[..., 1:] - d.images[..., :-1]).abs().mean((1, 2, 3))
        real, fake = grad[d.labels == 0].mean(), grad[d.labels == 1].mean()
        # measured at this seed and size: 0.22 (A), 0.18 (B), 0.19 (C); the generator does not
        # return its per-crop JPEG quality or resampling draws to compare them directly
        assert abs(real - fake) / real < 0.3
    with pytest.raises(ValueError, match="unknown synthetic domain"):
        make_domain("D")
    with pytest.raises(ValueError, match="even"):
        make_domain("A", n=7, pools=pools)


def test_random_flips_draw_one_of_the_four_flips_per_frame_from_the_seed():
    """The official code's dataAug: left-right, then top-bottom, each with probability 1/2."""
    from paperzoo.forgerynas.data import random_flips

    images = torch.rand(64, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    out = random_flips(images, torch.Generator().manual_seed(3))
    again = random_flips(images, torch.Generator().manual_seed(3))
    assert torch.equal(out, again)  # same seed, same flips
    g = torch.Generator().manual_seed(3)
    left_right = torch.rand(64, generator=g) < 0.5
    top_bottom = torch.rand(64, generator=g) < 0.5
    seen = set()
    for i in range(64):
        expected = images[i]
        if left_right[i]:
            expected = expected.flip(-1)
        if top_bottom[i]:
            expected = expected.flip(-2)
        assert torch.equal(out[i], expected)
        seen.add((bool(left_right[i]), bool(top_bottom[i])))
    assert len(seen) == 4  # every combination occurs in 64 frames
    assert not torch.equal(out, images)
    with pytest.raises(ValueError, match="batch, channels"):
        random_flips(images[0], torch.Generator())


def test_synthetic_split_the_domain_lacks_is_refused():
    """load_frames used to replace a missing split by the domain's first (synthetic:C test ->
    C's train pool) silently."""
    with pytest.raises(ValueError, match=r"domain C has no 'test' split \(it has: train\)"):
        load_frames("synthetic:C", "test")
    with pytest.raises(ValueError, match=r"domain B has no 'train' split \(it has: test\)"):
        load_frames("synthetic:B", "train")
    frames = load_frames("synthetic:B", "test", n=8)
    assert frames.name == "synthetic-B-test" and len(frames) == 8


def test_corrupt_frame_is_a_value_error_naming_the_file(tmp_path):
    _frames(tmp_path / "f", n=2)
    (tmp_path / "f" / "0001.png").write_bytes(b"\x89PNG not an image at all")
    (tmp_path / "l.csv").write_text("path,label,video_id\nf/0000.png,0,a\nf/0001.png,1,b\n")
    # a file whose header is not an image is refused when the frames are listed
    with pytest.raises(ValueError, match=r"cannot read frame .*0001\.png \(video b\)"):
        csv_frames(tmp_path / "l.csv", size=8)
    # a truncated image too
    good = (tmp_path / "f" / "0000.png").read_bytes()
    (tmp_path / "f" / "0001.png").write_bytes(good[:-28])  # header kept, pixel data cut
    frames = csv_frames(tmp_path / "l.csv", size=8)  # the header is intact: listed
    assert frames[0][0].shape == (3, 8, 8)
    with pytest.raises(ValueError, match=r"cannot read frame .*0001\.png \(video b\)"):
        frames[1]
    # an empty file is refused when the frames are listed, before any work
    (tmp_path / "f" / "0001.png").write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty \(0-byte\) frame file .*0001\.png"):
        csv_frames(tmp_path / "l.csv", size=8)


def test_npz_frames_refuse_a_npy_a_pickle_and_a_missing_array_naming_the_file(tmp_path):
    """``with np.load(path)`` on a .npy failed with a TypeError naming no file (the array has no
    context manager); the core's read_npz refuses it, object arrays (no unpickling) and missing
    arrays, naming the file."""
    np.save(tmp_path / "frames.npy", np.zeros((2, 3, 8, 8)))
    for call in (npz_frames, lambda p: load_frames(f"npz:{p}")):
        with pytest.raises(ValueError, match=r"frames\.npy is not an \.npz archive"):
            call(tmp_path / "frames.npy")
    labels = np.array([0, 1], dtype=object)
    np.savez(tmp_path / "objects.npz", images=np.zeros((2, 3, 8, 8)), labels=labels)
    with pytest.raises(ValueError, match=r"objects\.npz"):
        npz_frames(tmp_path / "objects.npz")
    np.savez(tmp_path / "nolabels.npz", images=np.zeros((2, 3, 8, 8)))
    with pytest.raises(ValueError, match=r"nolabels\.npz lacks array\(s\) \['labels'\]"):
        npz_frames(tmp_path / "nolabels.npz")
    with pytest.raises(FileNotFoundError, match=r"absent\.npz"):
        npz_frames(tmp_path / "absent.npz")


def test_npz_frames_refuse_out_of_range_floats_non_square_frames_and_non_binary_labels(tmp_path):
    """Float frames in [0, 255] were scored (AUC 0.45), 32x48 frames passed, and labels 0.9 were
    truncated to 0 by ``.long()`` ("holds one class only"): each is refused naming the file."""
    labels = np.array([0, 1, 0, 1])

    def save(name, images, labels=labels, **extra):
        np.savez(tmp_path / name, images=images, labels=labels, **extra)
        return tmp_path / name

    floats = np.random.default_rng(0).random((4, 3, 8, 8)).astype(np.float32)
    path = save("x255.npz", floats * 255)
    high = float((floats * 255).max())
    with pytest.raises(
        ValueError,
        match=rf"x255\.npz: float images must lie in \[0, 1\], found values in \[[0-9.e-]+, {high:g}\]",
    ):
        npz_frames(path)
    with pytest.raises(ValueError, match=r"x255\.npz: float images must lie in \[0, 1\]"):
        load_frames(f"npz:{path}")
    path = save("negative.npz", floats - 0.5)
    with pytest.raises(
        ValueError, match=r"negative\.npz: .* found values in \[-0\.[0-9]+, 0\.[0-9]+\]"
    ):
        npz_frames(path)
    nan = floats.copy()
    nan[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"nan\.npz: images hold NaN or infinite values"):
        npz_frames(save("nan.npz", nan))
    with pytest.raises(ValueError, match=r"int\.npz: images must be floats .* dtype int64"):
        npz_frames(save("int.npz", (floats * 255).astype(np.int64)))
    # uint8 is accepted and scaled by 1/255, (N, S, S, 3) is accepted too
    uint8 = (floats * 255).round().astype(np.uint8)
    frames = npz_frames(save("u8.npz", uint8.transpose(0, 2, 3, 1)))
    assert torch.allclose(frames.images, torch.from_numpy(uint8).float() / 255)
    assert torch.equal(npz_frames(save("ok.npz", floats)).images, torch.from_numpy(floats))
    # non-square frames, either layout; another channel count
    rect = np.zeros((4, 3, 32, 48), np.float32)
    for name, images in (("rect.npz", rect), ("rect_hwc.npz", rect.transpose(0, 2, 3, 1))):
        with pytest.raises(ValueError, match=rf"{name}: frames must be square .* got 32x48"):
            npz_frames(save(name, images))
    with pytest.raises(ValueError, match=r"grey\.npz: images must be .* got shape \(4, 8, 8\)"):
        npz_frames(save("grey.npz", floats[:, 0]))
    # labels: fractional or outside {0, 1}, named; integral floats and booleans accepted
    for name, bad, found in (
        ("frac.npz", labels * 0.9, "0.9"),
        ("two.npz", np.array([0, 1, 2, 1]), "2"),
        ("minus.npz", np.array([0, 1, -1, 2]), "-1, 2"),
    ):
        with pytest.raises(
            ValueError, match=rf"{name}: labels must be 0 \(real\) or 1 \(fake\), found {found}$"
        ):
            npz_frames(save(name, floats, bad))
    assert npz_frames(save("flt.npz", floats, labels.astype(float))).labels.tolist() == [0, 1, 0, 1]
    assert npz_frames(save("bool.npz", floats, labels.astype(bool))).labels.tolist() == [0, 1, 0, 1]
    with pytest.raises(
        ValueError, match=r"col\.npz: labels must be one per image, shape \(4,\), got \(4, 1\)"
    ):
        npz_frames(save("col.npz", floats, labels[:, None]))
    with pytest.raises(ValueError, match=r"vid\.npz: video_ids must be integers, found 0\.5"):
        npz_frames(save("vid.npz", floats, video_ids=np.array([0, 0.5, 1, 1])))
    assert npz_frames(
        save("v.npz", floats, video_ids=np.array([0.0, 0, 1, 1]))
    ).video_ids.tolist() == [0, 0, 1, 1]


def test_tensor_frames_name_the_labels_they_refuse():
    from paperzoo.forgerynas.data import TensorFrames

    images = torch.zeros(4, 3, 8, 8)
    with pytest.raises(
        ValueError, match=r"mine: labels must be 0 \(real\) or 1 \(fake\), found 0\.9$"
    ):
        TensorFrames(images, torch.tensor([0, 0.9, 0, 0.9]), name="mine")
    with pytest.raises(
        ValueError, match=r"mine: labels must be one per image, shape \(4,\), got \(4, 1\)"
    ):
        TensorFrames(images, torch.tensor([[0], [1], [0], [1]]), name="mine")
    with pytest.raises(ValueError, match=r"mine: video_ids must be one per image"):
        TensorFrames(images, torch.tensor([0, 1, 0, 1]), torch.arange(3), name="mine")
