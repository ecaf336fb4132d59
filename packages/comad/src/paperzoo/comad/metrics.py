"""Metrics in the MVTec LOCO convention: image AUROC of good against each anomaly kind and
subtype, the mean of logical and structural (never "good vs all" as the headline; pitfall 9),
and the segmentation mIoU of component maps against part-label maps."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def auroc(good: np.ndarray, anomalous: np.ndarray) -> float:
    """Image AUROC of anomalous (positive) against good (negative) scores (torchmetrics).

    The scores go in as their ranks scaled to (0, 1]: torchmetrics applies a sigmoid to scores
    outside [0, 1], which rounds every score above ~37 to 1.0 and ties them. NaN scores are a
    ValueError."""
    from scipy.stats import rankdata
    from torchmetrics.functional.classification import binary_auroc

    good, anomalous = np.asarray(good, dtype=np.float64), np.asarray(anomalous, dtype=np.float64)
    if good.size == 0 or anomalous.size == 0:
        raise ValueError(
            f"AUROC needs good and anomalous scores, got {good.size} and {anomalous.size}"
        )
    for name, values in (("good", good), ("anomalous", anomalous)):
        if np.isnan(values).any():
            raise ValueError(
                f"AUROC needs scores that are numbers; {int(np.isnan(values).sum())} of "
                f"{values.size} {name} scores are NaN"
            )
    # Ranked through dense integer keys: scipy < 1.12 ranks an array holding both -inf and inf
    # as all NaN (it tests for NaN through the sum), and the keys keep order and ties exactly.
    keys = np.unique(np.concatenate([good, anomalous]), return_inverse=True)[1]
    ranks = rankdata(keys) / (good.size + anomalous.size)
    target = torch.cat(
        [torch.zeros(good.size, dtype=torch.long), torch.ones(anomalous.size, dtype=torch.long)]
    )
    return float(binary_auroc(torch.from_numpy(ranks), target))


def loco_auroc(
    scores: np.ndarray, kinds: Sequence[str], subtypes: Sequence[str] | None = None
) -> dict[str, float]:
    """AUROC per kind (``logical``, ``structural``), per subtype, and their LOCO ``mean``.

    ``kinds`` holds ``good``, ``logical`` or ``structural`` per image; ``subtypes`` the defect
    name (anything for good images).
    """
    scores = np.asarray(scores, dtype=np.float64)
    kinds = np.asarray(kinds)
    if len(kinds) != len(scores):
        raise ValueError(f"{len(scores)} scores but {len(kinds)} kinds")
    good = scores[kinds == "good"]
    out: dict[str, float] = {}
    for kind in ("logical", "structural"):
        if (kinds == kind).any():
            out[kind] = auroc(good, scores[kinds == kind])
    if "logical" in out and "structural" in out:
        out["mean"] = (out["logical"] + out["structural"]) / 2
    if subtypes is not None:
        subtypes = np.asarray(subtypes)
        for name in sorted(set(subtypes[kinds != "good"])):
            out[f"subtype_{name}"] = auroc(good, scores[(subtypes == name) & (kinds != "good")])
    return out


def segmentation_miou(
    pred_fit: np.ndarray,
    parts_fit: np.ndarray,
    pred_eval: np.ndarray,
    parts_eval: np.ndarray,
    kept: Sequence[int],
    n_parts: int,
    background_part: int = 0,
) -> tuple[float, dict[int, int]]:
    """V1: map each kept cluster to the part class it overlaps most on ``*_fit`` (many-to-one;
    dropped clusters become ``background_part``) and return the mean IoU over part classes on
    ``*_eval`` with that mapping, and the mapping."""
    pred_fit, parts_fit = np.asarray(pred_fit), np.asarray(parts_fit)
    n_clusters = int(max(pred_fit.max(), np.asarray(pred_eval).max())) + 1
    overlap = np.zeros((n_clusters, n_parts))
    np.add.at(overlap, (pred_fit.ravel(), parts_fit.ravel()), 1)
    mapping = {
        c: (int(overlap[c].argmax()) if c in kept else background_part) for c in range(n_clusters)
    }
    lookup = np.array([mapping[c] for c in range(n_clusters)])
    mapped = lookup[np.asarray(pred_eval)]
    parts_eval = np.asarray(parts_eval)
    ious = []
    for p in range(n_parts):
        union = ((mapped == p) | (parts_eval == p)).sum()
        if union:
            ious.append(((mapped == p) & (parts_eval == p)).sum() / union)
    return float(np.mean(ious)), mapping
