"""Generated scenes and the RGB-D folder layouts: seeding, camouflage, depth cues, loaders, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from paperzoo.hodinet.data import (
    RGBDSODDataModule,
    RGBDSODFolder,
    find_set_folder,
    motorcycle_demo,
    normalize_depth,
    read_depth,
)
from paperzoo.hodinet.scenes import SyntheticRGBDScenes, _smooth_field, make_scene

from .conftest import write_set


def test_scenes_are_seeded_and_kinds_balanced():
    a, b, c = (SyntheticRGBDScenes(30, seed=s) for s in (5, 5, 6))
    assert torch.equal(a.rgb, b.rgb) and torch.equal(a.depth, b.depth) and torch.equal(a.gt, b.gt)
    assert not torch.equal(a.rgb, c.rgb)
    assert [a.kinds.count(k) for k in ("camo", "baddepth", "both")] == [10, 10, 10]
    frac = a.gt.mean(dim=(1, 2, 3))
    assert (frac >= 0.05).all() and (frac <= 0.25).all()
    assert a.depth.min() >= 0 and a.depth.max() <= 1


def test_camouflaged_object_pixels_are_the_background():
    rng = np.random.default_rng(11)
    rgb, _, gt = make_scene(rng, "camo", 64, distractor=False)
    replay = np.random.default_rng(11)
    background = _smooth_field(replay, 3, 64, grid=int(replay.integers(3, 6)))
    np.testing.assert_array_equal(rgb, background.astype(np.float32))
    assert gt.sum() > 0


def _boundary_step(depth: torch.Tensor, gt: torch.Tensor) -> float:
    """Mean |depth step| across the object's boundary, in units of the map's mean |step|."""
    dy = (depth[:, 1:] - depth[:, :-1]).abs()
    edge = (gt[:, 1:] != gt[:, :-1])
    return float(dy[edge].mean() / dy.mean())


def test_baddepth_has_no_object_cue_and_both_has_one():
    scenes = SyntheticRGBDScenes(12, seed=2, distractor_p=0.0)
    for i, kind in enumerate(scenes.kinds):
        step = _boundary_step(scenes.depth[i, 0], scenes.gt[i, 0])
        if kind == "baddepth":
            assert step < 2.0, (i, step)
        else:
            assert step > 5.0, (i, kind, step)


def test_generator_refuses_bad_options():
    with pytest.raises(ValueError, match="n "):
        SyntheticRGBDScenes(0)
    with pytest.raises(ValueError, match="kinds"):
        SyntheticRGBDScenes(3, kinds=("camo", "fog"))
    with pytest.raises(ValueError, match="distractor_p"):
        SyntheticRGBDScenes(3, distractor_p=1.5)


def test_folder_pairs_by_stem_and_scores_at_gt_size(set_folder):
    folder = RGBDSODFolder(set_folder, size=64)
    assert len(folder) == 3 and folder.stems == ["a", "b", "c"]
    rgb, depth, gt, stem = folder[0]
    assert rgb.shape == (3, 64, 64) and depth.shape == (1, 64, 64) and gt.shape == (1, 64, 64)
    assert folder.full_gt(0).shape == (1, 30, 40)
    assert stem == "a" and 0 <= depth.min() and depth.max() <= 1


def test_zero_one_gt_reads_like_zero_255_gt(tmp_path):
    """A GT saved as 0/1 (a label map, which looks black) marks the same object as a 0/255 one,
    at GT size and at the network's input size."""
    folders = {high: RGBDSODFolder(write_set(tmp_path / f"S{high}", gt_high=high), size=32)
               for high in (255, 1)}
    expected = torch.zeros(1, 30, 40)
    expected[:, 30 // 4: 3 * 30 // 4, 40 // 4: 3 * 40 // 4] = 1
    for high, folder in folders.items():
        assert torch.equal(folder.full_gt(0), expected), high
    assert torch.equal(folders[1][0][2], folders[255][0][2]) and folders[1][0][2].sum() > 0


@pytest.mark.parametrize("layout", ["aliases", "bbsnet", "cdinet"])
def test_layouts(tmp_path, layout):
    if layout == "aliases":
        write_set(tmp_path / "NLPR", rgb_dir="Image", depth_dir="depths", gt_dir="mask")
        write_set(tmp_path / "train", rgb_dir="image", depth_dir="Depth", gt_dir="Mask")
    elif layout == "bbsnet":
        write_set(tmp_path / "RGBD_for_test" / "NLPR")
        write_set(tmp_path / "RGBD_for_train", stems=("x", "y"))
    else:
        write_set(tmp_path / "CDINet_test_data" / "NLPR")
        write_set(tmp_path / "CDINet_train_data", stems=("x", "y"))
    module = RGBDSODDataModule(tmp_path, test_sets=["NLPR", "SIP"], size=32, batch_size=2)
    assert list(module.test_sets()) == ["NLPR"]
    assert len(module.train_set()) in (2, 3)
    rgb, depth, gt, names = next(iter(module.train_dataloader()))
    assert rgb.shape == (2, 3, 32, 32) and set(gt.unique().tolist()) <= {0.0, 1.0}


def test_sixteen_bit_depth_is_read_at_full_depth(tmp_path):
    values = np.array([[0, 1000], [30000, 60000]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "d.png")
    depth = read_depth(tmp_path / "d.png")
    np.testing.assert_array_equal(depth, values.astype(np.float64))
    torch.testing.assert_close(normalize_depth(depth)[0, 1], torch.tensor([0.5, 1.0]), atol=1e-6, rtol=0)


def test_des_depth_is_inverted_by_default(tmp_path):
    """The loaded DES depth equals the hand-inverted, resized raw map (holes stay 0); NJU2K's
    equals the plain normalised map of the same file."""
    import torch.nn.functional as F

    h, w = 30, 40
    raw = np.tile(np.linspace(20, 220, w), (h, 1)).round().astype(np.uint8)  # far = bright
    raw[5:12, 8:20] = 0  # a hole (no measurement)
    for name in ("DES", "NJU2K"):
        write_set(tmp_path / name)
        Image.fromarray(raw).save(tmp_path / name / "depth" / "a.png")
    des = RGBDSODFolder(tmp_path / "DES", 32)
    nju = RGBDSODFolder(tmp_path / "NJU2K", 32)
    assert des.invert and not nju.invert
    assert not RGBDSODFolder(tmp_path / "DES", 32, invert_depth="no").invert

    scaled = raw.astype(np.float64) / raw.max()  # min-max; the hole's 0 is the minimum
    inverted = np.where(raw == 0, 0.0, 1.0 - scaled)

    def resized(a: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(a.astype(np.float32))[None, None]
        return F.interpolate(t, size=(32, 32), mode="bilinear", align_corners=False)[0]

    torch.testing.assert_close(des[0][1], resized(inverted), atol=1e-6, rtol=0)
    torch.testing.assert_close(nju[0][1], resized(scaled), atol=1e-6, rtol=0)
    assert des[0][1][0, 10, 12] == 0  # inside the hole: far, not near


def test_normalize_depth_holes_stay_zero_when_inverted():
    depth = np.array([[np.nan, 2.0], [np.inf, 4.0]])
    torch.testing.assert_close(normalize_depth(depth, invert=True)[0], torch.tensor([[0.0, 0.5], [0.0, 0.0]]))
    stored = np.array([[0.0, 2.0], [1.0, 4.0]])  # a stored 0 is a hole too
    torch.testing.assert_close(normalize_depth(stored, invert=True)[0], torch.tensor([[0.0, 0.5], [0.75, 0.0]]))
    torch.testing.assert_close(normalize_depth(stored)[0], torch.tensor([[0.0, 0.5], [0.25, 1.0]]))


def test_rgb_and_depth_of_different_sizes_are_refused(tmp_path):
    folder = write_set(tmp_path / "SIP")
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(folder / "depth" / "b.png")
    with pytest.raises(ValueError, match=r"b\.jpg is 40x30 but depth .*b\.png is 10x10"):
        RGBDSODFolder(folder, 32)


def test_missing_depth_file_is_named(tmp_path):
    folder = write_set(tmp_path / "SIP")
    (folder / "depth" / "c.png").unlink()
    with pytest.raises(ValueError, match="1 in .*RGB without a partner.*c"):
        RGBDSODFolder(folder, 32)


def test_empty_and_missing_folders_name_the_layout(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="expected a set folder"):
        RGBDSODFolder(tmp_path / "empty", 32)
    with pytest.raises(FileNotFoundError, match="expected a set folder"):
        find_set_folder(tmp_path / "absent")
    for sub in ("RGB", "depth", "GT"):
        (tmp_path / "blank" / sub).mkdir(parents=True)
    with pytest.raises(ValueError, match="no files"):
        RGBDSODFolder(tmp_path / "blank", 32)


def test_unreadable_image_and_odd_depth_channels(tmp_path):
    folder = write_set(tmp_path / "SSD")
    (folder / "depth" / "a.png").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="a.png"):
        RGBDSODFolder(folder, 32)
    Image.fromarray(np.zeros((4, 4, 2), np.uint8), mode="LA").save(tmp_path / "la.png")
    with pytest.raises(ValueError, match="2 channels"):
        read_depth(tmp_path / "la.png")


def test_motorcycle_pair_when_bundled():
    pair = motorcycle_demo(64)
    if pair is None:
        pytest.skip("stereo_motorcycle is not bundled with this scikit-image")
    rgb, depth = pair
    assert rgb.shape == (3, 64, 64) and depth.shape == (1, 64, 64) and torch.isfinite(depth).all()


def test_unreadable_gt_is_named_when_the_folder_opens(tmp_path):
    folder = write_set(tmp_path / "NLPR")
    (folder / "GT" / "b.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"cannot read GT image .*GT[/\\]b\.png"):
        RGBDSODFolder(folder, 32)


def test_test_only_sets_are_never_training_folders(tmp_path):
    for name in ("DES", "sip"):
        write_set(tmp_path / name)
        with pytest.raises(ValueError, match="test-only set"):
            find_set_folder(tmp_path / name)
        with pytest.raises(ValueError, match="test-only set"):
            RGBDSODDataModule(tmp_path / name).train_set()
    write_set(tmp_path / "NJU2K")
    assert find_set_folder(tmp_path / "NJU2K") == tmp_path / "NJU2K"
    assert find_set_folder(tmp_path, "DES") == tmp_path / "DES"  # as a test set it is found
