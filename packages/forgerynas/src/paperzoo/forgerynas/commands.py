"""The verbs of ``paperzoo-forgerynas``: search, derive, train, evaluate, demo, validate.

Each checks its options, calls the pipeline or the validation, and writes ``metrics.json``, a
table, JSON genotypes and PNGs under ``out``. Heavy modules are imported inside the functions, so
``--help`` does not import torch.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

Space = Literal["forgery", "darts", "extended"]
Detector = Literal["tiny", "paper", "hand_cnn", "timm_resnet10t"]
PerfMetric = Literal["auc", "acc", "neg_loss", "acc+auc"]
DeriveBy = Literal["importance", "alpha"]
Level = Literal["frame", "video"]
Split = Literal["train", "val", "test"]

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"  # OUT/checkpoints: the training verbs' resume checkpoints


def _positive(**values: int | None) -> None:
    for name, value in values.items():
        if value is not None and value < 1:
            raise ValueError(f"--{name} must be >= 1, got {value}")


def _write_search_outputs(out: Path, result, title: str) -> None:
    from paperzoo.forgerynas.pipeline import save_trace
    from paperzoo.forgerynas.plots import save_arch_weights, save_cells

    result.genotype.save(out / "genotype.json")
    result.genotype_alpha.save(out / "genotype_alpha.json")
    save_trace(result.trace, out / "trace.json")
    save_arch_weights(out / "arch_weights.png", result.trace, title=title)
    save_cells(out / "cells.png", result.genotype, title=f"{title}: derived by importance")


def search(
    out: Path,
    train: str = "synthetic:A",
    arch_val: str = "synthetic:A",
    space: Space = "forgery",
    preset: Literal["tiny", "paper"] = "tiny",
    test: list[str] | None = None,
    epochs: int | None = None,
    batches_per_epoch: int = 0,
    K: int | None = None,
    C: int | None = None,
    layers: int | None = None,
    steps: int | None = None,
    perf_metric: PerfMetric = "auc",
    lambda_perf: float = 0.5,
    paper_bug_compat: bool = False,
    devices: int = 1,
    num_nodes: int = 1,
    strategy: str = "auto",
    precision: str | None = None,
    resume: bool = False,
    seed: int = 0,
    device: str = "cpu",
) -> dict[str, Any]:
    """Search normal and reduction cells: weights on --train, architecture on --arch_val (the same
    set: in-dataset search on two halves split by source; another domain: cross-dataset search).

    Args:
        train: weight-step data (synthetic:A|B|C, ffpp:ROOT, celebdf:ROOT, csv:FILE, npz:FILE).
        arch_val: architecture-step data; comma-separated for several auxiliary domains (round-robin).
        space: forgery (CDC ops), darts (vanilla baseline) or extended.
        preset: search preset (tiny or paper); the options below override it.
        test: reported test domains; an auxiliary domain among them is refused (default synthetic:B).
        epochs: search epochs; the preset's warm-up and prune epochs are scaled to this length
            (rounded, every prune after the warm-up).
        batches_per_epoch: batch pairs per epoch (0: one pass over --train).
        K: partial-channel K (C/K channels go through the ops).
        C: supernet width.
        layers: supernet cells.
        steps: nodes per cell.
        perf_metric: P of the importance: auc, acc, neg_loss or acc+auc.
        lambda_perf: weight of P in the importance.
        paper_bug_compat: wire DilCDC_3x3_0.7 with theta 0, as the released code.
        devices: Lightning devices; the search runs in one process (its importance and pruning
            are one state), so more than one device or node is refused.
        num_nodes: Lightning nodes.
        strategy: Lightning strategy.
        precision: Lightning precision.
        resume: continue the interrupted run in --out from its last checkpoint (same options).

    A checkpoint of the search is saved after every epoch (OUT/checkpoints/last.ckpt).
    """
    from paperzoo.core.results import write_results
    from paperzoo.forgerynas.data import load_frames
    from paperzoo.forgerynas.pipeline import SearchConfig, search_architecture, split_halves
    from paperzoo.forgerynas.search import scaled_schedule

    _positive(epochs=epochs, K=K, C=C, layers=layers, steps=steps)
    test = ["synthetic:B"] if test is None else test
    arch_specs = [a.strip() for a in arch_val.split(",") if a.strip()]
    contaminated = sorted(set(arch_specs) & set(test))
    if contaminated and arch_specs != [train]:
        raise ValueError(
            f"--arch_val {contaminated} is a reported test domain (--test); the search would be contaminated"
        )
    # --epochs scales the preset's own warm-up and prune schedule (every prune after the warm-up)
    warmup, prune_at = (None, None) if epochs is None else scaled_schedule(preset, epochs)
    config = SearchConfig(
        preset=preset,
        space=space,
        epochs=epochs,
        K=K,
        C=C,
        layers=layers,
        steps=steps,
        batches_per_epoch=batches_per_epoch,
        perf_metric=perf_metric,
        lambda_perf=lambda_perf,
        paper_bug_compat=paper_bug_compat,
        prune_at=prune_at,
        warmup=warmup,
    )
    weight_data = load_frames(train, "train", config.size, seed)
    if arch_specs == [train]:
        weight_data, arch_data = split_halves(weight_data, seed)
    else:
        arch_data = [load_frames(a, "train", config.size, seed) for a in arch_specs]
    result = search_architecture(
        weight_data,
        arch_data,
        config,
        seed=seed,
        device=device,
        out_dir=out,
        devices=devices,
        num_nodes=num_nodes,
        strategy=strategy,
        precision=precision,
        resume_dir=out / CHECKPOINTS,
        resume=resume,
    )
    _write_search_outputs(out, result, f"{space} search ({train} / {arch_val})")
    metrics = {
        "search_seconds": result.seconds,
        "pruned_ops": len(result.pruned),
        "final_perf": result.trace["epochs"][-1]["perf"] or 0.0,
        "epochs": config.epochs,
    }
    write_results(out, metrics, title=f"forgerynas search: {result.genotype.to_dict()}")
    return metrics


def derive(
    out: Path, trace: str, derive_by: DeriveBy = "importance", epoch: int = -1
) -> dict[str, Any]:
    """Derive a genotype JSON (and its cell plot) from a search trace.

    Args:
        trace: trace.json written by search.
        derive_by: rank ops by importance (alpha + lambda P) or softmax(alpha).
        epoch: which recorded epoch (-1: the last).
    """
    from paperzoo.core.results import write_results
    from paperzoo.forgerynas.pipeline import derive_from_trace, load_trace
    from paperzoo.forgerynas.plots import save_arch_weights, save_cells

    record = load_trace(trace)
    if not -len(record["epochs"]) <= epoch < len(record["epochs"]):
        raise ValueError(
            f"--epoch {epoch} out of range for {len(record['epochs'])} recorded epochs"
        )
    genotype = derive_from_trace(record, derive_by, epoch)
    genotype.save(out / "genotype.json")
    save_cells(out / "cells.png", genotype, title=f"derived by {derive_by}")
    save_arch_weights(out / "arch_weights.png", record, title="architecture weights")
    ops = genotype.ops_used()
    metrics = {"cdc_edges": sum("CDC" in o for o in ops), "edges": len(ops)}
    write_results(out, metrics, title=f"derived genotype ({derive_by})")
    return metrics


def _training_meta(train_set, train_data: str, val_data: str | None, seed: int) -> dict:
    """What ``evaluate`` checks against, stored in the checkpoint's sidecar: ``size``, the side
    of the training frames (npz arrays are not resized: theirs, whatever --size), and ``split``,
    what decided the training data split (the sources, path resolved, and the seed)."""
    from paperzoo.forgerynas.data import data_source

    return {
        "size": int(train_set[0][0].shape[-1]),
        "split": {
            "train_data": data_source(train_data),
            "val_data": data_source(val_data) if val_data else None,
            "seed": int(seed),
        },
    }


def _check_size(meta: dict, size: int | None, ckpt: str) -> tuple[int, int]:
    """The frame size to score at and whether it was checked (1) against the training size
    recorded with the checkpoint: its size by default, another one refused; a checkpoint without
    the record (written before it was stored): ``size`` or 32, unchecked (0)."""
    trained = meta.get("size")
    if trained is None:
        return (32 if size is None else size), 0
    if size is not None and size != trained:
        raise ValueError(
            f"--size {size}: {ckpt} was trained on {trained}x{trained} frames (--size {trained}); "
            "scoring it at another size measures another detector; leave --size out"
        )
    return int(trained), 1


def _frame_shape(frames) -> tuple[int, int]:
    """Height and width of a frame set's frames (all alike: a loader resizes to --size, an npz
    file's arrays are one block)."""
    shape = frames[0][0].shape
    return int(shape[-2]), int(shape[-1])


