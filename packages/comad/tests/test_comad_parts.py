"""Exact checks of the method's parts against brute force and hand computations."""

import logging
import math

import numpy as np
import pytest
import torch

from paperzoo.comad.coreset import greedy_coreset
from paperzoo.comad.fusion import TrimmedZNorm, raw_sum
from paperzoo.comad.logical import ComponentLogicModel, knn_scores, lab_ratio
from paperzoo.comad.metrics import auroc, loco_auroc, segmentation_miou
from paperzoo.comad.patchcore import nearest_distances
from paperzoo.comad.segment import filter_statistics, keep_components, otsu_thresholds


def test_coreset_size_and_brute_force_k_center():
    x = torch.randn(200, 6, generator=torch.Generator().manual_seed(0))
    picks = greedy_coreset(x, ratio=0.073, proj_dim=None)
    assert len(picks) == math.ceil(0.073 * 200) and len(set(picks.tolist())) == len(picks)
    # brute force greedy k-center with the full distance matrix
    d = torch.cdist(x.double(), x.double())
    chosen = [int(x.norm(dim=1).argmax())]
    while len(chosen) < len(picks):
        chosen.append(int(d[:, chosen].min(1).values.argmax()))
    assert picks.tolist() == chosen
    assert len(greedy_coreset(x, count=5)) == 5
    with pytest.raises(ValueError, match="ratio"):
        greedy_coreset(x, ratio=0.0)


def test_coreset_is_deterministic_under_a_seed_with_projection():
    x = torch.randn(300, 200, generator=torch.Generator().manual_seed(1))
    assert torch.equal(greedy_coreset(x, ratio=0.1, seed=3), greedy_coreset(x, ratio=0.1, seed=3))


def test_patchcore_distances_equal_brute_force():
    g = torch.Generator().manual_seed(0)
    q, bank = torch.randn(50, 7, generator=g), torch.randn(30, 7, generator=g)
    brute = ((q[:, None] - bank[None]) ** 2).sum(-1).sqrt().min(1).values
    assert torch.allclose(nearest_distances(q, bank, chunk=7), brute, atol=1e-5)


def test_knn_scores_equal_brute_force_and_leave_one_out_is_nonzero():
    rng = np.random.default_rng(0)
    train, query = rng.normal(size=(12, 3)), rng.normal(size=(4, 3))
    d = np.linalg.norm(query[:, None] - train[None], axis=-1)
    assert np.allclose(knn_scores(train, query, 5), np.sort(d, 1)[:, :5].mean(1))
    dt = np.linalg.norm(train[:, None] - train[None], axis=-1)
    np.fill_diagonal(dt, np.inf)
    loo = knn_scores(train, None, 5)
    assert np.allclose(loo, np.sort(dt, 1)[:, :5].mean(1))
    assert (loo > 0).all()


def test_otsu_matches_scikit_image():
    from skimage.filters import threshold_otsu

    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(20, 5, 500), rng.normal(100, 8, 300)]).clip(0, 127.9)
    ours = float(otsu_thresholds(torch.tensor(values, dtype=torch.float32)[None])[0])
    assert abs(ours - threshold_otsu(values)) <= 128 / 256 + 1e-6


def test_colour_of_a_solid_patch_equals_opencv_lab_by_hand():
    import cv2

    image = np.zeros((1, 16, 16, 3), dtype=np.uint8)
    image[..., :] = (200, 120, 40)
    lab = cv2.cvtColor(np.array([[[200, 120, 40]]], dtype=np.uint8), cv2.COLOR_RGB2LAB)[0, 0]
    expected = (float(lab[2]) / float(lab[1])) ** 2
    assert np.allclose(lab_ratio(image), expected)
    masks = np.zeros((1, 1, 16, 16), dtype=bool)
    masks[0, 0, 4:8, 4:8] = True
    meas = ComponentLogicModel().measure(masks, image)
    assert meas.colour[0, 0] == pytest.approx(expected)
    assert meas.area[0, 0] == 16
    empty = ComponentLogicModel().measure(np.zeros_like(masks), image)
    assert empty.colour[0, 0] == 0.0


def _disks(centres, radii, size=64):
    yy, xx = np.mgrid[0:size, 0:size]
    grey = np.zeros((size, size), dtype=np.float32)
    for (cy, cx), r in zip(centres, radii):
        grey[(yy - cy) ** 2 + (xx - cx) ** 2 < r**2] = 128.0
    return grey


def _bars(longs, shorts, size=64):
    grey = np.zeros((size, size), dtype=np.float32)
    for i in range(longs):
        grey[4 + 8 * i : 8 + 8 * i, 4:44] = 128  # 160 px
    for j in range(shorts):
        grey[4 + 8 * (longs + j) : 8 + 8 * (longs + j), 4:24] = 128  # 80 px
    return grey


