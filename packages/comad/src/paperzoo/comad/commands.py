"""The verbs of ``paperzoo-comad``: fit, score, explain, generate, demo, validate. Each writes
``metrics.json``, a Markdown table and its plots under ``--out``. Heavy modules are imported
inside the verbs so that ``--help`` stays fast. The method is training-free and runs on the CPU."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

RUN_FILE = "model.safetensors"


def _components(text: str | None) -> list[int] | None:
    if text is None or text == "":
        return None
    try:
        return [int(v) for v in str(text).split(",")]
    except ValueError as error:
        raise ValueError(
            f"--components must be comma-separated component ids, got {text!r}"
        ) from error


def _run_path(run: str) -> Path:
    path = Path(run)
    path = path / RUN_FILE if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"no fitted run at {path} (expected the {RUN_FILE} written by fit)")
    return path


def _fit_source(
    data: str | None, category: str | None, train: str | None, validation: str | None
) -> None:
    """Exactly one source of good images: a LOCO root (``--data`` + ``--category``) or
    ``--train`` (and ``--validation``) folders / ``npz:FILE``."""
    if train is not None and data is not None:
        raise ValueError(
            "give either --data ROOT --category NAME (an MVTec LOCO root) or --train DIR|npz:FILE "
            "(your own good images), not both"
        )
    if train is None and data is None:
        raise ValueError(
            "fit needs its good images: --data ROOT --category NAME (an MVTec LOCO root) or "
            "--train DIR|npz:FILE [--validation DIR|npz:FILE] (your own good images)"
        )
    if data is not None and not category:
        raise ValueError(
            "--data is a LOCO root and needs --category (the category folder under it); "
            "for a folder or npz:FILE of your own good images use --train instead"
        )
    if train is not None and category:
        raise ValueError(
            f"--category {category} names a folder under a --data LOCO root; --train takes the "
            "good images themselves (leave --category out)"
        )
    if validation is not None and train is None:
        raise ValueError(
            "--validation goes with --train; a LOCO root's validation/good is read by itself"
        )


def fit(
    out: Path,
    data: str | None = None,
    category: str | None = None,
    train: str | None = None,
    validation: str | None = None,
    model: Literal["tiny", "offline", "paper"] = "offline",
    dino_weights: str | None = None,
    patchcore_weights: str | None = None,
    crf: Literal["local", "dense", "none"] = "local",
    n_components: int = 5,
    patchcore_ratio: float = 0.1,
    filter_mode: Literal["vote", "first"] = "vote",
    seed: int = 0,
) -> dict:
    """Fit ComAD + PatchCore on good images: a LOCO root's train/good or your own --train images.

    The fusion statistics come from the root's validation/good, or from --validation.

    Args:
        data: MVTec LOCO root (or one written by generate), with --category; only train/good and
            validation/good are read (no test split or defects_config.json is needed).
        category: category folder under the --data root.
        train: instead of --data: your own good images, a folder or npz:FILE (uint8 N,H,W,3
            'images'); at least 6, all of one size.
        validation: with --train: good images for the fusion statistics (a folder or npz:FILE, at
            least 2); without them, score the run with --fusion raw or none.
        model: preset; paper needs --dino_weights and --patchcore_weights.
        dino_weights: local DINO ViT-S/8 weights file (timm vit_small_patch8_224.dino).
        patchcore_weights: local WideResNet-50 weights file (timm wide_resnet50_2).
        crf: CRF backend.
        n_components: K of k-means.
        patchcore_ratio: PatchCore coreset ratio.
        filter_mode: component filter over 16 training images (vote) or the first (official).
    """
    from paperzoo.comad.data import load_images
    from paperzoo.comad.model import create_model
    from paperzoo.comad.pipeline import fit_category, fit_images
    from paperzoo.comad.plots import plot_component_maps
    from paperzoo.core.results import write_results

    _fit_source(data, category, train, validation)
    options = dict(
        dino_weights=dino_weights,
        patchcore_weights=patchcore_weights,
        crf=crf,
        n_components=n_components,
        patchcore_ratio=patchcore_ratio,
        filter_mode=filter_mode,
        seed=seed,
    )
    if train is not None:
        good = load_images(train)
        held_out = None if validation is None else load_images(validation)
        fitted = fit_images(create_model(model, **options), good, held_out)
        source = train
    else:
        fitted = fit_category(data, category, model, **options)
        good = fitted.category.train()
        source = category
    fitted.model.save(out / RUN_FILE)
    grey = fitted.model.segmenter.grey_maps(fitted.model._inputs(good.images[:1])[0])[0].numpy()
    plot_component_maps(
        fitted.model._inputs(good.images[:1])[1][0],
        grey,
        fitted.model.kept,
        out / "components.png",
    )
    metrics = {
        "n_train": fitted.n_train,
        "n_validation": fitted.n_validation,
        "n_kept": len(fitted.model.kept),
        "fit_seconds": fitted.seconds,
    }
    write_results(out, metrics, title=f"ComAD fit on {source}: kept components {fitted.model.kept}")
    return metrics


def score(
    out: Path,
    run: str,
    data: str,
    category: str | None = None,
    fusion: Literal["znorm", "raw", "none"] = "znorm",
    components: str | None = None,
    dino_weights: str | None = None,
    patchcore_weights: str | None = None,
) -> dict:
    """Score images with a fitted run: a LOCO category's test split, a folder, or npz:FILE.

    Args:
        run: folder (or model.safetensors) written by fit.
        data: LOCO root (with --category), a folder of images, or npz:FILE (uint8 N,H,W,3 'images').
        category: LOCO category; its test split is scored and AUROCs reported.
        fusion: znorm (validation-normalised sum), raw (plain sum) or none (ComAD alone).
        components: comma-separated kept component ids that the logical score sums over (with
            --fusion raw or none: the z-norm statistics belong to the full score).
        dino_weights: the DINO weights file the run was fitted with (paper runs).
        patchcore_weights: the PatchCore CNN weights file the run was fitted with (paper runs).
    """
    import csv

    from paperzoo.comad.data import LocoCategory, load_images
    from paperzoo.comad.model import ComAD
    from paperzoo.comad.pipeline import check_fusion, score_images
    from paperzoo.comad.plots import plot_score_histograms
    from paperzoo.core.results import atomic_path, write_results

    wanted = _components(components)
    check_fusion(fusion, wanted)  # before the run is loaded
    model = ComAD.load(
        _run_path(run), dino_weights=dino_weights, patchcore_weights=patchcore_weights
    )
    images = (
        LocoCategory(data, category, splits=("test",)).test() if category else load_images(data)
    )
    report = score_images(model, images, fusion, wanted)
    with atomic_path(out / "scores.csv") as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(report.rows[0]))
        writer.writeheader()
        writer.writerows(report.rows)
    if report.metrics:
        plot_score_histograms(
            {
                "comad": report.result.logical.total,
                "patchcore": report.result.structural,
                fusion: report.result.final(fusion),
            },
            images.kinds,
            out / "scores.png",
        )
    metrics = {"n_images": len(report.rows), **report.metrics}
    write_results(out, metrics, report.rows, title=f"ComAD scores ({fusion})")
    return metrics


def explain(
    out: Path,
    run: str,
    image: str,
    dino_weights: str | None = None,
    patchcore_weights: str | None = None,
) -> dict:
    """Sub-scores of one image by component and measure, with its component maps as PNG.

    Args:
        run: folder (or model.safetensors) written by fit.
        image: the image file to explain.
        dino_weights: the DINO weights file the run was fitted with (paper runs).
        patchcore_weights: the PatchCore CNN weights file the run was fitted with (paper runs).
    """
    import json

    from paperzoo.comad.data import read_images
    from paperzoo.comad.model import ComAD
    from paperzoo.comad.pipeline import explain_image
    from paperzoo.comad.plots import plot_component_maps, plot_explanation
    from paperzoo.core.results import atomic_write_text, write_results

    model = ComAD.load(
        _run_path(run), dino_weights=dino_weights, patchcore_weights=patchcore_weights
    )
    pixels = read_images([Path(image)])
    explanation = explain_image(model, pixels[0])
    x, raw = model._inputs(pixels)
    plot_component_maps(
        raw[0], model.segmenter.grey_maps(x)[0].numpy(), model.kept, out / "components.png"
    )
    plot_explanation(explanation, out / "explanation.png")
    atomic_write_text(out / "explanation.json", json.dumps(explanation, indent=2) + "\n")
    metrics = {
        "total": explanation["total"],
        "global": explanation["global"],
        "patchcore": explanation["patchcore"],
        "dominant_component": explanation["dominant_component"],
    }
    write_results(
        out,
        metrics,
        title=f"{image}: component {explanation['dominant_component']} "
        f"{explanation['dominant_measure']} dominates",
    )
    return metrics


def generate(
    out: Path,
    category: Literal["tray", "bag", "bottle"] = "tray",
    image_size: int = 224,
    train: int = 60,
    validation: int = 20,
    good: int = 30,
    logical: int = 30,
    structural: int = 18,
    seed: int = 0,
    overwrite: bool = False,
) -> dict:
    """Write a LOCO-like data set (MVTec LOCO layout) with logical and structural defects.

    An existing OUT/<category> is refused; with --overwrite it is removed first.

    Args:
        category: tray, bag or bottle.
        image_size: side of the square images in pixels.
        train: train/good images (>= 6).
        validation: validation/good images.
        good: test/good images.
        logical: test/logical_anomalies images.
        structural: test/structural_anomalies images.
    """
    from paperzoo.comad.synth import SplitSizes, generate_category
    from paperzoo.core.results import write_results

    sizes = SplitSizes(train, validation, good, logical, structural)
    folder = generate_category(out, category, seed, sizes, image_size, overwrite=overwrite)
    metrics = {"images": train + validation + good + logical + structural, "image_size": image_size}
    write_results(out, metrics, title=f"generated {folder}")
    return metrics


def demo(out: Path, seed: int = 0, overwrite: bool = False) -> dict:
    """ComAD + PatchCore end to end on a generated tray category (about a minute on 2 cores)."""
    import torch

    from paperzoo.comad.synth import SplitSizes, generate_category

    torch.set_num_threads(1)
    generate_category(
        out / "data",
        "tray",
        seed,
        SplitSizes(30, 10, 15, 15, 9),
        image_size=224,
        overwrite=overwrite,
    )
    fitted = fit(out / "run", str(out / "data"), "tray", model="offline", seed=seed)
    scored = score(out / "scores", str(out / "run"), str(out / "data"), category="tray")
    from paperzoo.core.results import write_results

    metrics = {**fitted, **scored}
    write_results(out, metrics, title="ComAD demo on the generated tray category")
    return metrics


def validate(
    out: Path,
    seeds: int = 3,
    categories: str = "tray,bag,bottle",
    model: Literal["tiny", "offline"] = "offline",
    image_size: int = 224,
    train: int = 60,
    validation: int = 20,
    good: int = 30,
    logical: int = 30,
    structural: int = 18,
    seed: int = 0,
) -> dict:
    """The spec's validation V1-V6 on generated data (seeds for data and model).

    Args:
        seeds: number of seeds (seed, seed+1, ...); means over seeds.
        categories: comma-separated generated categories.
        model: preset (weight-free).
        image_size: side of the generated images.
        train: train/good images per category.
        validation: validation/good images per category.
        good: test/good images.
        logical: test/logical_anomalies images.
        structural: test/structural_anomalies images.
    """
    import torch

    from paperzoo.comad.synth import CATEGORIES, SplitSizes
    from paperzoo.comad.validation import validate as run_validation
    from paperzoo.core.results import write_results

    torch.set_num_threads(1)
    if seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {seeds}")
    names = tuple(c.strip() for c in categories.split(",") if c.strip())
    unknown = [c for c in names if c not in CATEGORIES]
    if unknown or not names:
        raise ValueError(
            f"--categories {categories!r}: unknown {unknown}; choose from {', '.join(CATEGORIES)}"
        )
    sizes = SplitSizes(train, validation, good, logical, structural)
    metrics, rows, _ = run_validation(
        tuple(range(seed, seed + seeds)), names, sizes, model, image_size
    )
    write_results(out, metrics, rows, title=f"ComAD validation ({seeds} seeds, {', '.join(names)})")
    return metrics
