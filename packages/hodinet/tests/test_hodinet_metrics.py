"""SOD metrics against hand-computed values (and PySODMetrics when it is installed)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from paperzoo.hodinet import metrics as M


def _gt(h=10, w=12):
    gt = torch.zeros(1, 1, h, w)
    gt[..., 2:7, 3:9] = 1
    return gt


def test_perfect_map():
    gt = _gt()
    n = gt.numel()
    assert float(M.s_measure(gt, gt)) == pytest.approx(1.0, abs=1e-12)
    assert float(M.mae(gt, gt)) == 0.0
    assert float(M.f_measure_curves(gt, gt)[2].max()) == pytest.approx(1.0, abs=1e-12)
    assert float(M.e_measure_curves(gt, gt).max()) == pytest.approx(n / (n - 1), rel=1e-12)


def test_all_zero_and_all_one_ground_truth():
    pred = torch.linspace(0, 1, 120).view(1, 1, 10, 12)
    p = M.prepare(pred, _gt())[0]
    assert float(M.s_measure(pred, torch.zeros(1, 1, 10, 12))) == pytest.approx(1 - float(p.mean()), abs=1e-12)
    assert float(M.s_measure(pred, torch.ones(1, 1, 10, 12))) == pytest.approx(float(p.mean()), abs=1e-12)
    # empty ground truth: every map has F = 0; an all-background prediction has E = N/(N-1)
    zeros = torch.zeros(1, 1, 10, 12)
    assert float(M.f_measure_curves(pred, zeros)[2].max()) == 0.0
    assert float(M.e_measure_curves(zeros, zeros).max()) == pytest.approx(120 / 119)


def test_constant_map_by_hand():
    gt = _gt()
    pred = torch.full((1, 1, 10, 12), 0.5)  # grey level 128, not normalised (constant)
    q = 128 / 255
    fraction = 30 / 120
    assert float(M.mae(pred, gt)) == pytest.approx(fraction * (1 - q) + (1 - fraction) * q, abs=1e-12)
    # thresholds <= 128 select every pixel: precision = 30/120, recall = 1
    expected_f = 1.3 * fraction / (0.3 * fraction + 1)
    precision, recall, f = M.f_measure_curves(pred, gt)
    assert float(f.max()) == pytest.approx(expected_f, abs=1e-12)
    assert float(f[0, 0]) == 0.0  # threshold 255 selects nothing
    assert float(recall[0, -1]) == 1.0 and float(precision[0, -1]) == pytest.approx(fraction)


def test_uint8_maps_equal_their_float_form():
    torch.manual_seed(0)
    prob = torch.rand(2, 1, 9, 7)
    gt = (torch.rand(2, 1, 9, 7) > 0.6).float()
    levels = M.quantize(prob)
    torch.testing.assert_close(M.s_measure(prob, gt), M.s_measure(levels, gt))
    torch.testing.assert_close(M.e_measure_curves(prob, gt), M.e_measure_curves(levels, gt))


def test_metric_class_pools_two_image_sizes_and_takes_max_of_mean_curve():
    torch.manual_seed(1)
    a, ga = torch.rand(1, 1, 10, 12), _gt()
    b = torch.rand(1, 1, 7, 9)
    gb = torch.zeros(1, 1, 7, 9)
    gb[..., 1:4, 2:6] = 1
    metric = M.MaxFMeasure()
    metric.update(a, ga)
    metric.update(b, gb)
    fa, fb = M.f_measure_curves(a, ga)[2][0], M.f_measure_curves(b, gb)[2][0]
    mean_curve = (fa + fb) / 2
    assert float(metric.compute()) == pytest.approx(float(mean_curve.max()), abs=1e-12)
    assert float(metric.compute()) <= (float(fa.max()) + float(fb.max())) / 2 + 1e-12
    s = M.SMeasure()
    s.update(a, ga)
    s.update(b, gb)
    expected = (float(M.s_measure(a, ga)) + float(M.s_measure(b, gb))) / 2
    assert float(s.compute()) == pytest.approx(expected, abs=1e-12)
    collection = M.sod_metrics()
    collection.update(a, ga)
    assert set(collection.compute()) == {"s", "maxf", "maxe", "mae"}


def test_mismatched_sizes_are_refused():
    with pytest.raises(ValueError, match="ground truth"):
        M.s_measure(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 9))


def _reference_case(i: int) -> tuple[np.ndarray, np.ndarray]:
    """A uint8 map and ground truth built by integer arithmetic only (no RNG stream)."""
    h, w = (20, 30) if i % 2 else (31, 17)
    gt = np.zeros((h, w), np.uint8)
    gt[3:3 + i + 4, 2:2 + 2 * i + 3] = 255
    noise = (np.arange(h * w, dtype=np.int64).reshape(h, w) * 2654435761 + i * 40503) % 251
    pred = np.where(gt > 0, 100 + noise // 2, noise // 2).astype(np.uint8)
    return pred, gt


def test_against_recorded_pysodmetrics_values():
    """py_sod_metrics 1.6.2 pins numpy < 2.3.5, so it cannot share the locked environment; its
    results on these eight maps were computed once in a separate venv (pysodmetrics 1.6.2,
    numpy 2.3.4: Smeasure sm, Fmeasure curve max, Emeasure curve max, MAE) and are pinned here.
    """
    ours = [M.SMeasure(), M.MaxFMeasure(), M.MaxEMeasure(), M.SODMAE()]
    for i in range(8):
        pred, gt = _reference_case(i)
        for m in ours:
            m.update(torch.from_numpy(pred), torch.from_numpy(gt))
    recorded = [0.5972342710620347, 0.9092393884054767, 0.9170819658186609, 0.28084150743174147]
    for metric, value in zip(ours, recorded, strict=True):
        assert math.isclose(float(metric.compute()), value, abs_tol=1e-12), type(metric).__name__


def test_against_pysodmetrics_when_installed():
    sod = pytest.importorskip("py_sod_metrics.sod_metrics")
    rng = np.random.default_rng(0)
    ours = [M.SMeasure(), M.MaxFMeasure(), M.MaxEMeasure(), M.SODMAE()]
    ref = [sod.Smeasure(), sod.Fmeasure(), sod.Emeasure(), sod.MAE()]
    for i in range(8):
        h, w = (20, 30) if i % 2 else (31, 17)
        gt = np.zeros((h, w), np.uint8)
        gt[3:3 + i + 4, 2:2 + 2 * i + 3] = 255
        pred = (rng.random((h, w)) * 255).astype(np.uint8)
        for m in ref:
            m.step(pred, gt)
        for m in ours:
            m.update(torch.from_numpy(pred), torch.from_numpy(gt))
    r = [m.get_results() for m in ref]
    assert math.isclose(float(ours[0].compute()), r[0]["sm"], abs_tol=1e-12)
    assert math.isclose(float(ours[1].compute()), r[1]["fm"]["curve"].max(), abs_tol=1e-12)
    assert math.isclose(float(ours[2].compute()), r[2]["em"]["curve"].max(), abs_tol=1e-12)
    assert math.isclose(float(ours[3].compute()), r[3]["mae"], abs_tol=1e-12)


def test_one_preparation_serves_every_metric_and_collection():
    torch.manual_seed(2)
    pred, gt = torch.rand(5, 1, 13, 11), (torch.rand(5, 1, 13, 11) > 0.6).float()
    gt[0], gt[1] = 0, 1  # an empty and a full object
    alone = {"s": M.SMeasure(), "maxf": M.MaxFMeasure(), "maxe": M.MaxEMeasure(), "mae": M.SODMAE()}
    for metric in alone.values():
        metric.update(pred, gt)
    shared, split = M.sod_metrics(), M.sod_metrics()
    shared.update(M.SODBatch(pred, gt))
    split.update(pred[:2], gt[:2])
    split.update(pred[2:], gt[2:])
    for name, metric in alone.items():
        assert float(shared.compute()[name]) == float(metric.compute())
        assert math.isclose(float(split.compute()[name]), float(metric.compute()), abs_tol=1e-12)
    assert M.sod_metrics().compute_groups == {}  # S and MAE states must never be merged
    with pytest.raises(TypeError, match="ground truth"):
        shared.update(pred)


def test_evaluate_sod_overall_equals_one_collection_over_all_images(scenes):
    from paperzoo.hodinet.pipeline import evaluate_sod

    class NearIsSalient(torch.nn.Module):
        def forward(self, rgb, depth):
            return {"logits": 8 * (depth - 0.5) + rgb[:, :1]}

    result = evaluate_sod(NearIsSalient(), scenes)
    probs = torch.sigmoid(8 * (scenes.depth - 0.5) + scenes.rgb[:, :1])
    every = M.sod_metrics()
    every.update(probs, scenes.gt)
    assert list(result.scores) == [*dict.fromkeys(scenes.kinds), "overall"]
    for name, value in every.compute().items():
        assert math.isclose(result.scores["overall"][name], float(value), abs_tol=1e-12)
    np.testing.assert_allclose(result.curves["overall"]["emeasure"], every["maxe"].curves()["emeasure"].numpy(),
                               rtol=0, atol=1e-12)


def test_functional_metrics_make_their_tensors_on_the_input_device():
    """The functional forms create every tensor on the maps' device, so CUDA maps score on the
    GPU. Without a GPU: under ``torch.device("meta")`` a tensor made without ``device=`` lands
    on the meta device and mixing it with the CPU maps raises; with the maps' device the scores
    are bit-identical to a plain CPU call (and stay on the CPU)."""
    g = torch.Generator().manual_seed(0)
    pred = torch.rand(3, 1, 17, 23, generator=g)
    gt = (torch.rand(3, 1, 17, 23, generator=g) > 0.6).float()
    gt[1] = 0  # an empty object: S-measure's centre split at (h/2, w/2)
    for fn in (M.mae, M.s_measure, M.f_measure_curves, M.e_measure_curves, M.adaptive_f_measure,
               M.adaptive_e_measure):
        expected = fn(pred, gt)
        with torch.device("meta"):
            got = fn(pred, gt)
        expected, got = (x if isinstance(x, tuple) else (x,) for x in (expected, got))
        for a, b in zip(got, expected, strict=True):
            assert a.device.type == "cpu" and torch.equal(a, b), fn.__name__


def test_one_pixel_object_or_background_has_zero_std():
    """PySODMetrics 1.6.2 takes std 0 for a one-pixel region (not NaN from ddof = 1)."""
    gt = torch.zeros(3, 3)
    gt[1, 1] = 1
    assert float(M.s_measure(gt, gt)) == pytest.approx(1.0, abs=1e-12)
    assert float(M.s_measure(1 - gt, 1 - gt)) == pytest.approx(1.0, abs=1e-12)
    pred = gt.clone()
    pred[0, 0] = 1
    # object term: the object pixel scores 2 / (1 + 1) = 1; the background of 1 - pred (seven 1s,
    # one 0) has mean 7/8 and std sqrt(1/8)
    bg = 2 * (7 / 8) / ((7 / 8) ** 2 + 1 + math.sqrt(1 / 8))
    object_score = 1 / 9 + 8 / 9 * bg
    # region term: split after row 1 and column 1; the top-left 2x2 quadrant has pred [1 0; 0 1],
    # gt [0 0; 0 1]: means 1/2, 1/4, variances 1/3, 1/4, covariance 1/6; the three others are all 0
    ssim_lt = (4 * 0.5 * 0.25 / 6) / ((0.5**2 + 0.25**2) * (1 / 3 + 1 / 4))
    region_score = 4 / 9 * ssim_lt + 5 / 9
    expected = 0.5 * object_score + 0.5 * region_score
    assert float(M.s_measure(pred, gt)) == pytest.approx(expected, abs=1e-12)
    assert expected == pytest.approx(0.8019391838215771, abs=1e-12)  # PySODMetrics 1.6.2


def test_no_image_scores_nan():
    collection = M.sod_metrics()
    collection.update(torch.rand(0, 4, 4), torch.zeros(0, 4, 4))
    scores = collection.compute()
    assert set(scores) == {"s", "maxf", "maxe", "mae"}
    assert all(math.isnan(float(v)) for v in scores.values())
    assert torch.isnan(collection["maxf"].curves()["fmeasure"]).all()


def test_nan_map_is_refused():
    gt = _gt()
    pred = torch.rand_like(gt)
    pred[0, 0, 4, 5] = float("nan")
    with pytest.raises(ValueError, match=r"prediction \(1, 10, 12\) holds NaN \(image\(s\) \[0\]"):
        M.s_measure(pred, gt)
    with pytest.raises(ValueError, match="prediction .* holds NaN"):
        M.sod_metrics().update(pred, gt)
    with pytest.raises(ValueError, match="ground truth .* holds NaN"):
        M.mae(gt, pred)
