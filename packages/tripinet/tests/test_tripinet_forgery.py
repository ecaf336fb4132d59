"""The forgery generator: seeded, photographs split, 8-bit, masks where the paste is."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import binary_dilation

from paperzoo.tripinet.forgery import (
    TEST_PHOTOS,
    TRAIN_PHOTOS,
    ForgeryGenerator,
    jpeg,
    load_photo,
    parse_perturbation,
    perturb,
)


def test_same_seed_same_set_other_seed_other_set(small_train):
    again = ForgeryGenerator("train").generate(48, seed=0)
    assert torch.equal(again.images, small_train.images) and torch.equal(
        again.masks, small_train.masks
    )
    assert again.kinds == small_train.kinds
    other = ForgeryGenerator("train").generate(8, seed=5)
    assert not torch.equal(other.images, small_train.images[:8])


def test_splits_keep_their_photographs_apart(small_train, small_test):
    assert not set(TRAIN_PHOTOS) & set(TEST_PHOTOS)
    assert set(small_train.hosts) <= set(TRAIN_PHOTOS) and set(small_test.hosts) <= set(TEST_PHOTOS)
    assert "camera" not in TRAIN_PHOTOS + TEST_PHOTOS  # no photograph shared under another name


def test_outputs_are_8_bit_with_binary_masks_and_all_kinds(small_train):
    assert small_train.images.dtype == torch.uint8 and small_train.images.shape[1:] == (3, 64, 64)
    assert set(small_train.masks.unique().tolist()) <= {0, 1}
    area = small_train.masks.float().mean(dim=(1, 2, 3))
    forged = small_train.labels == 1
    assert ((area[forged] >= 0.05) & (area[forged] <= 0.35)).all() and (area[~forged] == 0).all()
    assert {"noise", "blur", "jpeg", "authentic"} <= set(small_train.kinds)
    assert {"splice", "copy_move"} <= set(small_train.ops)


def test_masks_match_the_pasted_area():
    generator = ForgeryGenerator("train", final_jpeg_prob=0.0, authentic_fraction=0.0)
    for index in range(6):
        sample = generator.sample(3, index)
        rng = np.random.default_rng([3, index])  # replay the host crop of this sample
        host_name = generator.photos[int(rng.integers(0, len(generator.photos)))]
        host, _ = generator._crop(host_name, rng)
        assert host_name == sample["host"]
        changed = np.abs(sample["image"].astype(int) - np.rint(host).astype(int)).max(axis=2) > 0
        near_mask = binary_dilation(sample["mask"].astype(bool), np.ones((3, 3)), iterations=3)
        assert not (changed & ~near_mask).any(), "pixels changed outside the pasted area"
        assert changed[sample["mask"].astype(bool)].mean() > 0.5


def test_photos_are_bundled_and_checked():
    assert load_photo("motorcycle_left", 128).shape[0] == 128
    with pytest.raises(ValueError, match="unknown split"):
        ForgeryGenerator("val")
    with pytest.raises(ValueError, match="multiple of 8"):
        ForgeryGenerator("train", size=60)
    with pytest.raises(ValueError, match="authentic_fraction"):
        ForgeryGenerator("train", authentic_fraction=1.5)


def test_perturbations(small_test):
    images = small_test.images[:4].float() / 255
    assert parse_perturbation("jpeg:75") == ("jpeg", 75.0)
    compressed = perturb(images, "jpeg:75")
    resized = perturb(images, "resize:0.5")
    assert compressed.shape == resized.shape == images.shape
    assert (
        0 < (compressed - images).abs().mean() < 0.05 and 0 < (resized - images).abs().mean() < 0.1
    )
    assert torch.equal(perturb(images, "none"), images)
    for bad in ("jpeg:0", "resize:2", "blur:1", "jpeg:x"):
        with pytest.raises(ValueError):
            parse_perturbation(bad)


def test_final_jpeg_is_recorded_and_subsets_keep_metadata(small_train):
    quality = small_train.final_jpeg
    assert len(quality) == len(small_train)
    assert all(q == 0 or 90 <= q <= 95 for q in quality)
    assert 0 < sum(q > 0 for q in quality) < len(quality)  # probability 0.5 over 48 images
    never = ForgeryGenerator("train", final_jpeg_prob=0.0).generate(8, seed=0)
    assert never.final_jpeg == [0] * 8
    picked = small_train.subset([5, 2])
    assert torch.equal(picked.images, small_train.images[[5, 2]])
    assert torch.equal(picked.masks, small_train.masks[[5, 2]])
    assert picked.kinds == [small_train.kinds[5], small_train.kinds[2]]
    assert picked.final_jpeg == [quality[5], quality[2]]


def test_jpeg_subsampling_option():
    image = np.random.default_rng(0).integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    assert np.array_equal(jpeg(image, 90), jpeg(image, 90, subsampling=2))  # PIL's default 4:2:0
    full_chroma = jpeg(image, 90, subsampling=0)
    assert (
        np.abs(full_chroma.astype(int) - image).mean()
        < np.abs(jpeg(image, 90).astype(int) - image).mean()
    )
    default = ForgeryGenerator("train").generate(6, seed=0)
    assert torch.equal(
        ForgeryGenerator("train", jpeg_subsampling=2).generate(6, seed=0).images, default.images
    )
    with pytest.raises(ValueError, match="jpeg_subsampling"):
        ForgeryGenerator("train", jpeg_subsampling=3)
