import numpy as np
import pytest
import torch

from paperzoo.core.data import digits, faces, photos, split_indices


def test_split_is_reproducible_disjoint_and_complete():
    a = split_indices(101, (0.6, 0.2, 0.2), seed=3)
    b = split_indices(101, (0.6, 0.2, 0.2), seed=3)
    c = split_indices(101, (0.6, 0.2, 0.2), seed=4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))
    assert [len(p) for p in a] == [61, 20, 20]  # largest remainder: 60.6, 20.2, 20.2
    union = np.concatenate(a)
    assert len(set(union.tolist())) == 101 and sorted(union.tolist()) == list(range(101))


def test_stratified_split_keeps_class_proportions():
    labels = np.repeat(np.arange(4), 50)
    train, val, test = split_indices(200, (0.5, 0.25, 0.25), seed=0, stratify=labels)
    for part, share in ((train, 25), (val, 12), (test, 12)):
        counts = np.bincount(labels[part], minlength=4)
        assert np.all(np.abs(counts - share) <= 1)
    assert not (set(train) & set(val)) and not (set(val) & set(test)) and not (set(train) & set(test))


@pytest.mark.parametrize(
    "labels",
    [np.repeat(np.arange(20), 7), np.repeat(np.arange(50), 2), np.arange(100)],
    ids=["20_classes_of_7", "50_classes_of_2", "one_item_per_class"],
)
def test_stratified_split_sizes_follow_the_fractions_with_many_small_classes(labels):
    # per-class rounding alone gave 80/40/20, 50/50/0 and 100/0/0 here
    n = len(labels)
    parts = split_indices(n, (0.6, 0.2, 0.2), seed=0, stratify=labels)
    assert [len(p) for p in parts] == [round(0.6 * n), round(0.2 * n), round(0.2 * n)]
    union = np.concatenate(parts)
    assert sorted(union.tolist()) == list(range(n))
    # every class still splits within one item of its own proportions
    for label in np.unique(labels):
        size = int((labels == label).sum())
        for part, fraction in zip(parts, (0.6, 0.2, 0.2)):
            assert abs(int((labels[part] == label).sum()) - fraction * size) < 2


def test_stratified_split_within_one_percent_is_left_as_each_class_rounds_it():
    labels = digits()[1].numpy()
    parts = split_indices(len(labels), (0.6, 0.2, 0.2), seed=0, stratify=labels)
    # 10 classes of 174-183, each split on its own by largest remainder (unchanged allocation)
    assert [len(p) for p in parts] == [1078, 362, 357]


def test_split_rejects_bad_fractions_and_labels():
    with pytest.raises(ValueError, match="sum to 1"):
        split_indices(10, (0.5, 0.2), seed=0)
    with pytest.raises(ValueError, match="one label per item"):
        split_indices(10, (0.5, 0.5), seed=0, stratify=[0, 1])


def test_digits_shape_range_and_labels():
    x, y = digits()
    assert x.shape == (1797, 1, 8, 8) and x.dtype == torch.float32
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert y.shape == (1797,) and set(y.tolist()) == set(range(10))


def test_faces_and_photos_are_offline_and_shaped():
    x, y = faces()
    assert x.shape == (200, 1, 25, 25) and int(y.sum()) == 100 and bool(y[0] == 1)
    images = photos(["astronaut", "camera"], size=32)
    assert images["astronaut"].shape == (3, 32, 32) and images["camera"].shape == (1, 32, 32)
    assert all(0.0 <= float(t.min()) and float(t.max()) <= 1.0 for t in images.values())
    with pytest.raises(ValueError, match="unknown photo"):
        photos(["nonexistent"])
