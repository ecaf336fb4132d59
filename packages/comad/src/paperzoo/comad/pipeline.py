"""Library-level runs: fit a model on a LOCO category or on the user's images, score, explain.

from paperzoo.comad import create_model, fit_category, score_images
fitted = fit_category("data/", "tray", model="offline")
report = score_images(fitted.model, fitted.category.test())
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from paperzoo.comad.data import ImageSet, LocoCategory
from paperzoo.comad.metrics import loco_auroc
from paperzoo.comad.model import ComAD, ScoreResult, create_model


@dataclass
class FitResult:
    model: ComAD
    category: LocoCategory | None
    n_train: int
    n_validation: int
    seconds: float


@dataclass
class ScoreReport:
    """Per-image rows, LOCO metrics per branch (when labels are known) and the raw result."""

    rows: list[dict]
    metrics: dict[str, float]
    result: ScoreResult
    images: ImageSet = field(repr=False)


def fit_images(model: ComAD, train: ImageSet, validation: ImageSet | None = None) -> FitResult:
    """Fit ``model`` on the user's own good images (and validation good images for the fusion)."""
    started = time.perf_counter()
    model.fit(train.images, None if validation is None else validation.images)
    return FitResult(
        model,
        None,
        len(train),
        0 if validation is None else len(validation),
        time.perf_counter() - started,
    )


def fit_category(
    root: str | Path, category: str, model: str | ComAD = "offline", **overrides
) -> FitResult:
    """Fit on ``<root>/<category>/train/good``; the fusion on ``validation/good``. Only those
    two splits are needed; the test split is checked when ``result.category.test()`` reads it."""
    loco = LocoCategory(root, category, splits=("train", "validation"))
    train, validation = loco.train(), loco.val()
    network = create_model(model, **overrides) if isinstance(model, str) else model
    result = fit_images(network, train, validation)
    result.category = loco
    return result


def check_fusion(fusion: str, components: list[int] | None) -> None:
    """Refuse ``znorm`` with a component subset: its statistics belong to the full score."""
    if components is not None and fusion == "znorm":
        raise ValueError(
            f"--components {','.join(map(str, components))} restricts the logical score to a "
            "subset, but the z-norm statistics were fitted on validation scores of all kept "
            "components; use --fusion raw or --fusion none with --components"
        )


def score_images(
    model: ComAD, images: ImageSet, fusion: str = "znorm", components: list[int] | None = None
) -> ScoreReport:
    """Score images; rows hold every branch's score, metrics the LOCO AUROCs when labelled.

    ``components`` restricts the logical score to a subset of the kept components; the z-norm
    statistics were fitted on the full-component score, so that subset is scored with
    ``fusion="raw"`` or ``"none"`` only (and no ``fused`` column or metric is reported, as for a
    model fitted without validation images)."""
    check_fusion(fusion, components)
    result = model.score(images.images, components)
    final = result.final(fusion)
    rows = []
    for i, path in enumerate(images.paths):
        explanation = result.logical.explain(i)
        row = {
            "image": str(path),
            "kind": images.kinds[i],
            "subtype": images.subtypes[i],
            "score": float(final[i]),
            "comad": float(result.logical.total[i]),
            "patchcore": float(result.structural[i]),
            "raw_sum": float(result.raw[i]),
        }
        if result.fused is not None:  # no column at all rather than a column of NaN
            row["fused"] = float(result.fused[i])
        row["dominant"] = (
            f"component {explanation['dominant_component']} {explanation['dominant_measure']}"
        )
        rows.append(row)
    metrics: dict[str, float] = {}
    if {"good"} < set(images.kinds):
        branches = {
            "score": final,
            "comad": result.logical.total,
            "patchcore": result.structural,
            "raw_sum": result.raw,
        }
        if result.fused is not None:
            branches["fused"] = result.fused
        for name, scores in branches.items():
            for key, value in loco_auroc(scores, images.kinds, images.subtypes).items():
                metrics[f"{name}_{key}_auroc"] = value
    return ScoreReport(rows, metrics, result, images)


def explain_image(model: ComAD, image: np.ndarray) -> dict:
    """Sub-scores of one uint8 ``(H, W, 3)`` image by component and measure, plus the branch
    scores; the dominant component and measure name what makes it anomalous."""
    result = model.score(image[None])
    out = result.logical.explain(0)
    out.update(
        {
            "patchcore": float(result.structural[0]),
            "raw_sum": float(result.raw[0]),
            "fused": None if result.fused is None else float(result.fused[0]),
            "kept": model.kept,
        }
    )
    return out