def _check_frame_shape(frames, data: str, size: int, checked: int, ckpt: str) -> None:
    """Refuses frames whose height or width is not the size scored at (an ``npz:`` file is not
    resized: a 32x48 or 64x64 array passed a 32x32 checkpoint's size check)."""
    height, width = _frame_shape(frames)
    if (height, width) != (size, size):
        if checked:
            wanted = f"{ckpt} was trained on {size}x{size} frames"
        else:
            wanted = f"they are scored at --size {size} (no training size recorded with {ckpt})"
        hint = f"an npz: file is not resized: resize its arrays to {size}x{size}"
        if not checked and height == width:
            hint += f", or pass --size {height} if the detector was trained on {height}x{width}"
        raise ValueError(
            f"--data {data}: its frames are {height}x{width} (height x width) but {wanted}; {hint}"
        )


def _check_split(meta: dict, data: str, split: str, seed: int, ckpt: str) -> int:
    """1 when the split scored cannot be another seed's draw of the training source (checked
    against the training split recorded with the checkpoint), 0 when the checkpoint records none;
    raises when --seed differs from the training seed on a split drawn with it (Celeb-DF's
    train / val identities) of the source the detector was trained on."""
    from paperzoo.forgerynas.data import data_source, split_depends_on_seed

    record = meta.get("split")
    if record is None:
        return 0
    trained = record["seed"]
    if (
        split_depends_on_seed(data, split)
        and record.get("train_data") == data_source(data)
        and seed != trained
    ):
        raise ValueError(
            f"--seed {seed}: {ckpt} was trained on {data} with --seed {trained}, and the {split} "
            f"split of {data} is drawn with the seed: under --seed {seed} it holds videos the "
            f"detector was trained on; pass --seed {trained}"
        )
    return 1