def test_three_equal_disks_give_one_class_counted_three():
    grey = torch.from_numpy(np.stack([_disks([(15, 15), (15, 45), (45, 30)], [6, 6, 6])] * 8))[
        :, None
    ]
    images = np.full((8, 64, 64, 3), 128, dtype=np.uint8)
    model = ComponentLogicModel(mask_floor=1.0).fit(grey, images)
    assert model.train_hists[0].shape[1] == 1
    assert (model.train_hists[0][:, 0] == 3).all()


def test_long_short_swap_changes_the_histogram_at_equal_total_area():
    train = torch.from_numpy(np.stack([_bars(2, 2)] * 8))[:, None]  # 2 x 160 + 2 x 80 = 480 px
    images = np.full((8, 64, 64, 3), 128, dtype=np.uint8)
    model = ComponentLogicModel(mask_floor=1.0, dbscan_min_samples=5).fit(train, images)
    swapped = torch.from_numpy(np.stack([_bars(1, 4)]))[:, None]  # 160 + 4 x 80 = 480 px
    normal = torch.from_numpy(np.stack([_bars(2, 2)]))[:, None]
    s_swap, s_norm = model.score(swapped, images[:1]), model.score(normal, images[:1])
    assert s_swap.area[0, 0] == pytest.approx(s_norm.area[0, 0])  # equal total area
    assert s_swap.hist[0, 0] > 0 and s_norm.hist[0, 0] == 0
    assert sorted(model.train_hists[0][0].tolist()) == [2.0, 2.0]


def test_a_blob_voted_dbscan_noise_is_not_counted():
    # pooled training areas: ten 80-px and ten 160-px blobs, and 400, 405, 410 px; mean 3615 / 23
    # = 157.2, eps = 15.7, min_samples 5: classes {80} -> 0 and {160} -> 1, the three large ones
    # are noise. A 405-px blob has the neighbours 405, 400, 410 (noise) and 160, 160 (class 1):
    # three noise votes, not counted. Without noise votes it is counted in class 1.
    pooled = np.array([80.0] * 10 + [160.0] * 10 + [400.0, 405.0, 410.0])
    blobs = [np.array([80.0, 160.0, 405.0]), np.array([400.0, 80.0, 80.0])]
    model = ComponentLogicModel(dbscan_min_samples=5)
    areas, labels = model._size_classes(pooled, 0)
    assert labels.tolist() == [0] * 10 + [1] * 10 + [-1, -1, -1]
    assert model.histograms(blobs, areas, labels).tolist() == [[1, 1], [2, 0]]
    nearest = ComponentLogicModel(dbscan_min_samples=5, noise_votes=False)
    areas, labels = nearest._size_classes(pooled, 0)
    assert areas.size == 20 and nearest.histograms(blobs, areas, labels).tolist() == [
        [1, 2],
        [2, 1],
    ]


def test_a_tie_between_noise_and_a_class_leaves_the_blob_uncounted():
    # 400 and 410 px are noise (two blobs < min_samples 5); a 405-px blob's 4 nearest are
    # 400, 410 (noise) and two 160-px blobs (class 1): a 2-2 tie goes to noise, as in the
    # official code (the first maximum of the vote counts, noise first)
    pooled = np.array([80.0] * 10 + [160.0] * 10 + [400.0, 410.0])
    model = ComponentLogicModel(dbscan_min_samples=5, n_neighbors=4)
    areas, labels = model._size_classes(pooled, 0)
    assert model.histograms([np.array([405.0, 160.0])], areas, labels).tolist() == [[0, 1]]


def test_dbscan_without_a_class_falls_back_to_one_bin():
    grey = torch.from_numpy(np.stack([_disks([(15, 15)], [4 + i]) for i in range(6)]))[:, None]
    images = np.full((6, 64, 64, 3), 128, dtype=np.uint8)
    model = ComponentLogicModel(mask_floor=1.0, dbscan_min_samples=10).fit(grey, images)
    assert model.train_hists[0].shape == (6, 1) and (model.train_hists[0] == 1).all()


def test_offset_search_picks_the_minimum_cv_multiplier():
    rng = np.random.default_rng(0)
    maps = []
    yy, xx = np.mgrid[0:64, 0:64]
    for _ in range(8):  # radial ramps of random extent: the mask area depends on the multiplier
        radius = rng.uniform(16, 30)
        maps.append(
            (128 * np.clip(1 - np.hypot(yy - 32, xx - 32) / radius, 0, 1)).astype(np.float32)
        )
    grey = torch.from_numpy(np.stack(maps))[:, None]
    model = ComponentLogicModel(mask_floor=1.0)
    cvs = []
    for m in model.offsets:
        area = model.masks(grey, [m]).sum((2, 3))[:, 0].astype(float)
        cvs.append(area.std() / area.mean())
    assert max(cvs) > min(cvs)
    assert model.choose_offsets(grey) == [model.offsets[int(np.argmin(cvs))]]


