"""Cosine scoring of embedding pairs, adaptive (AS-norm) and symmetric (S-norm) score
normalisation against a cohort, and operating-threshold calibration."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def _check_embeddings(name: str, emb: torch.Tensor) -> torch.Tensor:
    emb = torch.as_tensor(emb, dtype=torch.float64)
    if emb.dim() != 2:
        raise ValueError(f"{name} embeddings must be (N, E), got shape {tuple(emb.shape)}")
    if not torch.isfinite(emb).all():
        raise ValueError(f"{name} embeddings hold NaN or infinite values; refusing to score them")
    return emb


def cosine(enroll: torch.Tensor, test: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of each enroll/test pair: (N, E), (N, E) -> (N,)."""
    enroll, test = _check_embeddings("enroll", enroll), _check_embeddings("test", test)
    if enroll.shape != test.shape:
        raise ValueError(f"enroll {tuple(enroll.shape)} and test {tuple(test.shape)} must pair up")
    return (F.normalize(enroll, dim=-1) * F.normalize(test, dim=-1)).sum(-1)


def _cohort_stats(emb: torch.Tensor, cohort: torch.Tensor, top_n: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    sims = F.normalize(emb, dim=-1) @ F.normalize(cohort, dim=-1).T
    if top_n is not None:
        sims = sims.topk(top_n, dim=-1).values
    return sims.mean(-1), sims.std(-1, unbiased=False).clamp(min=1e-8)


def as_norm(scores: torch.Tensor, enroll: torch.Tensor, test: torch.Tensor, cohort: torch.Tensor,
            top_n: int = 100, *, enroll_index=None, test_index=None) -> torch.Tensor:
    """Adaptive symmetric normalisation: ``0.5 [(s - mu_e)/sigma_e + (s - mu_t)/sigma_t]`` with
    statistics over each side's ``top_n`` highest cohort scores (Matejka et al. 2017).

    With ``enroll_index`` and ``test_index`` (one integer per trial), ``enroll`` and ``test`` are
    tables of distinct embeddings (the same table may serve both) and trial ``i`` uses rows
    ``enroll_index[i]`` and ``test_index[i]``: each row's cohort statistics are computed once,
    not once per trial, with the same result as passing the rows trial by trial."""
    cohort = _check_embeddings("cohort", cohort)
    if not 1 <= top_n <= cohort.shape[0]:
        raise ValueError(f"top_n={top_n} must be between 1 and the cohort size {cohort.shape[0]}")
    return _normalise(scores, enroll, test, cohort, top_n, enroll_index, test_index)


def s_norm(scores: torch.Tensor, enroll: torch.Tensor, test: torch.Tensor, cohort: torch.Tensor, *,
           enroll_index=None, test_index=None) -> torch.Tensor:
    """Symmetric normalisation with statistics over the whole cohort (``enroll_index`` and
    ``test_index`` as in :func:`as_norm`)."""
    cohort = _check_embeddings("cohort", cohort)
    if cohort.shape[0] < 2:
        raise ValueError(f"s_norm needs a cohort of at least 2 embeddings, got {cohort.shape[0]}")
    return _normalise(scores, enroll, test, cohort, None, enroll_index, test_index)


def _rows(name: str, index, table: torch.Tensor) -> torch.Tensor:
    index = torch.as_tensor(np.asarray(index), dtype=torch.long)
    if index.dim() != 1:
        raise ValueError(f"{name}_index must be 1-D, got shape {tuple(index.shape)}")
    if len(index) and not (0 <= int(index.min()) and int(index.max()) < table.shape[0]):
        raise ValueError(f"{name}_index holds rows outside the {table.shape[0]} {name} embeddings")
    return index


def _normalise(scores, enroll, test, cohort, top_n, enroll_index=None, test_index=None):
    if (enroll_index is None) != (test_index is None):
        raise ValueError("give both enroll_index and test_index, or neither")
    same_table = enroll is test
    enroll, test = _check_embeddings("enroll", enroll), _check_embeddings("test", test)
    for name, emb in (("enroll", enroll), ("test", test)):
        if emb.shape[1] != cohort.shape[1]:
            raise ValueError(f"cohort embeddings have {cohort.shape[1]} dimensions but the {name} "
                             f"embeddings {emb.shape[1]}; score with a cohort from the same model")
    scores = torch.as_tensor(scores, dtype=torch.float64)
    if enroll_index is None:
        if not (scores.shape[0] == enroll.shape[0] == test.shape[0]):
            raise ValueError(f"{scores.shape[0]} scores but {enroll.shape[0]} enroll and {test.shape[0]} test embeddings")
        mu_e, sd_e = _cohort_stats(enroll, cohort, top_n)
        mu_t, sd_t = _cohort_stats(test, cohort, top_n)
        return 0.5 * ((scores - mu_e) / sd_e + (scores - mu_t) / sd_t)
    enroll_index, test_index = _rows("enroll", enroll_index, enroll), _rows("test", test_index, test)
    if not (scores.shape[0] == enroll_index.shape[0] == test_index.shape[0]):
        raise ValueError(f"{scores.shape[0]} scores but {enroll_index.shape[0]} enroll and "
                         f"{test_index.shape[0]} test indices")
    mu_e, sd_e = _cohort_stats(enroll, cohort, top_n)  # once per distinct embedding
    mu_t, sd_t = (mu_e, sd_e) if same_table else _cohort_stats(test, cohort, top_n)
    mu_e, sd_e, mu_t, sd_t = mu_e[enroll_index], sd_e[enroll_index], mu_t[test_index], sd_t[test_index]
    return 0.5 * ((scores - mu_e) / sd_e + (scores - mu_t) / sd_t)


def calibrate_threshold(scores, labels, at: str = "eer") -> float:
    """A decision threshold from labelled scores: ``"eer"`` or ``"fpr:0.01"`` (largest share of
    nontargets accepted at most 0.01)."""
    from paperzoo.rsknet.metrics import eer, error_rates

    if at == "eer":
        return eer(scores, labels)[1]
    if at.startswith("fpr:"):
        try:
            target = float(at.split(":", 1)[1])
        except ValueError:
            raise ValueError(f"calibrate_threshold at={at!r}: expected 'fpr:<rate>'") from None
        if not 0.0 <= target < 1.0:
            raise ValueError(f"calibrate_threshold fpr rate must be in [0, 1), got {target}")
        rates = error_rates(scores, labels)
        ok = np.flatnonzero(rates.fpr <= target)
        return float(rates.thresholds[ok[0]])
    raise ValueError(f"calibrate_threshold at must be 'eer' or 'fpr:<rate>', got {at!r}")