def train(
    out: Path,
    genotype: str = "paper-cross",
    model: Detector = "tiny",
    train_data: str = "synthetic:A",
    val_data: str | None = None,
    size: int = 32,
    C: int | None = None,
    layers: int | None = None,
    drop_path: float | None = None,
    epochs: int = 6,
    batch_size: int = 32,
    lr: float = 0.05,
    batches_per_epoch: int = 0,
    flips: bool = False,
    lr_warmup_epochs: float = 0.0,
    restarts: int = 0,
    restart_check_epoch: int = 2,
    restart_min_val_auc: float = 0.75,
    devices: int = 1,
    num_nodes: int = 1,
    strategy: str = "auto",
    precision: str | None = None,
    resume: bool = False,
    seed: int = 0,
    device: str = "cpu",
) -> dict[str, Any]:
    """Retrain a detector from scratch: a genotype's pyramid net, the hand CNN or timm resnet10t.

    Args:
        genotype: genotype JSON, paper-cross, darts-v2, random:SEED (tiny/paper models only).
        model: tiny or paper (genotype nets), hand_cnn or timm_resnet10t.
        train_data: training frames (synthetic:A, ffpp:ROOT, celebdf:ROOT, csv:FILE, npz:FILE).
        val_data: validation frames (pooled AUC per epoch; the --restarts rule reads it);
            default: the val split of --train_data (synthetic:A, ffpp:ROOT, celebdf:ROOT), a
            source without one (csv:, npz:, synthetic:B|C) needs it; empty to skip.
        size: frame size (synthetic crops, resized folders).
        C: network width.
        layers: cells of the pyramid net.
        drop_path: drop-path probability.
        epochs: training epochs (cosine schedule).
        batch_size: class-balanced batch size (even); the global batch under DDP, each of the
            devices x num_nodes processes training on its balanced share (a multiple of
            2 x processes).
        lr: SGD learning rate.
        batches_per_epoch: batches per epoch (0: one pass).
        flips: random left-right and top-bottom flips of the training frames (the official
            code's dataAug; off by default).
        lr_warmup_epochs: linear learning-rate warm-up per step over this many epochs (may be
            fractional, below epochs), then the cosine (0: none, the default).
        restarts: start a retraining again (same initial weights, another batch order) when its
            validation AUC after restart_check_epoch is below restart_min_val_auc, at most this
            many times (0, the default: never; needs val_data; not in the paper).
        restart_check_epoch: the epoch after which the restart rule reads the validation AUC.
        restart_min_val_auc: the validation AUC below which an attempt is started again.
        devices: Lightning devices.
        num_nodes: Lightning nodes.
        strategy: Lightning strategy.
        precision: Lightning precision.
        resume: continue the interrupted run in --out from its last checkpoint (same options).

    A checkpoint is saved after every epoch (OUT/checkpoints/last.ckpt; with --restarts one
    folder per attempt, OUT/checkpoints/attempt<k>/last.ckpt).
    """
    from paperzoo.core.results import write_results
    from paperzoo.forgerynas.data import default_val_spec, load_frames
    from paperzoo.forgerynas.pipeline import (
        TrainConfig,
        build_detector,
        save_detector,
        train_detector,
    )

    _positive(size=size, C=C, layers=layers, epochs=epochs, batch_size=batch_size)
    if val_data is None:  # the training source's own val split, never another domain's
        val_data = default_val_spec(train_data)
    config = TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        batches_per_epoch=batches_per_epoch,
        flips=flips,
        lr_warmup_epochs=lr_warmup_epochs,
        restarts=restarts,
        restart_check_epoch=restart_check_epoch,
        restart_min_val_auc=restart_min_val_auc,
    )
    overrides = (
        {"C": C, "layers": layers, "drop_path": drop_path}
        if model in ("tiny", "paper")
        else {"C": C}
    )
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if model == "timm_resnet10t" and C is not None:
        raise ValueError("--C does not apply to timm_resnet10t")
    net = build_detector(model, genotype if model in ("tiny", "paper") else None, **overrides)
    train_set = load_frames(train_data, "train", size, seed)
    val_set = load_frames(val_data, "val", size, seed) if val_data else None
    if val_set is not None and _frame_shape(val_set) != _frame_shape(train_set):
        raise ValueError(
            "--val_data {}: its frames are {}x{}, the training frames {}x{} (an npz: file is not "
            "resized)".format(val_data, *_frame_shape(val_set), *_frame_shape(train_set))
        )
    run = train_detector(
        net,
        train_set,
        val_set,
        config,
        seed=seed,
        device=device,
        out_dir=out,
        devices=devices,
        num_nodes=num_nodes,
        strategy=strategy,
        precision=precision,
        resume_dir=out / CHECKPOINTS,
        resume=resume,
    )
    if run.global_rank != 0:
        return {}  # under DDP, rank 0 alone saves the detector and writes the results
    scale = {
        "precision": precision or "32-true",
        "world_size": run.world_size,
        "strategy": strategy,
    }
    save_detector(
        run.model,
        out / "model.safetensors",
        model,
        overrides,
        meta={**_training_meta(train_set, train_data, val_data, seed), **scale},
    )
    metrics = {
        "first_loss": run.losses[0],
        "last_loss": run.losses[-1],
        "train_seconds": run.seconds,
        "params": sum(p.numel() for p in run.model.parameters()),
        "steps": len(run.lr),  # optimiser steps of the detector returned (its last attempt)
        "world_size": run.world_size,
    }
    if run.val_auc:
        metrics["val_auc"] = run.val_auc[-1]
    if run.attempts:
        metrics["attempts"] = len(run.attempts)
    write_results(
        out, metrics, title=f"forgerynas train ({model}, {train_data}, val {val_data or 'none'})"
    )
    return metrics