def test_filter_drops_a_corner_touching_map():
    size = 64
    grey = torch.zeros(4, 3, size, size)
    grey[:, 0] = 128.0  # background: every corner
    grey[:, 0, 20:44, 20:44] = 0.0
    grey[:, 1, 20:44, 20:44] = 128.0  # a centred component
    grey[:, 2] = 10.0  # a flat, weak map
    peak, corners = filter_statistics(grey)
    assert corners[:, 0].tolist() == [4] * 4 and corners[:, 1].tolist() == [0] * 4
    assert keep_components(peak, corners, "vote") == [1]
    assert keep_components(peak, corners, "first") == [1]


def test_filter_falls_back_when_nothing_is_kept(caplog):
    peak = torch.tensor([[10.0, 30.0]])
    corners = torch.tensor([[0, 0]])
    with caplog.at_level(logging.WARNING, logger="paperzoo.comad.segment"):
        assert keep_components(peak, corners) == [1]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "kept nothing" in warnings[0].getMessage()
    assert "falling back to component 1" in warnings[0].getMessage()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="paperzoo.comad.segment"):
        assert keep_components(torch.tensor([[10.0, 90.0]]), corners) == [1]
    assert not caplog.records  # a kept component: no warning


def test_trimmed_znorm_on_known_numbers():
    norm = TrimmedZNorm(0.2, 0.8).fit({"a": np.arange(10.0)})
    mu, sigma = norm.stats["a"]
    assert mu == pytest.approx(4.5) and sigma == pytest.approx(np.std([2, 3, 4, 5, 6, 7]))
    assert norm.normalise("a", np.array([4.5 + sigma]))[0] == pytest.approx(1.0)
    two = TrimmedZNorm().fit({"c": np.array([1.0, 3.0])})
    assert two.stats["c"] == (pytest.approx(2.0), pytest.approx(1.0))
    floored = TrimmedZNorm().fit({"b": np.ones(5)})
    assert floored.stats["b"][1] > 0
    assert raw_sum({"a": np.ones(2), "b": np.full(2, 2.0)}).tolist() == [3.0, 3.0]
    with pytest.raises(ValueError, match="validation"):
        TrimmedZNorm().fit({"a": np.ones(1)})


def test_loco_auroc_and_miou_by_hand():
    scores = np.array([0.1, 0.2, 0.9, 0.15, 0.8, 0.05])
    kinds = ["good", "good", "logical", "logical", "structural", "structural"]
    out = loco_auroc(scores, kinds, ["g", "g", "a", "b", "c", "c"])
    assert out["logical"] == pytest.approx(0.75) and out["structural"] == pytest.approx(0.5)
    assert out["mean"] == pytest.approx(0.625) and out["subtype_a"] == pytest.approx(1.0)
    assert auroc(np.zeros(3), np.ones(2)) == 1.0
    pred = np.array([[[0, 1], [2, 2]]])
    parts = np.array([[[0, 1], [1, 1]]])
    miou, mapping = segmentation_miou(pred, parts, pred, parts, kept=[1, 2], n_parts=2)
    assert mapping == {0: 0, 1: 1, 2: 1} and miou == pytest.approx(1.0)
    miou, mapping = segmentation_miou(pred, parts, pred, parts, kept=[1], n_parts=2)
    assert miou == pytest.approx((1 / 3 + 1 / 3) / 2)


def test_auroc_of_large_scores_and_nan_scores():
    # z-normalised (fused) scores reach the hundreds; 3 of the 4 (good, anomalous) pairs are
    # ordered right, whatever the scale (a sigmoid of the scores would tie them all: 0.5)
    good, anomalous = np.array([100.0, 200.0]), np.array([150.0, 300.0])
    assert auroc(good, anomalous) == pytest.approx(0.75)
    assert auroc(good * 1e-3, anomalous * 1e-3) == pytest.approx(0.75)
    assert auroc(good - 1e4, anomalous - 1e4) == pytest.approx(0.75)
    # ties count one half: (1 + 0.5 + 1 + 1) / 4
    assert auroc(np.array([1.0, 2.0]), np.array([2.0, 3.0])) == pytest.approx(0.875)
    assert auroc(np.array([-np.inf, 0.0]), np.array([np.inf, 1.0])) == 1.0
    with pytest.raises(ValueError, match="1 of 2 anomalous scores are NaN"):
        auroc(good, np.array([np.nan, 300.0]))
    with pytest.raises(ValueError, match="2 of 2 good scores are NaN"):
        loco_auroc([np.nan, np.nan, 1.0], ["good", "good", "logical"])
