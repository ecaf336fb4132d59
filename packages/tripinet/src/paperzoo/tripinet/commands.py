"""The verbs of ``paperzoo-tripinet``: plain functions with typed arguments (the CLI is built from
them). Heavy modules are imported inside the functions so that ``--help`` loads no torch.

Every verb writes ``config.yaml`` (the core's CLI builder), ``metrics.json``, ``results.md`` and
its PNGs into ``--out``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from paperzoo.core.results import atomic_write_text, write_results

log = logging.getLogger(__name__)
Layout = Literal[
    "synthetic", "casia1", "casia2", "columbia", "coverage", "nist16", "folder", "json"
]


@dataclass
class ModelOptions:
    """The localiser: a preset and the options that override it (unset: the preset's value).

    Args:
        preset: tiny or paper.
        freq: frequency input: block_dct, dct_highpass or fft_highpass.
        streams: subset of rgb, noise, freq (rgb required).
        fusion: gcmda or plain (concatenation).
        gcmda_stages: decoder levels (1-4) fused with gCMDA.
        channels: fusion channels C.
        decoder_channels: PI-SE decoder channels.
        pool_kv: gCMDA keys/values pooled to at most pool_kv x pool_kv positions.
        rgb_weights: local weights file for the RGB encoder (nothing is downloaded).
    """

    preset: str = "tiny"
    freq: str | None = None
    streams: list[str] | None = None
    fusion: str | None = None
    gcmda_stages: list[int] | None = None
    channels: int | None = None
    decoder_channels: int | None = None
    pool_kv: int | None = None
    rgb_weights: str | None = None

    def overrides(self) -> dict:
        return {
            k: (tuple(v) if isinstance(v, list) else v)
            for k, v in vars(self).items()
            if k != "preset" and v is not None
        }


@dataclass
class DataOptions:
    """The images: generated forgeries or a real layout under ``root``.

    Args:
        layout: synthetic (offline) or a real layout: casia1, casia2, columbia, coverage, nist16,
            folder (Tp/, Gt/, Au/) or json ([image, mask] pairs; mask "Negative" = authentic).
        root: data set folder (the JSON file for json).
        gt_root: CASIA masks folder (default ROOT/Gt).
        csv: NIST16 reference CSV (default ROOT/reference/manipulation/*manipulation-ref.csv).
        columbia_channel: channel of Columbia's edge masks that marks the splice (1 = green).
        num_train: generated training images (synthetic).
        num_test: generated test images (synthetic).
        crop: training crop side (default: the preset's, 64 for tiny).
        batch_size: training batch (default: the preset's).
        test_fraction: share of a real layout's images held out for testing (1.0: all).
        eval_mode: pad (score real pixels of padded images) or resize (to eval_size; labelled).
        eval_size: side images are resized to in resize mode.
    """

    layout: Layout = "synthetic"
    root: str | None = None
    gt_root: str | None = None
    csv: str | None = None
    columbia_channel: int = 1
    num_train: int = 1600
    num_test: int = 300
    crop: int | None = None
    batch_size: int | None = None
    test_fraction: float = 0.2
    eval_mode: Literal["pad", "resize"] = "pad"
    eval_size: int = 512


DEFAULT_MODEL = ModelOptions()
DEFAULT_DATA = DataOptions()


def _options(value, kind):
    """A dataclass option as given from Python, or rebuilt from the CLI's parsed mapping."""
    if isinstance(value, kind):
        return value
    if isinstance(value, dict):
        return kind(**value)
    return kind(**vars(value))


def _datamodule(data: DataOptions, preset: str, seed: int):
    from paperzoo.tripinet.data import IMLDataModule, SyntheticForgeryDataModule
    from paperzoo.tripinet.model import RECIPES

    recipe = RECIPES.get(preset, RECIPES["tiny"])
    batch_size = data.batch_size or recipe["batch_size"]
    if data.layout == "synthetic":
        return SyntheticForgeryDataModule(
            data.num_train,
            data.num_test,
            size=data.crop or 64,
            batch_size=batch_size,
            seed=seed,
            progress=True,
        )
    if data.root is None:
        raise ValueError(f"--data.layout {data.layout} needs --data.root (nothing is downloaded)")
    return IMLDataModule(
        data.layout,
        data.root,
        data.gt_root,
        data.csv,
        data.columbia_channel,
        crop=data.crop or recipe["crop"],
        batch_size=batch_size,
        test_fraction=data.test_fraction,
        eval_mode=data.eval_mode,
        eval_size=data.eval_size,
        seed=seed,
    )


def _split_meta(data: DataOptions, datamodule, seed: int) -> dict:
    """What decides the train/test split, stored with the checkpoint so that ``test`` can refuse
    a split that would score training images. Generated data: the test photographs are never
    training photographs, whatever the options."""
    if data.layout == "synthetic":
        return {"layout": "synthetic"}
    return {
        "layout": data.layout,
        "root": str(Path(data.root).resolve()),
        "test_fraction": data.test_fraction,
        "seed": seed,
        "num_records": len(datamodule.listing.records),
        "train_image_keys": sorted({_image_key(r.image) for r in datamodule.train_records}),
    }


def _image_key(path: Path) -> str:
    """A short key of an image's resolved path (16 hex digits of its SHA-1): lets ``test`` find
    training images listed under another layout, root or CSV without storing the paths."""
    return hashlib.sha1(str(Path(path).resolve()).encode()).hexdigest()[:16]


def _check_split(split: dict | None, data: DataOptions, datamodule, seed: int, ckpt) -> int:
    """1 when the test images cannot be training images of ``ckpt``, 0 when that is unknown (a
    checkpoint written before the split, or its training images, were recorded); raises when
    they would be. Other data than the training data (another layout, root or CSV) is compared
    with the training images by resolved path, so the same files listed another way are found."""
    if data.layout == "synthetic":
        return 1  # the test photographs: never training images
    if split is None:
        return 0
    if split["layout"] == "synthetic":
        return 1  # trained on generated images: real ones cannot be among them
    same_source = split["layout"] == data.layout and split.get("root") == str(
        Path(data.root).resolve()
    )
    if same_source:  # the friendlier explanation first: which option rebuilds the split
        _check_same_split(split, data, datamodule, seed, ckpt)
    keys = split.get("train_image_keys")
    if keys is None:  # written before the training images were recorded
        return 1 if same_source else 0
    trained = set(keys)  # by resolved path, whatever the layout, root, CSV or its row order
    shared = [r.image for r in datamodule.test_records if _image_key(r.image) in trained]
    if shared:
        raise ValueError(
            f"{len(shared)} of the {len(datamodule.test_records)} test images "
            f"({data.layout} at {data.root}) are training images of {ckpt} "
            f"(trained on {split['layout']} at {split.get('root')}), e.g. {shared[0]}: "
            "scoring them would overstate the result; test on images it was not trained on"
        )
    return 1


def _check_same_split(split: dict, data: DataOptions, datamodule, seed: int, ckpt) -> None:
    """On the training layout and root: the split options must be the training run's."""
    trained = {"--data.test_fraction": split["test_fraction"], "--seed": split["seed"]}
    given = {"--data.test_fraction": data.test_fraction, "--seed": seed}
    for option, value in trained.items():
        if given[option] != value:
            raise ValueError(
                f"{option} {given[option]} differs from the split {ckpt} was trained on "
                f"({option} {value}, layout {data.layout} at {data.root}): the test images "
                f"would include training images; pass {option} {value} or test on other data"
            )
    if split["num_records"] != len(datamodule.listing.records):
        raise ValueError(
            f"{data.root} lists {len(datamodule.listing.records)} images, but {split['num_records']}"
            f" when {ckpt} was trained (another --data.gt_root or --data.csv?): the training "
            "split cannot be rebuilt, so its test images could include training images"
        )


def _eval_mode_flag(data: DataOptions) -> int:
    """1 when real images were resized for evaluation (generated ones are never resized)."""
    return int(data.eval_mode == "resize" and data.layout != "synthetic")


def _overlays(net, loader, out: Path, device: str, count: int = 6) -> None:
    import torch

    from paperzoo.tripinet.module import as_outputs
    from paperzoo.tripinet.plots import overlay_grid

    batch = next(iter(loader))
    with torch.no_grad():
        prob = torch.sigmoid(
            as_outputs(net(batch["image"][:count].to(device)))["mask_logits"]
        ).cpu()
    overlay_grid(
        batch["image"][:count],
        batch["mask"][:count, 0],
        prob[:, 0],
        out / "overlays.png",
        titles=list(batch["kind"][:count]),
    )


def train(
    out: Path,
    model: ModelOptions = DEFAULT_MODEL,
    data: DataOptions = DEFAULT_DATA,
    steps: int = 400,
    lr: float | None = None,
    seed: int = 0,
    device: str = "cpu",
    devices: int = 1,
    num_nodes: int = 1,
    strategy: str = "auto",
    precision: str | None = None,
    resume: bool = False,
) -> dict:
    """Train a localiser; writes OUT/model.safetensors, test metrics and overlays.

    Under DDP (--devices/--num_nodes > 1, --strategy ddp) --data.batch_size is per process
    (metrics.json: global_batch_size) and rank 0 alone scores the whole test set after training.
    OUT/checkpoints/last.ckpt is saved after every pass over the training images (--resume).

    Args:
        model: the localiser preset and overrides.
        data: the images.
        steps: optimiser steps (Adam, cosine schedule).
        lr: learning rate (default: the preset's).
        resume: continue the interrupted run in --out from its last checkpoint (same options)
    """
    from paperzoo.core.lightning import CHECKPOINT_DIR

    return _train_and_score(
        out,
        model,
        data,
        steps,
        lr,
        seed,
        device,
        devices,
        num_nodes,
        strategy,
        precision,
        resume_dir=out / CHECKPOINT_DIR,
        resume=resume,
    )


def _train_and_score(
    out: Path,
    model: ModelOptions,
    data: DataOptions,
    steps: int,
    lr: float | None,
    seed: int,
    device: str,
    devices: int = 1,
    num_nodes: int = 1,
    strategy: str = "auto",
    precision: str | None = None,
    resume_dir: Path | None = None,
    resume: bool = False,
) -> dict:
    """``train`` (with resume checkpoints in ``resume_dir``) and ``demo`` (without: None)."""
    from paperzoo.tripinet.model import RECIPES, create_model
    from paperzoo.tripinet.pipeline import evaluate_localizer, save_localizer, train_localizer

    if steps < 1:
        raise ValueError(f"--steps must be >= 1, got {steps}")
    model, data = _options(model, ModelOptions), _options(data, DataOptions)
    net = create_model(model.preset, **model.overrides())
    datamodule = _datamodule(data, model.preset, seed)
    result = train_localizer(
        net,
        datamodule.train_dataloader(),
        steps=steps,
        device=device,
        out_dir=out,
        lr=lr or RECIPES.get(model.preset, RECIPES["tiny"])["lr"],
        seed=seed,
        devices=devices,
        num_nodes=num_nodes,
        strategy=strategy,
        precision=precision,
        resume_dir=resume_dir,
        resume=resume,
    )
    if result.global_rank != 0:
        return {}  # under DDP, rank 0 alone saves and scores (its --out is the run's)
    save_localizer(
        net,
        out / "model.safetensors",
        model.preset,
        model.overrides(),
        {
            "layout": data.layout,
            "steps": steps,
            "seed": seed,
            "split": _split_meta(data, datamodule, seed),
            "precision": precision or "32-true",
            "world_size": result.world_size,
            "strategy": strategy,
            "batch_size_per_process": datamodule.batch_size,
        },
    )
    evaluation = evaluate_localizer(net, datamodule.test_dataloader(), device=device)
    _overlays(net, datamodule.test_dataloader(), out, device)
    metrics = {
        **evaluation.metrics,
        "train_seconds": result.seconds,
        "final_loss": result.losses[-1],
        "eval_mode_resize": _eval_mode_flag(data),
        "world_size": result.world_size,
        "global_batch_size": result.world_size * datamodule.batch_size,
    }
    write_results(out, metrics, title=f"TriPINet {model.preset} on {data.layout} ({steps} steps)")
    return metrics


def test(
    out: Path,
    ckpt: str,
    data: DataOptions = DEFAULT_DATA,
    perturb: str = "none",
    eval_mode: Literal["pad", "resize"] | None = None,
    seed: int = 0,
    device: str = "cpu",
) -> dict:
    """Score a trained localiser (pixel F1 at 0.5, pixel AUC, image AUC, F1 per kind).

    On the data root and layout the checkpoint was trained on, --seed and
    --data.test_fraction must be the training split's (else the test images would include
    training images); metrics.json says split_checked 0 for a checkpoint that predates this check.

    Args:
        ckpt: weights written by train (model.safetensors).
        data: the test images (a real layout other than the training data: use
            --data.test_fraction 1.0 for all of them).
        perturb: post-processing before scoring: none, jpeg:QUALITY or resize:FACTOR.
        eval_mode: pad or resize (overrides --data.eval_mode).
    """
    from paperzoo.tripinet.forgery import parse_perturbation
    from paperzoo.tripinet.pipeline import evaluate_localizer, load_localizer

    parse_perturbation(perturb)
    data = _options(data, DataOptions)
    if eval_mode is not None:
        data = replace(data, eval_mode=eval_mode)
    net, meta = load_localizer(ckpt)
    datamodule = _datamodule(data, meta["preset"], seed)
    split_checked = _check_split(meta.get("split"), data, datamodule, seed, ckpt)
    if not split_checked:
        log.warning(
            "%s records no training split or training images (written before they were "
            "stored): the test images are not checked against its training images "
            "(split_checked: 0)",
            ckpt,
        )
    evaluation = evaluate_localizer(
        net, datamodule.test_dataloader(), device=device, perturbation=perturb
    )
    _overlays(net, datamodule.test_dataloader(), out, device)
    metrics = {
        **evaluation.metrics,
        "eval_mode_resize": _eval_mode_flag(data),
        "split_checked": split_checked,
    }
    write_results(
        out, metrics, title=f"TriPINet test on {data.layout} ({data.eval_mode}, perturb {perturb})"
    )
    return metrics


def predict(
    out: Path, ckpt: str, image: list[str], threshold: float = 0.5, device: str = "cpu"
) -> dict:
    """Tamper maps of images: OUT/<stem>_prob.png, OUT/<stem>_overlay.png, OUT/scores.csv and
    metrics.json (images, max_score). Pixels are read as stored: an EXIF orientation tag is not
    applied (a warning names tagged images).

    Args:
        ckpt: weights written by train.
        image: image files or folders (a folder gives its image files, hidden names skipped).
        threshold: probability above which a pixel is marked tampered in the overlay.
    """
    import numpy as np
    import torch
    from PIL import Image

    from paperzoo.core.data import exif_orientation
    from paperzoo.core.results import atomic_path
    from paperzoo.tripinet.data import _images, read_rgb
    from paperzoo.tripinet.pipeline import load_localizer, predict_masks
    from paperzoo.tripinet.plots import overlay

    if not image:
        raise ValueError("--image needs at least one file")
    if not 0 < threshold < 1:
        raise ValueError(f"--threshold must be in (0, 1), got {threshold}")
    files = []
    for p in image:  # a folder gives its image files
        files += [str(f) for f in _images(Path(p), "--image")] if Path(p).is_dir() else [p]
    image = files
    arrays = [read_rgb(p) for p in image]  # every file is read before any work
    turned = [p for p in image if exif_orientation(p) != 1]
    if turned:
        log.warning(
            "%d image(s) carry an EXIF orientation tag (e.g. %s); the maps follow the pixels as "
            "stored, which a viewer shows turned",
            len(turned),
            turned[0],
        )
    stems = [Path(p).stem for p in image]
    if len(set(stems)) != len(stems):
        raise ValueError(f"--image names two files with the same stem: {stems}")
    net, _ = load_localizer(ckpt)
    tensors = [torch.from_numpy(a).permute(2, 0, 1).float() / 255.0 for a in arrays]
    maps = predict_masks(net, tensors, device=device)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["image", "score", "tampered_fraction"])
    for path, stem, array, prob in zip(image, stems, arrays, maps):
        p = prob.numpy()
        for suffix, picture in (
            ("prob", (p * 255).round().astype(np.uint8)),
            ("overlay", (overlay(array / 255.0, p, threshold) * 255).round().astype(np.uint8)),
        ):
            with atomic_path(out / f"{stem}_{suffix}.png") as tmp:
                Image.fromarray(picture).save(tmp, format="PNG")
        writer.writerow([path, f"{p.max():.6f}", f"{(p > threshold).mean():.6f}"])
    atomic_write_text(out / "scores.csv", buffer.getvalue())
    metrics = {"images": len(image), "max_score": float(max(m.max() for m in maps))}
    write_results(out, metrics, title=f"TriPINet tamper maps of {len(image)} images")
    return metrics


def demo(
    out: Path,
    steps: int = 150,
    num_train: int = 400,
    num_test: int = 60,
    seed: int = 0,
    device: str = "cpu",
) -> dict:
    """TriPINet end to end on generated forgeries: train tiny, score, overlay (about a minute).

    Args:
        steps: training steps of the tiny preset.
        num_train: generated training images.
        num_test: generated test images (other photographs).
    """
    data = DataOptions(num_train=num_train, num_test=num_test)
    return _train_and_score(out, ModelOptions(), data, steps, None, seed, device)


def validate(
    out: Path,
    steps: int = 400,
    num_train: int = 1600,
    num_test: int = 300,
    seeds: int = 3,
    arms: list[str] | None = None,
    workers: int = 2,
    job_timeout_s: float = 3600.0,
    seed: int = 0,
    device: str = "cpu",
    final_jpeg_prob: float = 0.5,
) -> dict:
    """Spec section 5: stream ablations, gCMDA vs plain fusion, noise baseline, robustness.

    Args:
        steps: training steps of every learned arm (batch 16).
        num_train: generated training images (train photographs, seed 0).
        num_test: generated test images (test photographs, seed 1).
        seeds: seeds of the plain and full arms.
        arms: subset of rgb, nofreq, nonoise, plain, full (default all).
        workers: processes training arms in parallel (one torch thread each; 1: all in this
            process; 2, the default, fits the spec's two cores); the metrics do not depend on it.
        job_timeout_s: the longest one (arm, seed) training may run in a worker; a job that
            fails or runs longer is recorded (jobs_failed, a row naming it), the other arms are
            still scored, and the command exits with status 2 after writing the metrics. Not
            applied with --workers 1 or a device other than the CPU: the jobs then run in this
            process, one after another, without a time limit (a job that raises is still
            recorded).
        final_jpeg_prob: probability of the generator's whole-image JPEG 90-95 (spec section 3:
            0.5). Any other value is a generator variant, not the spec's data: metrics.json
            then says ``spec_data: 0`` and the results title names the variant, so its pass
            flags are not read as the spec's (README, "The spec's calibration probe, rebuilt").
    """
    from paperzoo.tripinet.forgery import SPEC_FINAL_JPEG_PROB, ForgeryGenerator
    from paperzoo.tripinet.validation import (
        ARMS,
        ValidationConfig,
        baseline_scores,
        check_workers,
        failure_summary,
        run_validation,
        summarise,
    )

    started = time.perf_counter()
    config = ValidationConfig(
        num_train=num_train,
        num_test=num_test,
        steps=steps,
        seeds=seeds,
        arms=tuple(arms or ARMS),
        job_timeout_s=job_timeout_s,
    )
    check_workers(workers)
    spec_data = final_jpeg_prob == SPEC_FINAL_JPEG_PROB
    generators = {  # the generator refuses a probability outside [0, 1] before any work
        split: ForgeryGenerator(split, final_jpeg_prob=final_jpeg_prob)
        for split in ("train", "test")
    }
    train_set = generators["train"].generate(num_train, config.train_seed, progress=True)
    test_set = generators["test"].generate(num_test, config.test_seed, progress=True)
    results = run_validation(
        config, train_set, test_set, workers=workers, base_seed=seed, device=device
    )
    metrics, rows = summarise(results, baseline_scores(test_set), time.perf_counter() - started)
    metrics["spec_data"] = int(spec_data)
    metrics["generator_final_jpeg_prob"] = final_jpeg_prob
    _validation_outputs(out, results, metrics, test_set, seed)
    variant = (
        ""
        if spec_data
        else f"; generator variant final_jpeg_prob {final_jpeg_prob}, not the spec's data: "
        "the pass flags do not judge the spec's lines"
    )
    write_results(
        out,
        metrics,
        rows,
        title=f"TriPINet validation ({steps} steps, {num_train} train / "
        f"{num_test} test, {seeds} seeds for plain and full{variant})",
    )
    failures = failure_summary(results)
    if failures:
        raise ValueError(f"{failures}; the other arms' metrics written to {out / 'metrics.json'}")
    return metrics


def _validation_outputs(out: Path, results, metrics: dict, test_set, seed: int) -> None:
    """Checkpoint and overlays of ``full`` at the base seed, per-kind and robustness bars."""
    import torch

    from paperzoo.core.checkpoint import save_weights
    from paperzoo.tripinet.model import create_model
    from paperzoo.tripinet.plots import kind_bars, overlay_grid, robustness_bars
    from paperzoo.tripinet.validation import ARMS, KINDS

    arms = [a for a in ARMS if f"{a}_f1" in metrics] + ["noisevar"]
    kind_bars(metrics, arms, KINDS, out / "f1_per_kind.png")
    first = next(
        (r for r in results if r["arm"] == "full" and r["seed"] == seed and "error" not in r),
        None,
    )
    if first is None:
        return
    robustness_bars(
        {
            "clean": metrics.get(f"full_f1_seed{seed}", first["f1"]),
            "jpeg 75": first.get("robust_jpeg75_f1", float("nan")),
            "resize 0.5": first.get("robust_resize50_f1", float("nan")),
        },
        out / "robustness.png",
    )
    net = create_model("tiny", **ARMS["full"])
    net.load_state_dict(first["state_dict"])
    save_weights(
        net, out / f"full_seed{seed}.safetensors", meta={"preset": "tiny", "overrides": {}}
    )
    picks = [i for i, k in enumerate(test_set.kinds) if k != "authentic"][:6]
    images = test_set.images[picks].float() / 255.0
    with torch.no_grad():
        prob = torch.sigmoid(net.eval()(images)["mask_logits"])
    overlay_grid(
        images,
        test_set.masks[picks, 0],
        prob[:, 0],
        out / "overlays.png",
        titles=[test_set.kinds[i] for i in picks],
    )