def evaluate(
    out: Path,
    ckpt: str,
    data: str = "synthetic:B",
    split: Split = "test",
    level: Level = "frame",
    size: int | None = None,
    genotype: str | None = None,
    seed: int = 0,
    device: str = "cpu",
) -> dict[str, Any]:
    """Score a trained detector: AUC, AP, accuracy and EER pooled over the split, and a ROC plot.

    The checkpoint's sidecar records the training frame size and data split (train verb):
    --size defaults to the training size and another one is refused, as are frames of another
    height or width (an npz: file is not resized); on the training source, a
    split drawn with the seed (Celeb-DF train / val) must be scored with the training --seed.
    metrics.json says size_checked / split_checked 0 for a checkpoint without these records.

    Args:
        ckpt: model.safetensors written by train or demo.
        data: frames to score (synthetic:A|B|C, ffpp:ROOT, celebdf:ROOT, csv:FILE, npz:FILE).
        split: split of a data set layout.
        level: frame, or video (mean probability per video; every frame of a video must share
            its label; not for synthetic domains, whose ids are sources, not videos).
        size: frame size (default: the training size recorded with --ckpt; 32 without one).
        genotype: refuse weights that were trained for another genotype.
        seed: split seed (Celeb-DF's held-out identities) and synthetic crops; on the training
            source the training seed.
    """
    from torchmetrics.functional.classification import binary_roc

    from paperzoo.core.checkpoint import read_meta
    from paperzoo.core.results import write_results
    from paperzoo.forgerynas.data import load_frames, parse_data_spec
    from paperzoo.forgerynas.metrics import video_labels
    from paperzoo.forgerynas.pipeline import evaluate_detector, load_detector
    from paperzoo.forgerynas.plots import save_roc

    if level == "video" and parse_data_spec(data)[0] == "synthetic":
        raise ValueError(
            f"--level video with --data {data}: synthetic domains have no videos (their ids are "
            "source ids shared by real and fake crops); use --level frame"
        )
    _positive(size=size)
    model = load_detector(ckpt, genotype)
    meta = read_meta(ckpt)
    size, size_checked = _check_size(meta, size, ckpt)
    split_checked = _check_split(meta, data, split, seed, ckpt)
    for what, option, checked in (
        ("frame size", "--size", size_checked),
        ("data split", "--seed", split_checked),
    ):
        if not checked:
            log.warning(
                "%s records no training %s (written before it was stored): %s is not checked "
                "against the training run",
                ckpt,
                what,
                option,
            )
    frames = load_frames(data, split, size, seed)
    _check_frame_shape(frames, data, size, size_checked, ckpt)
    if level == "video":  # one label per video, checked before the frames are scored
        video_labels(frames.labels, frames.video_ids)
    result = evaluate_detector(model, frames, device, level=level)
    fpr, tpr, _ = binary_roc(result.probs, result.labels)
    save_roc(
        out / "roc.png",
        {data: (fpr.numpy(), tpr.numpy(), result.scores["auc"])},
        title=f"{level} ROC",
    )
    metrics = {
        **result.scores,
        "frames": len(frames),
        "size": size,
        "size_checked": size_checked,
        "split_checked": split_checked,
    }
    write_results(out, metrics, title=f"forgerynas evaluate ({data}, {split}, {level})")
    return metrics


