"""The verbs of ``paperzoo-hodinet``: train, test, predict, demo, validate.

Each checks its options, calls the pipeline or the validation, and writes ``metrics.json``, a
table and PNGs under ``out``. Heavy modules are imported inside the functions, so ``--help``
does not import torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

Preset = Literal["tiny", "paper", "add_fusion_tiny", "rgb_only_tiny", "depth_only_tiny",
                 "add_fusion", "rgb_only", "depth_only"]
InvertDepth = Literal["auto", "yes", "no"]
KIND_GROUPS = ("camo", "baddepth", "both", "overall")


def _overrides(order: int | None, stage_fusion: str | None, img_size: int | None) -> dict[str, Any]:
    if order is not None and order < 1:
        raise ValueError(f"--order must be >= 1, got {order}")
    found = {"order": order, "stage_fusion": stage_fusion, "img_size": img_size}
    return {k: v for k, v in found.items() if v is not None}


def _save_model(model, path: Path, preset: str, overrides: dict[str, Any],
                training: dict[str, Any] | None = None) -> None:
    """Weights with the preset and overrides that rebuild the model, and how it was trained."""
    from paperzoo.core.checkpoint import save_weights

    save_weights(model, path, meta={"preset": preset, "overrides": overrides, **(training or {})})


def load_model(ckpt: str | Path):
    """A model saved by ``train``/``demo``: its preset and overrides are in the sidecar."""
    from paperzoo.core.checkpoint import load_weights, read_meta
    from paperzoo.hodinet.model import create_model

    path = Path(ckpt)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    meta = read_meta(path)
    if "preset" not in meta:
        raise ValueError(f"{path}: no preset in its sidecar {path.name}.json (save it with the train verb)")
    model = create_model(meta["preset"], **meta.get("overrides", {}))
    load_weights(model, path)
    return model.eval()


def train(out: Path, data: str = "synthetic", preset: Preset = "tiny", rgb_weights: str | None = None,
          depth_weights: str | None = None, steps: int = 300, epochs: int = 0, batch_size: int = 16,
          lr: float = 2e-3, clip: float = 0.5, order: int | None = None, stage_fusion: str | None = None,
          img_size: int | None = None, depth_dropout: float = 0.0, invert_depth: InvertDepth = "auto",
          n_scenes: int = 900, devices: int = 1, num_nodes: int = 1, strategy: str = "auto",
          precision: str | None = None, resume: bool = False, seed: int = 0,
          device: str = "cpu") -> dict[str, Any]:
    """Train a model on a data root's training folder (or on generated scenes) and save it.

    Args:
        data: a data root (BBS-Net, CDINet or set-folder layout) or ``synthetic``.
        preset: model preset; --order, --stage_fusion, --img_size override it.
        rgb_weights: local weights file of the RGB backbone (nothing is downloaded).
        depth_weights: local weights file of the depth backbone.
        steps: Adam steps (ignored when --epochs > 0).
        epochs: passes over the training set; the LR drops x0.1 after two thirds (paper: 120).
        batch_size: images per step and process (paper: 8); under DDP one step takes
            devices x num_nodes batches (metrics.json: global_batch_size).
        lr: Adam learning rate (paper: 1e-4).
        clip: gradient-norm clip.
        order: order R of the high-order attention.
        stage_fusion: four comma-separated entries of hosf, hocf, add.
        img_size: network input size.
        depth_dropout: probability of zeroing a training sample's depth.
        invert_depth: depth polarity (auto uses the per-set table).
        n_scenes: number of generated training scenes with ``--data synthetic``.
        devices: Lightning devices.
        num_nodes: Lightning nodes.
        strategy: Lightning strategy.
        precision: Lightning precision (e.g. bf16-mixed).
        resume: continue the interrupted run in --out from its last checkpoint (same options)

    Saves ``out/checkpoints/last.ckpt`` at the end of every epoch (kept after the run).
    """
    from paperzoo.core.lightning import CHECKPOINT_DIR
    from paperzoo.core.results import write_results
    from paperzoo.hodinet.data import RGBDSODDataModule, SyntheticRGBDScenes
    from paperzoo.hodinet.model import create_model
    from paperzoo.hodinet.pipeline import train_sod

    if epochs < 0 or steps < 1 or batch_size < 1 or n_scenes < 1:
        raise ValueError("--epochs must be >= 0 and --steps, --batch_size, --n_scenes >= 1")
    overrides = _overrides(order, stage_fusion, img_size)
    model = create_model(preset, rgb_weights=rgb_weights, depth_weights=depth_weights, **overrides)
    if data == "synthetic":
        dataset = SyntheticRGBDScenes(n_scenes, model.img_size, seed=seed)
    else:
        dataset = RGBDSODDataModule(data, size=model.img_size, batch_size=batch_size,
                                    invert_depth=invert_depth, seed=seed).train_set()
    run = train_sod(model, dataset, steps=steps, batch_size=batch_size, lr=lr, clip=clip,
                    depth_dropout=depth_dropout, seed=seed, device=device, epochs=epochs,
                    out_dir=out, devices=devices, num_nodes=num_nodes, strategy=strategy, precision=precision,
                    resume_dir=out / CHECKPOINT_DIR, resume=resume)
    if run.global_rank != 0:
        return {}  # under DDP, rank 0 alone saves the model and writes the results
    _save_model(model, out / "model.safetensors", preset, overrides,
                {"precision": precision or "32-true", "world_size": run.world_size, "strategy": strategy,
                 "batch_size_per_process": batch_size, "steps": run.steps})
    metrics = {"steps": run.steps, "first_loss": run.losses[0], "last_loss": run.losses[-1],
               "train_seconds": run.seconds, "train_images": len(dataset), "world_size": run.world_size,
               "global_batch_size": run.world_size * batch_size}
    write_results(out, metrics, title=f"HODINet training ({preset}, {data})")
    return metrics


def test(out: Path, ckpt: str, data: str, sets: list[str] | str | None = None, invert_depth: InvertDepth = "auto",
         batch_size: int = 8, save_maps: bool = True, device: str = "cpu") -> dict[str, Any]:
    """Score a saved model on the test sets of a data root at GT resolution; PNG maps per set.

    Args:
        ckpt: model.safetensors written by train or demo.
        data: data root holding the test sets.
        sets: test-set names, comma-separated (NJU2K,NLPR) or a list ([NJU2K,NLPR]); default:
            every standard set found.
        invert_depth: depth polarity (auto uses the per-set table: DES inverted).
        batch_size: images per forward pass.
        save_maps: write <out>/<set>/<stem>.png at each GT's size.
    """
    from paperzoo.core.results import write_results
    from paperzoo.hodinet.data import TEST_SETS, RGBDSODDataModule
    from paperzoo.hodinet.pipeline import evaluate_folder
    from paperzoo.hodinet.plots import save_curves

    if isinstance(sets, str):
        sets = [name.strip() for name in sets.split(",") if name.strip()]
        if not sets:
            raise ValueError("--sets names no test set; give e.g. --sets NJU2K,NLPR (or omit it for all)")
    model = load_model(ckpt)
    module = RGBDSODDataModule(data, test_sets=sets or TEST_SETS, size=model.img_size,
                               batch_size=batch_size, invert_depth=invert_depth)
    found = module.test_sets(missing_ok=not sets)
    metrics, rows, curves = {}, [], {}
    for name, folder in found.items():
        scores, curves[name] = evaluate_folder(model, folder, device, batch_size,
                                               out / name if save_maps else None)
        metrics.update({f"{name}_{k}": v for k, v in scores.items()})
        rows.append({"set": name, "images": len(folder), **scores})
    save_curves(out / "curves.png", curves, title="HODINet on the test sets")
    write_results(out, metrics, rows, title=f"HODINet test ({ckpt})")
    return metrics


def predict(out: Path, ckpt: str, rgb: str, depth: str | None = None, invert_depth: bool = False,
            device: str = "cpu") -> dict[str, Any]:
    """Predict the saliency map of one RGB-D pair; writes <out>/<rgb stem>.png at the RGB size.

    Args:
        ckpt: model.safetensors written by train or demo.
        rgb: the RGB image.
        depth: its depth map (required).
        invert_depth: the file stores far = bright.
    """
    from paperzoo.core.results import write_results
    from paperzoo.hodinet.pipeline import predict_map, save_map

    if not depth:
        raise ValueError("predict needs --depth (the depth map of --rgb)")
    for label, path in (("--rgb", rgb), ("--depth", depth)):
        if not Path(path).is_file():
            raise FileNotFoundError(f"{label} file not found: {path}")
    prob = predict_map(load_model(ckpt), rgb, depth, invert_depth, device)
    target = save_map(prob, out / f"{Path(rgb).stem}.png")
    metrics = {"height": int(prob.shape[-2]), "width": int(prob.shape[-1]), "mean_saliency": float(prob.mean())}
    write_results(out, metrics, title=f"prediction {target.name}")
    return metrics


def demo(out: Path, steps: int = 80, n_train: int = 300, n_test: int = 60, seed: int = 0,
         device: str = "cpu") -> dict[str, Any]:
    """HODINet-tiny end to end on generated scenes (80 steps): scores per kind, a grid, the model
    and its map of scikit-image's stereo motorcycle.

    Args:
        steps: Adam steps.
        n_train: generated training scenes.
        n_test: generated test scenes.
    """
    import torch

    from paperzoo.core.results import write_results
    from paperzoo.hodinet.data import SyntheticRGBDScenes, motorcycle_demo
    from paperzoo.hodinet.model import create_model
    from paperzoo.hodinet.pipeline import evaluate_sod, predict_probs, save_map, train_sod
    from paperzoo.hodinet.plots import save_scene_grid

    if steps < 1 or n_train < 16 or n_test < 6:
        raise ValueError("--steps must be >= 1, --n_train >= 16 and --n_test >= 6")
    train_set = SyntheticRGBDScenes(n_train, seed=seed)
    test_set = SyntheticRGBDScenes(n_test, seed=seed + 1)
    model = create_model("tiny")
    run = train_sod(model, train_set, steps=steps, batch_size=16, lr=2e-3, seed=seed, device=device)
    result = evaluate_sod(model, test_set, device, keep_probs=True)
    metrics = {k: v for k, v in result.flat("hodinet").items()}
    metrics.update(first_loss=run.losses[0], last_loss=run.losses[-1], train_seconds=run.seconds)
    show = torch.arange(6)
    save_scene_grid(out / "grid.png", test_set.rgb[show], test_set.depth[show], test_set.gt[show],
                    {"HODINet-tiny": result.probs[show]}, [test_set.kinds[i] for i in show],
                    title=f"HODINet-tiny after {steps} steps")
    _save_model(model, out / "model.safetensors", "tiny", {})
    pair = motorcycle_demo(model.img_size)
    if pair is None:
        print("stereo_motorcycle is not available in this scikit-image install; skipping it")
    else:
        save_map(predict_probs(model, pair[0][None], pair[1][None], 1, device)[0], out / "motorcycle.png")
        metrics["motorcycle_finite"] = 1
    rows = [{"kind": g, **s} for g, s in result.scores.items()]
    write_results(out, metrics, rows, title=f"HODINet-tiny demo ({steps} steps, generated scenes)")
    return metrics


def validate(out: Path, steps: int = 300, seeds: int = 2, n_train: int = 900, n_test: int = 300,
             workers: int = 1, threads: int = 0, device: str = "cpu",
             time_budget_s: float = 540.0, job_timeout_s: float = 3600.0) -> dict[str, Any]:
    """The spec's validation: HODINet-tiny vs add fusion and RGB-only on generated scenes, with
    the depth-shuffle and zero-depth checks and the metric self-test.

    Args:
        steps: Adam steps per arm (spec: 300).
        seeds: seeds of the add-fusion and HODINet arms (spec: 2).
        n_train: generated training scenes (spec: 900).
        n_test: generated test scenes, a third of each kind (spec: 300).
        workers: runs in parallel processes (1: one after the other in this process).
        job_timeout_s: the longest one (arm, seed) run may take in a worker process; a run that
            raises, runs longer or loses its worker is recorded (jobs_failed, a row naming it),
            the other runs are still scored, no mean or pass flag is set from an arm with a
            failed seed, and the command exits with status 2 after writing the metrics. Not
            applied with --workers 1 or a device other than the CPU: the runs then take place in
            this process without a time limit (a run that raises is still recorded).
        time_budget_s: spec section 5's 9 minutes: when the training projected from a short
            timing probe of each preset exceeds it, every arm runs 250 steps instead (decided
            once, before training; recorded as ``steps_reduced_for_time``). 0: always ``steps``.

    Each run uses ``--threads`` torch threads (0, the default, means one, as the spec asks).
    """
    from paperzoo.core.results import write_results
    from paperzoo.hodinet.plots import save_curves, save_loss_curves, save_scene_grid
    from paperzoo.hodinet.validation import ValidationConfig, failure_summary, run_validation

    config = ValidationConfig(n_train=n_train, n_test=n_test, steps=steps, seeds=seeds,
                              threads=max(threads, 1), workers=workers, time_budget_s=time_budget_s,
                              job_timeout_s=job_timeout_s)
    result = run_validation(config, device)
    steps = int(result.metrics["steps"])
    test_set = result.test
    show = [i for kind in ("camo", "baddepth", "both") for i in test_set.indices(kind)[:3]]
    labels = {"rgb_only_tiny": "RGB only", "add_fusion_tiny": "add fusion", "tiny": "HODINet-tiny",
              "tiny_shuffled": "HODINet, shuffled depth"}
    save_scene_grid(out / "grid.png", test_set.rgb[show], test_set.depth[show], test_set.gt[show],
                    {labels[k]: v[show] for k, v in result.probs.items()}, [test_set.kinds[i] for i in show],
                    title="generated scenes: each model's map per kind (seed 0)")
    if result.curves:  # none when every seed-0 run failed
        save_curves(out / "curves.png", result.curves, title="overall, 300 test scenes (seed 0)")
    if result.losses:
        save_loss_curves(out / "loss.png", result.losses, title="training loss (seed 0)")
    write_results(out, result.metrics, result.rows, title=f"HODINet validation ({steps} steps, {seeds} seeds)")
    failures = failure_summary(result.failures)
    if failures:
        raise ValueError(f"{failures}; the other runs' metrics written to {out / 'metrics.json'}")
    return {k: v for k, v in result.metrics.items() if "_seed" not in k}
