"""The verbs of ``paperzoo-rsknet``: synth, train, embed, score, params, demo, validate.

Each checks its options, calls the library (``synth``, ``pipeline``, ``validation``) and writes
its results under ``--out`` atomically. Heavy modules are imported inside the functions so that
``--help`` does not load torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

ARCH_NAMES = ("rsknet_mtsp", "rsknet_mtsp_l", "resnet_tstp", "xvector", "rsknet_tstp", "resnet_mtsp")


def _positive(**values: float | int | None) -> None:
    for name, value in values.items():
        if value is not None and value <= 0:
            raise ValueError(f"--{name} must be positive, got {value}")


def synth(out: Path, engine: Literal["espeak", "procedural"] = "espeak", train_speakers: int = 48,
          train_utts: int = 16, test_speakers: int = 16, test_utts: int = 8, seed: int = 0,
          overwrite: bool = False) -> dict:
    """Synthesise the offline multi-speaker corpus (espeak-ng voice variants or procedural voices).

    Args:
        engine: espeak (needs espeak-ng) or procedural (source-filter voices, no system package).
        train_speakers: speakers in train/.
        train_utts: utterances per training speaker.
        test_speakers: speakers in test/ (disjoint from the training speakers).
        test_utts: utterances per test speaker.
    """
    from paperzoo.rsknet.synth import make_corpus

    info = make_corpus(out, engine, train_speakers, train_utts, test_speakers, test_utts, seed,
                       overwrite=overwrite)
    return {"n_target": info.n_target, "n_nontarget": info.n_nontarget,
            "speakers": len(info.train_speakers) + len(info.test_speakers)}


def train(out: Path, data: str, layout: Literal["folders", "voxceleb1", "voxceleb2"] = "folders",
          model: str = "rsknet_mtsp_tiny", epochs: int = 6, budget_seconds: float | None = None,
          crop_s: float = 1.5, batch_size: int = 32, lr: float = 3e-3, margin: float = 0.2,
          scale: float = 30.0, margin_warmup: float = 0.4, resample: bool = False,
          trials: str | None = None, trials_root: str | None = None,
          exclude_trial_speakers: bool = False, seed: int = 0,
          device: str = "cpu", devices: int = 1, num_nodes: int = 1, strategy: str = "auto",
          precision: str | None = None, resume: bool = False) -> dict:
    """Train a speaker network with AAM softmax; writes model.safetensors (+ .json) and metrics.json.

    Args:
        data: dataset root (layout below).
        layout: folders (<root>/<speaker>/**.wav), voxceleb1 or voxceleb2 (converted to .wav).
        model: a preset name (paperzoo-rsknet params lists them).
        epochs: training epochs.
        budget_seconds: stop after this much wall time (the step count then depends on the
            machine's speed, so the same seed no longer fixes the result).
        crop_s: random training crop length in seconds.
        batch_size: crops per optimiser step on each process; under DDP a step takes
            devices x num_nodes x batch_size crops (and an epoch that many times fewer steps).
        trials: optional trial list whose speakers must not be trained on; its EER (%) and
            minDCF are measured after every epoch (val_eer, val_mindcf001 in metrics.json).
        trials_root: folder the trial paths are relative to (default: the trial list's folder,
            else the training audio root).
        resume: continue the interrupted run in --out from its last checkpoint (same options);
            every epoch saves <out>/checkpoints/last.ckpt.
    """
    from paperzoo.core.results import write_results
    from paperzoo.rsknet.data import VerificationDataModule
    from paperzoo.rsknet.model import create_model
    from paperzoo.rsknet.pipeline import save_speaker_model, train_speaker_model

    _positive(epochs=epochs, budget_seconds=budget_seconds, crop_s=crop_s, batch_size=batch_size, lr=lr)
    network = create_model(model)
    datamodule = VerificationDataModule(data, layout, trials=trials, trials_root=trials_root,
                                        crop_s=crop_s, batch_size=batch_size,
                                        resample=resample, n_mels=network.feat_dim, seed=seed,
                                        exclude_trial_speakers=exclude_trial_speakers)
    result = train_speaker_model(datamodule, network, epochs, budget_seconds, lr, margin, scale,
                                 margin_warmup, out_dir=out, device=device, devices=devices,
                                 num_nodes=num_nodes, strategy=strategy, precision=precision,
                                 resume_dir=out / "checkpoints", resume=resume)
    # the sidecar records how the weights were trained (they are float32 under every precision)
    save_speaker_model(network, out / "model.safetensors", model,
                       meta={"speakers": datamodule.n_classes, "data": str(data), "epochs": result.epochs,
                             "steps": result.steps, "precision": precision or "32-true",
                             "world_size": result.world_size, "batch_size_per_rank": batch_size})
    metrics = {"params": result.params, "train_seconds": result.train_seconds, "steps": result.steps,
               "epochs": result.epochs, "final_loss": result.final_loss, "speakers": datamodule.n_classes,
               "utterances_dropped_short": result.dropped_short, "world_size": result.world_size}
    if result.val_eer is not None:  # --trials: EER (%) and minDCF on the list after the last epoch
        metrics.update(val_eer=100 * result.val_eer, val_mindcf001=result.val_mindcf001)
    write_results(out, metrics, title=f"train {model}")
    return metrics


def embed(out: Path, ckpt: str, audio: list[str] | str | None = None, root: str | None = None,
          layout: Literal["folders", "voxceleb1", "voxceleb2"] = "folders", list: str | None = None,
          resample: bool = False, device: str = "cpu") -> dict:
    """Embed audio files with a trained model; writes embeddings.npz (ids, embeddings; no pickles).

    Args:
        ckpt: model.safetensors written by train.
        audio: one audio file (--audio F) or a list ([F1,F2]); ids are the paths as given.
        root: a dataset tree (ids are paths relative to its audio root, as in trial lists).
        list: a Kaldi wav.scp (<utt-id> <path> per line).
    """
    import numpy as np

    from paperzoo.core.results import atomic_path, write_results
    from paperzoo.rsknet.data import read_wav_scp, scan_utterances
    from paperzoo.rsknet.pipeline import extract_embeddings, load_speaker_model

    if sum(x is not None for x in (audio, root, list)) != 1:
        raise ValueError("give exactly one of --audio, --root or --list")
    if audio is not None:
        files = {a: Path(a) for a in ([audio] if isinstance(audio, str) else audio)}
    elif root is not None:
        files = {u.utt_id: u.path for u in scan_utterances(root, layout)}
    else:
        files = read_wav_scp(list)
    model, meta = load_speaker_model(ckpt)
    embeddings = extract_embeddings(model, files, resample=resample, device=device)
    with atomic_path(out / "embeddings.npz") as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, ids=np.array(list_ids := [*embeddings]),
                     embeddings=np.stack([embeddings[k] for k in list_ids]).astype(np.float32))
    metrics = {"utterances": len(embeddings), "emb_dim": int(model.emb_dim),
               "svd_compressed": bool(meta.get("svd_layers"))}
    write_results(out, metrics, title=f"embed {meta['model']}")
    return metrics


def score(out: Path, trials: str, emb: str, norm: Literal["none", "asnorm", "snorm"] = "none",
          cohort: str | None = None, top_n: int = 100, p_target: list[float] | None = None) -> dict:
    """Cosine-score a trial list from embeddings.npz; writes scores.txt, metrics.json and det.png.

    Args:
        trials: trial list (<1|0> <enroll> <test> or <enroll> <test> target|nontarget).
        emb: embeddings.npz written by embed.
        norm: score normalisation against --cohort (asnorm: top-N cohort scores; snorm: whole cohort).
        cohort: embeddings.npz of cohort speakers (e.g. the training set).
        top_n: cohort scores kept per side by asnorm.
        p_target: target priors of minDCF.
    """
    from paperzoo.core.results import atomic_write_text, write_results
    from paperzoo.rsknet.data import read_trials
    from paperzoo.rsknet.pipeline import read_embeddings, score_trials
    from paperzoo.rsknet.plots import save_det

    p_target = [0.01, 0.05] if p_target is None else p_target
    _positive(top_n=top_n)
    trial_list = read_trials(trials)
    embeddings = read_embeddings(emb)
    cohort_emb = None
    if cohort is not None:
        cohort_emb = read_embeddings(cohort, what="cohort embeddings")
        if not cohort_emb:
            raise ValueError(f"--cohort {cohort} holds no embeddings")
        cohort_emb = __import__("numpy").stack([*cohort_emb.values()])
        dims = {int(v.shape[0]) for v in embeddings.values()}
        if norm != "none" and dims and dims != {cohort_emb.shape[1]}:
            raise ValueError(f"--cohort {cohort} holds {cohort_emb.shape[1]}-dimensional embeddings but "
                             f"--emb {emb} {min(dims)}-dimensional ones; normalise with a cohort "
                             "embedded by the same model")
    result = score_trials(trial_list, embeddings, norm, cohort_emb, top_n, p_target)
    lines = [f"{s:.6f} {lab} {a} {b}" for s, lab, a, b in
             zip(result.scores, result.labels, trial_list.enroll, trial_list.test)]
    atomic_write_text(out / "scores.txt", "\n".join(lines) + "\n")
    metrics = {"eer": 100.0 * result.eer, "threshold": result.threshold, "n_target": result.n_target,
               "n_nontarget": result.n_nontarget}
    for p, value in result.min_dcf.items():
        metrics[f"mindcf_{p:g}".replace("0.", "0")] = value
    save_det({Path(emb).stem: (result.scores, result.labels)}, out / "det.png", p_target=p_target[0])
    write_results(out, metrics, title="score (EER in %)")
    return metrics


def params(out: Path, seconds: float = 2.0) -> dict:
    """Parameters and multiply-accumulates (on a --seconds input) of every model preset."""
    import torch

    from paperzoo.core.results import write_results
    from paperzoo.rsknet.compress import count_params, macs
    from paperzoo.rsknet.model import create_model, list_models

    _positive(seconds=seconds)
    rows, metrics = [], {}
    for name in list_models():
        model = create_model(name)
        frames = max(int(seconds * 100) - 2, model.min_frames)
        n_params, n_macs = count_params(model), macs(model, torch.zeros(1, model.feat_dim, frames))
        rows.append({"model": name, "params (M)": n_params / 1e6, "MACs (G)": n_macs / 1e9})
        metrics[f"params_{name}"], metrics[f"macs_{name}"] = n_params, n_macs
    write_results(out, metrics, rows, title=f"parameters and MACs ({seconds:g} s input)")
    return metrics


def demo(out: Path, engine: Literal["auto", "espeak", "procedural"] = "auto", epochs: int = 4,
         seed: int = 0, device: str = "cpu", overwrite: bool = False) -> dict:
    """End to end in about a minute: small corpus, tiny RSKNet-MTSP, embed, score, DET plot.

    Args:
        engine: corpus engine; auto uses espeak-ng when installed, else the procedural voices.
        epochs: training epochs.

    With --overwrite, a rerun into the same --out also rebuilds <out>/corpus.
    """
    from paperzoo.rsknet.synth import espeak_available, make_corpus
    from paperzoo.rsknet.validation import ValidationConfig

    if engine == "auto":
        engine = "espeak" if espeak_available() else "procedural"
        print(f"corpus engine: {engine}" + ("" if engine == "espeak" else " (espeak-ng not found)"))
    info = make_corpus(out / "corpus", engine, train_speakers=16, train_utts=8, test_speakers=6,
                       test_utts=6, seed=seed, overwrite=overwrite)
    config = ValidationConfig(models=("rsknet_mtsp",), epochs=epochs, batch_size=16)
    return _run_and_write(out, info, config, seed, device, "demo: tiny RSKNet-MTSP")


def validate(out: Path, corpus: str | None = None, engine: Literal["espeak", "procedural"] = "espeak",
             epochs: int = 6, budget_seconds: float | None = None, batch_size: int = 32,
             models: list[str] | None = None, seed: int = 0, device: str = "cpu",
             overwrite: bool = False) -> dict:
    """Section 5: six tiny models on the synthetic corpus; EER/minDCF table, metrics.json, DET plot.

    Args:
        corpus: a corpus folder from synth (made there, or reused when it already holds one);
            default: <out>/corpus. A folder with train/ or test/ but no corpus.json is an
            interrupted synthesis: --overwrite rebuilds it when it lies under --out (a folder
            elsewhere is never deleted).
        engine: corpus engine when the corpus is made.
        epochs: training epochs per model.
        budget_seconds: total training wall time shared by the six models.
        batch_size: training batch size.
        models: a subset of the six architectures (default: all). The models share one stream
            of random crops in this order, so a subset trains on other crops than the full run.
    """
    from paperzoo.rsknet.synth import make_corpus, read_corpus_info
    from paperzoo.rsknet.validation import ValidationConfig

    config = ValidationConfig(models=tuple(models or ARCH_NAMES), epochs=epochs,
                              budget_seconds=budget_seconds, batch_size=batch_size)
    root = Path(corpus) if corpus is not None else out / "corpus"
    if (root / "corpus.json").is_file():
        info = read_corpus_info(root)
        print(f"reusing the corpus in {root} ({info.engine}, seed {info.seed})")
    else:
        partial = [name for name in ("train", "test") if (root / name).exists()]
        inside_out = root.resolve().is_relative_to(out.resolve())
        if partial and not inside_out:  # --overwrite concerns --out only: never delete elsewhere
            raise FileExistsError(f"{root} holds {' and '.join(partial)}/ but no corpus.json: an "
                                  "interrupted synthesis; remove that folder or name another --corpus")
        if partial and not overwrite:
            raise FileExistsError(f"{root} holds {' and '.join(partial)}/ but no corpus.json: an "
                                  "interrupted synthesis; pass --overwrite to rebuild the corpus")
        if partial:
            print(f"{root} holds {' and '.join(partial)}/ but no corpus.json (an interrupted "
                  "synthesis): rebuilding the corpus")
        info = make_corpus(root, engine, seed=seed, overwrite=bool(partial))
    return _run_and_write(out, info, config, seed, device, "validate: tiny models, synthetic corpus")


def _run_and_write(out: Path, info, config, seed: int, device: str, title: str) -> dict:
    from paperzoo.core.results import write_results
    from paperzoo.rsknet.pipeline import save_speaker_model
    from paperzoo.rsknet.plots import save_det
    from paperzoo.rsknet.validation import run_validation

    result = run_validation(info.train_root, info.trials, info.test_root, config, seed, device, out)
    save_det(result.curves, out / "det.png", title="DET, synthetic test speakers")
    for arch, model in result.models.items():
        save_speaker_model(model, out / f"{arch}.safetensors", f"{arch}_{config.preset}")
    metrics = {**result.metrics, "corpus_espeak": info.engine == "espeak"}
    write_results(out, metrics, result.rows, title=title)
    from paperzoo.core.results import markdown_table

    print(markdown_table(result.rows, floatfmt=".3f"))
    return metrics