def demo(
    out: Path, n_train: int = 480, epochs: int = 3, seed: int = 0, device: str = "cpu"
) -> dict[str, Any]:
    """A tiny cross-dataset search (weights on A, architecture on C), its derived cells, a retrain
    on A and scores on A-test and the held-out B, on generated faces (about a minute).

    Args:
        n_train: generated training crops of domain A (and of C).
        epochs: retraining epochs.
    """
    from paperzoo.core.results import write_results
    from paperzoo.forgerynas.data import TensorFrames
    from paperzoo.forgerynas.forgeries import make_domain, source_pools
    from paperzoo.forgerynas.pipeline import (
        SearchConfig,
        TrainConfig,
        build_detector,
        evaluate_detector,
        save_detector,
        search_architecture,
        train_detector,
    )

    if n_train < 64 or n_train % 2:
        raise ValueError(f"--n_train must be an even number >= 64, got {n_train}")
    _positive(epochs=epochs)
    pools = source_pools(32)
    sets = {
        key: make_domain(d, split, n, 32, seed, pools)
        for key, (d, split, n) in {
            "A-train": ("A", "train", n_train),
            "A-test": ("A", "test", 200),
            "B": ("B", "test", 200),
            "C": ("C", "train", n_train),
        }.items()
    }
    frames = {k: TensorFrames(v.images, v.labels, v.video_ids, name=k) for k, v in sets.items()}
    config = SearchConfig(
        C=4,
        layers=3,
        steps=2,
        K=2,
        epochs=2,
        warmup=1,
        prune_at=(2,),
        batch_size=16,
        batches_per_epoch=4,
    )
    result = search_architecture(
        frames["A-train"],
        frames["C"],
        config,
        seed=seed,
        device=device,
        test_domains=("B", "A-test"),
    )
    _write_search_outputs(out, result, "demo: weights on A, architecture on C")
    model = build_detector("tiny", result.genotype, C=8, layers=4)
    run = train_detector(
        model,
        frames["A-train"],
        None,
        TrainConfig(epochs=epochs, batch_size=32),
        seed=seed,
        device=device,
    )
    save_detector(
        run.model,
        out / "model.safetensors",
        "tiny",
        {"C": 8, "layers": 4},
        meta=_training_meta(frames["A-train"], "synthetic:A", None, seed),
    )
    metrics = {
        "search_seconds": result.seconds,
        "train_seconds": run.seconds,
        "last_loss": run.losses[-1],
    }
    for name in ("A-test", "B"):
        metrics.update(
            {
                f"{name}_{k}": v
                for k, v in evaluate_detector(run.model, frames[name], device).scores.items()
            }
        )
    write_results(out, metrics, title="forgerynas demo (tiny search and retrain, generated faces)")
    return metrics


