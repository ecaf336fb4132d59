"""EER, minDCF, the torchmetrics classes, AAM softmax and scoring (spec section 9)."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from paperzoo.rsknet.losses import AAMSoftmax, MarginScheduler
from paperzoo.rsknet.metrics import (
    EER,
    MinDCF,
    det_curve,
    eer,
    error_rates,
    min_dcf,
    speaker_bootstrap,
)
from paperzoo.rsknet.scoring import as_norm, calibrate_threshold, cosine, s_norm


def _random_trials(seed: int, n: int = 300):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    scores = np.round(rng.standard_normal(n) + 1.2 * labels, 1)  # rounding makes ties
    return scores, labels


def _brute_force(scores, labels):
    thresholds = np.r_[-np.inf, np.unique(scores)]
    fnr = np.array([(scores[labels == 1] <= t).mean() for t in thresholds])
    fpr = np.array([(scores[labels == 0] > t).mean() for t in thresholds])
    return thresholds, fnr, fpr


def test_perfect_separation_gives_zero():
    scores, labels = np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1])
    assert eer(scores, labels)[0] == 0.0
    assert min_dcf(scores, labels, 0.01)[0] == 0.0


def test_identical_distributions():
    scores = np.array([0.5, 0.5, 0.5, 0.5, 0.5, 0.5])
    labels = np.array([1, 0, 1, 0, 1, 0])
    assert eer(scores, labels)[0] == pytest.approx(0.5)
    assert min_dcf(scores, labels, 0.01)[0] == pytest.approx(1.0)
    assert min_dcf(scores, labels, 0.05)[0] == pytest.approx(1.0)


def test_hand_computed_eer_interpolation():
    # targets 0.3, 0.7; nontargets 0.4, 0.1. At 0.1: FNR 0, FPR 0.5; at 0.3: FNR 0.5, FPR 0.5.
    value, threshold = eer([0.3, 0.7, 0.4, 0.1], [1, 1, 0, 0])
    assert value == pytest.approx(0.5) and threshold == pytest.approx(0.3)
    # targets 0.2, 0.8, 0.9; nontargets 0.1, 0.5: at 0.1 (0, .5); at 0.2 (1/3, .5); at 0.5 (1/3, 0)
    value, threshold = eer([0.2, 0.8, 0.9, 0.1, 0.5], [1, 1, 1, 0, 0])
    # at 0.5: (1/3, 0): FNR - FPR goes -1/6 -> +1/3, crossing a third of the way: FPR 1/3.
    assert value == pytest.approx(1 / 3) and threshold == pytest.approx(0.3)


@pytest.mark.parametrize("seed", range(5))
def test_eer_bounds_and_min_dcf_against_threshold_sweep(seed):
    scores, labels = _random_trials(seed)
    thresholds, fnr, fpr = _brute_force(scores, labels)
    value, _ = eer(scores, labels)
    assert np.max(np.minimum(fnr, fpr)) - 1e-12 <= value <= np.min(np.maximum(fnr, fpr)) + 1e-12
    for p in (0.01, 0.05):
        cost = (fnr * p + fpr * (1 - p)) / min(p, 1 - p)
        assert min_dcf(scores, labels, p)[0] == pytest.approx(cost.min())
    rates = error_rates(scores, labels)
    np.testing.assert_allclose(rates.fnr, fnr)
    np.testing.assert_allclose(rates.fpr, fpr)
    fpr_d, fnr_d, thr_d = det_curve(scores, labels)
    np.testing.assert_allclose(thr_d, thresholds)


def test_weights_equal_repetition():
    scores, labels = _random_trials(7, 60)
    weights = np.random.default_rng(0).integers(0, 3, 60)
    repeated = np.repeat(np.arange(60), weights)
    assert eer(scores, labels, weights)[0] == pytest.approx(eer(scores[repeated], labels[repeated])[0])
    assert min_dcf(scores, labels, 0.05, weights=weights)[0] == pytest.approx(
        min_dcf(scores[repeated], labels[repeated], 0.05)[0])


def test_metric_classes_equal_functions_across_batches():
    scores, labels = _random_trials(11)
    metric_eer, metric_dcf = EER(), MinDCF(p_target=0.05)
    for chunk in np.array_split(np.arange(len(scores)), 4):
        metric_eer.update(torch.tensor(scores[chunk]), torch.tensor(labels[chunk]))
        metric_dcf.update(torch.tensor(scores[chunk]), torch.tensor(labels[chunk]))
    assert float(metric_eer.compute()) == pytest.approx(eer(scores, labels)[0])
    assert float(metric_dcf.compute()) == pytest.approx(min_dcf(scores, labels, 0.05)[0])


@pytest.mark.filterwarnings("ignore:The ``compute`` method of metric")
@pytest.mark.parametrize("metric", [EER, MinDCF])
def test_metric_classes_before_any_trial_say_so(metric):
    with pytest.raises(ValueError, match=f"{metric.__name__} has seen no trials: call update"):
        metric().compute()


def _speaker_trials():
    """Every cross pair of 4 speakers x 2 utterances: 8 target (same speaker, distinct utterances
    counted both ways) and 48 nontarget trials."""
    utts = [f"s{k}/u{j}.wav" for k in range(4) for j in range(2)]
    enroll, test, labels = [], [], []
    for a in utts:
        for b in utts:
            if a != b:
                enroll.append(a)
                test.append(b)
                labels.append(int(a.split("/")[0] == b.split("/")[0]))
    return enroll, test, np.array(labels)


def test_speaker_bootstrap_pairs_and_order():
    enroll, test, labels = _speaker_trials()
    perfect = labels.astype(float)  # targets score 1, nontargets 0: EER 0 in every draw
    worse = 1.0 - labels  # every target below every nontarget: EER 1 in every draw
    curves = {"a": (perfect, labels), "b": (perfect.copy(), labels), "c": (worse, labels)}
    out = speaker_bootstrap(curves, enroll, test, [("a", "b"), ("a", "c")], resamples=50, seed=0)
    same = out["a_minus_b"]
    assert same["mean"] == 0.0 and same["ci95"] == [0.0, 0.0] and same["share_in_order"] == 1.0
    better = out["a_minus_c"]
    assert better["mean"] == pytest.approx(-100.0) and better["ci95"] == pytest.approx([-100.0, -100.0])
    assert better["share_in_order"] == 1.0 and 0 < better["resamples"] <= 50
    again = speaker_bootstrap(curves, enroll, test, [("a", "c")], resamples=50, seed=0)
    assert again["a_minus_c"] == better  # seeded: the same draws
    with pytest.raises(ValueError, match="without scores"):
        speaker_bootstrap(curves, enroll, test, [("a", "zz")])
    with pytest.raises(ValueError, match="differ in length"):
        speaker_bootstrap(curves, enroll[:-1], test, [("a", "b")])
    with pytest.raises(ValueError, match="scores for"):
        speaker_bootstrap({"a": (perfect[:-1], labels[:-1])}, enroll, test, [("a", "a")])
    with pytest.raises(ValueError, match="resamples"):
        speaker_bootstrap(curves, enroll, test, [("a", "b")], resamples=0)



def _bootstrap_by_eer(curves, enroll, test, pairs, resamples, seed):
    """The straightforward bootstrap: one full ``eer(scores, labels, weights)`` per system and draw."""
    speakers = sorted({u.split("/")[0] for u in (*enroll, *test)})
    index = {s: i for i, s in enumerate(speakers)}
    spk_a = np.array([index[u.split("/")[0]] for u in enroll])
    spk_b = np.array([index[u.split("/")[0]] for u in test])
    named = sorted({name for pair in pairs for name in pair})
    rng = np.random.default_rng(seed)
    diffs = {pair: [] for pair in pairs}
    for _ in range(resamples):
        counts = np.bincount(rng.integers(0, len(speakers), len(speakers)), minlength=len(speakers))
        try:
            values = {name: eer(*curves[name], counts[spk_a] * counts[spk_b])[0] for name in named}
        except ValueError:
            continue
        for a, b in pairs:
            diffs[(a, b)].append(100.0 * (values[a] - values[b]))
    return {f"{a}_minus_{b}": {"mean": float(np.mean(d)),
                               "ci95": [float(np.percentile(d, 2.5)), float(np.percentile(d, 97.5))],
                               "share_in_order": float((np.array(d) <= 0).mean()), "resamples": len(d)}
            for (a, b), d in diffs.items()}


@pytest.mark.parametrize(("seed", "n_speakers"), [(0, 3), (1, 12)])
def test_speaker_bootstrap_sorts_once_and_equals_per_draw_eer(seed, n_speakers, monkeypatch):
    """The bootstrap sorts each system once and only reweights per draw; its means, intervals
    and counts equal a full EER per draw exactly (tied scores; with 3 speakers some draws hold
    one class and are skipped)."""
    from paperzoo.rsknet import metrics

    rng = np.random.default_rng(seed)
    utts = [f"s{k:02d}/u{j}.wav" for k in range(n_speakers) for j in range(4)]
    pick_a, pick_b = rng.integers(0, len(utts), 600), rng.integers(0, len(utts), 600)
    enroll, test = [utts[i] for i in pick_a], [utts[i] for i in pick_b]
    labels = np.array([int(a.split("/")[0] == b.split("/")[0]) for a, b in zip(enroll, test)])
    curves = {f"m{k}": (np.round(rng.standard_normal(600) + (0.8 + 0.4 * k) * labels, 1), labels)
              for k in range(3)}
    pairs = [("m0", "m1"), ("m2", "m0")]
    expected = _bootstrap_by_eer(curves, enroll, test, pairs, 120, seed)
    calls = []
    counted = metrics.error_rates
    monkeypatch.setattr(metrics, "error_rates", lambda *a, **k: calls.append(1) or counted(*a, **k))
    assert speaker_bootstrap(curves, enroll, test, pairs, resamples=120, seed=seed) == expected
    assert len(calls) <= 3  # not one full sort per system and draw
    if n_speakers == 3:
        assert expected["m0_minus_m1"]["resamples"] < 120

def test_metric_bad_input():
    with pytest.raises(ValueError, match="only one class"):
        eer([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="NaN"):
        eer([0.1, float("nan")], [1, 0])
    with pytest.raises(ValueError, match="p_target"):
        min_dcf([0.1, 0.2], [1, 0], p_target=1.0)
    with pytest.raises(ValueError, match="p_target"):
        MinDCF(p_target=0.0)


def test_aam_without_margin_is_scaled_cosine_and_finite_at_the_ends():
    loss = AAMSoftmax(4, 3, margin=0.0, scale=30.0)
    emb, labels = torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1])
    torch.testing.assert_close(loss.logits(emb, labels), 30.0 * loss.cosine(emb))
    loss.margin = 0.2
    emb = loss.weight.detach()[[0, 1]].clone()  # cos = 1 with its own class
    emb = torch.cat([emb, -loss.weight.detach()[[2]]])  # cos = -1 with its own class
    emb.requires_grad_(True)
    value = loss(emb, torch.tensor([0, 1, 2]))
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(emb.grad).all()
    logits = loss.logits(emb, torch.tensor([0, 1, 2]))
    cos_own = loss.cosine(emb)[2, 2]
    assert logits[2, 2].item() == pytest.approx(30.0 * (cos_own - 0.2 * math.sin(0.2)).item(), rel=1e-5)


def test_aam_margin_checks_and_schedule():
    # both ends of [0, pi/2): pi/2 itself and a negative margin, named with the value given
    with pytest.raises(ValueError, match=re.escape(f"margin must be in [0, pi/2), got {math.pi / 2}")):
        AAMSoftmax(4, 3, margin=math.pi / 2)
    with pytest.raises(ValueError, match=re.escape("margin must be in [0, pi/2), got -0.1")):
        AAMSoftmax(4, 3, margin=-0.1)
    with pytest.raises(ValueError, match=re.escape("margin must be in [0, pi/2), got -0.1")):
        MarginScheduler(-0.1)
    AAMSoftmax(4, 3, margin=0.0)  # 0 is inside the interval
    with pytest.raises(ValueError, match="scale"):
        AAMSoftmax(4, 3, scale=0.0)
    schedule = MarginScheduler.over_fraction(0.2, total_steps=100, fraction=0.4)
    assert [schedule(s) for s in (0, 20, 40, 90)] == pytest.approx([0.0, 0.1, 0.2, 0.2])
    paper = MarginScheduler(0.2, start=20, end=40)
    assert [paper(e) for e in (0, 20, 30, 40, 100)] == pytest.approx([0.0, 0.0, 0.1, 0.2, 0.2])


def test_cosine_and_normalisation():
    g = torch.Generator().manual_seed(0)
    enroll, test, cohort = (torch.randn(6, 8, generator=g), torch.randn(6, 8, generator=g),
                            torch.randn(20, 8, generator=g))
    scores = cosine(enroll, test)
    torch.testing.assert_close(scores[0], torch.nn.functional.cosine_similarity(enroll[:1], test[:1]).double()[0])
    full = as_norm(scores, enroll, test, cohort, top_n=20)
    torch.testing.assert_close(full, s_norm(scores, enroll, test, cohort))
    sims = torch.nn.functional.normalize(enroll[0:1].double(), dim=-1) @ torch.nn.functional.normalize(cohort.double(), dim=-1).T
    top = sims[0].topk(5).values
    sims_t = torch.nn.functional.normalize(test[0:1].double(), dim=-1) @ torch.nn.functional.normalize(cohort.double(), dim=-1).T
    top_t = sims_t[0].topk(5).values
    expected = 0.5 * ((scores[0] - top.mean()) / top.std(unbiased=False) + (scores[0] - top_t.mean()) / top_t.std(unbiased=False))
    torch.testing.assert_close(as_norm(scores, enroll, test, cohort, top_n=5)[0], expected)
    with pytest.raises(ValueError, match="top_n"):
        as_norm(scores, enroll, test, cohort, top_n=21)
    with pytest.raises(ValueError, match="NaN"):
        cosine(enroll * float("nan"), test)


def test_cohort_statistics_once_per_utterance_equal_the_per_trial_ones(monkeypatch):
    """AS-norm/S-norm with a table of distinct embeddings and per-trial indices equals the
    per-trial computation, and score_trials computes the cohort statistics once per utterance."""
    from paperzoo.rsknet import scoring
    from paperzoo.rsknet.data import Trials
    from paperzoo.rsknet.pipeline import score_trials

    rng = np.random.default_rng(3)
    utts = [f"s{k // 3}/u{k % 3}.wav" for k in range(12)]
    table = torch.as_tensor(rng.standard_normal((12, 16)).astype(np.float32))
    cohort = torch.as_tensor(rng.standard_normal((40, 16)).astype(np.float32))
    a, b = rng.integers(0, 12, 200), rng.integers(0, 12, 200)
    scores = cosine(table[a], table[b])
    for top_n in (1, 7, 40):
        indexed = as_norm(scores, table, table, cohort, top_n, enroll_index=a, test_index=b)
        torch.testing.assert_close(indexed, as_norm(scores, table[a], table[b], cohort, top_n), rtol=0, atol=1e-12)
    indexed = s_norm(scores, table, table, cohort, enroll_index=a, test_index=b)
    torch.testing.assert_close(indexed, s_norm(scores, table[a], table[b], cohort), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="both enroll_index and test_index"):
        s_norm(scores, table, table, cohort, enroll_index=a)
    with pytest.raises(ValueError, match="rows outside"):
        s_norm(scores, table, table, cohort, enroll_index=a + 12, test_index=b)
    with pytest.raises(ValueError, match="cohort embeddings have 8 dimensions but the enroll embeddings 16"):
        as_norm(scores, table[a], table[b], cohort[:, :8], 5)

    labels = np.array([int(utts[i].split("/")[0] == utts[j].split("/")[0]) for i, j in zip(a, b)])
    trials = Trials(labels, [utts[i] for i in a], [utts[j] for j in b])
    embeddings = {u: table[k].numpy() for k, u in enumerate(utts)}
    rows = []
    counted = scoring._cohort_stats
    monkeypatch.setattr(scoring, "_cohort_stats", lambda emb, *args: rows.append(len(emb)) or counted(emb, *args))
    for norm in ("asnorm", "snorm"):
        rows.clear()
        result = score_trials(trials, embeddings, norm, cohort.numpy(), top_n=7)
        assert sum(rows) <= 12  # once per distinct utterance, not 2 x 200 trials
        per_trial = (as_norm(scores, table[a], table[b], cohort, 7) if norm == "asnorm"
                     else s_norm(scores, table[a], table[b], cohort))
        np.testing.assert_allclose(result.scores, per_trial.numpy(), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="cohort embeddings have 8 dimensions"):
        score_trials(trials, embeddings, "snorm", cohort.numpy()[:, :8])

def test_calibrate_threshold():
    scores, labels = _random_trials(3)
    assert calibrate_threshold(scores, labels, "eer") == eer(scores, labels)[1]
    thr = calibrate_threshold(scores, labels, "fpr:0.05")
    assert (scores[labels == 0] > thr).mean() <= 0.05
    with pytest.raises(ValueError, match="calibrate_threshold"):
        calibrate_threshold(scores, labels, "dcf")