def validate(
    out: Path,
    seeds: int = 3,
    n_train: int = 1600,
    search_epochs: int = 3,
    search_batches: int = 8,
    train_epochs: int = 4,
    eval_layers: int = 8,
    eval_C: int = 8,
    first_seed: int = 0,
    arms: list[str] | None = None,
    mechanism: bool = True,
    train_flips: bool = False,
    train_lr_warmup_epochs: float = 0.0,
    train_restarts: int = 0,
    train_restart_check_epoch: int = 2,
    train_restart_min_val_auc: float = 0.75,
    train_restart_init: bool = False,
    workers: int = 2,
    job_timeout_s: float = 3600.0,
    threads: int = 0,
    device: str = "cpu",
) -> dict[str, Any]:
    """The spec's validation: unit facts, the shortcut probe, searched vs vanilla vs random cells vs
    hand CNN vs timm (in-domain A, cross-domain B), in- vs cross-dataset search, the CDC importance
    share and the partial-channel memory ratio.

    Args:
        seeds: seeds of every arm (search and retraining; spec: 3).
        n_train: generated A-train crops (spec: 1600).
        search_epochs: search epochs per searched arm (warm-up 1, then pruning every epoch).
        search_batches: batch pairs per search epoch.
        train_epochs: retraining epochs per arm.
        eval_layers: cells of the retrained pyramid net (8: a normal cell before each of the four
            reductions, as the spec's tiny preset; 4 leaves only reduction cells).
        eval_C: initial channels of the retrained pyramid net (8, the validation's budget; the
            spec's tiny preset is 12).
        first_seed: seeds run are first_seed .. first_seed + seeds - 1 (to split seeds over runs
            and combine them with ``validation.merge_metrics``).
        arms: subset of cdc_in, cdc_cross, vanilla, random, cnn, timm (default: all).
        mechanism: also search a colour-cast control (V4).
        train_flips: random flips of the retraining frames (``TrainConfig.flips``; off).
        train_lr_warmup_epochs: linear learning-rate warm-up of the retraining, in epochs
            (``TrainConfig.lr_warmup_epochs``; 0, none).
        train_restarts: validation-selected restarts of each retraining (``TrainConfig.restarts``:
            an attempt whose A-val AUC after train_restart_check_epoch is below
            train_restart_min_val_auc starts again with another batch order; 0, none).
        train_restart_check_epoch: see train_restarts.
        train_restart_min_val_auc: see train_restarts.
        train_restart_init: a restarted retraining also draws new initial weights (under seed
            + k * 1000 for attempt k), not only another batch order (false).
        workers: processes for the independent searches and retrainings, one torch thread each
            (1: all in this process, on ``--threads`` threads); the metrics do not depend on it.
        job_timeout_s: the longest one search or retraining may run in a worker; a job that
            fails or runs longer is recorded (jobs_failed, a row naming it), the rest goes on,
            and the command exits with status 2 after writing the metrics. With --workers 1 or a
            device other than cpu the jobs run in this process and the timeout does not apply
            (nothing interrupts a running job there).

    Without workers the run uses ``--threads`` torch threads (0, the default, means one, as the
    spec asks).
    """
    from paperzoo.core.results import write_results
    from paperzoo.forgerynas.pipeline import save_trace
    from paperzoo.forgerynas.plots import save_arch_weights, save_cells, save_roc
    from paperzoo.forgerynas.validation import ARMS, ValidationConfig, run_validation

    config = ValidationConfig(
        seeds=seeds,
        n_train=n_train,
        search_epochs=search_epochs,
        search_batches=search_batches,
        train_epochs=train_epochs,
        eval_layers=eval_layers,
        eval_C=eval_C,
        first_seed=first_seed,
        arms=tuple(arms or ARMS),
        mechanism=mechanism,
        train_flips=train_flips,
        train_lr_warmup_epochs=train_lr_warmup_epochs,
        train_restarts=train_restarts,
        train_restart_check_epoch=train_restart_check_epoch,
        train_restart_min_val_auc=train_restart_min_val_auc,
        train_restart_init=train_restart_init,
        threads=max(threads, 1),
        workers=workers,
        job_timeout_s=job_timeout_s,
    )
    result = run_validation(config, device)
    for name, genotype in result.genotypes.items():
        genotype.save(out / "genotypes" / f"{name}.json")
    for name, trace in result.traces.items():
        save_trace(trace, out / "traces" / f"{name}.json")
        if name.endswith(f"seed{first_seed}"):
            save_arch_weights(out / f"arch_weights_{name}.png", trace, title=name)
            save_cells(out / f"cells_{name}.png", result.genotypes[name], title=name)
    if result.curves:
        save_roc(out / "roc_B.png", result.curves, title="cross-domain ROC on B (seed 0)")
    write_results(out, result.metrics, result.rows, title=f"forgerynas validation ({seeds} seeds)")
    if result.failed:
        raise ValueError(
            f"{len(result.failed)} validation job(s) failed ("
            + "; ".join(f"{f.name}: {f.reason.splitlines()[0]}" for f in result.failed)
            + f"); the other arms' metrics written to {out / 'metrics.json'}"
        )
    return {k: v for k, v in result.metrics.items() if "_seed" not in k}
