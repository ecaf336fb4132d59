"""Library-level runs: train a speaker network, extract embeddings, score trials (sections 3-5).

Everything a CLI verb does is one call here, on the package's models or the user's own
``nn.Module`` (anything mapping ``(B, F, T)`` features to ``(B, E)`` with an ``emb_dim``).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from paperzoo.rsknet.data import Trials, check_audio_files, read_audio
from paperzoo.rsknet.features import Fbank


@dataclass
class TrainResult:
    """A trained network and what it cost."""

    model: nn.Module
    params: int
    train_seconds: float
    epochs: int
    steps: int
    final_loss: float
    dropped_short: int = 0
    val_eer: float | None = None  # fraction, on the datamodule's trial list after the last epoch
    val_mindcf001: float | None = None
    world_size: int = 1  # processes that trained (DDP); each took batch_size crops per step


def train_speaker_model(datamodule, model: nn.Module, epochs: int = 6, budget_seconds: float | None = None,
                        lr: float = 3e-3, margin: float = 0.2, scale: float = 30.0,
                        margin_warmup: float = 0.4, optimizer: str = "adam", scheduler: str = "cosine",
                        out_dir: str | Path | None = None, device: str = "cpu", devices: int = 1,
                        num_nodes: int = 1, strategy: str = "auto", precision: str | None = None,
                        resume_dir: str | Path | None = None, resume: bool = False) -> TrainResult:
    """Train ``model`` on ``datamodule``'s crops with AAM softmax (margin warm-up), Adam + cosine.

    ``devices``, ``num_nodes``, ``strategy`` and ``precision`` go to Lightning. Under DDP each of
    the ``world_size`` ranks takes ``batch_size`` crops per step (Lightning's distributed
    sampler), so a step consumes ``world_size * batch_size`` crops and an epoch has
    ``world_size`` times fewer steps; the margin warm-up and cosine schedule follow the steps
    actually taken. The trial EER is scored on every trial (:class:`SpeakerModule` gathers the
    ranks' embeddings).

    ``budget_seconds`` stops training after that much wall time (Lightning ``max_time``): the
    number of steps then depends on the machine's speed, so the same seed no longer fixes the
    result. Deterministic algorithms otherwise (``deterministic="warn"``).

    ``resume_dir``: save ``resume_dir/last.ckpt`` (the full training state) after every epoch;
    ``resume=True`` continues the interrupted run from it: the same weights, crops, margin
    schedule, CSV log and final metrics as a run never interrupted, given the same arguments and
    process count. ``train_seconds`` then adds the time of the epochs kept to this call's.
    Without ``resume_dir`` nothing is saved.
    """
    from paperzoo.core.lightning import make_trainer, resume_from
    from paperzoo.rsknet.module import SpeakerModule

    checkpoint = resume_from(resume_dir, resume)
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if budget_seconds is not None and budget_seconds <= 0:
        raise ValueError(f"budget_seconds must be positive, got {budget_seconds}")
    missing = [name for name in ("emb_dim", "feat_dim", "min_frames") if not hasattr(model, name)]
    if missing:
        raise ValueError(f"the model ({type(model).__name__}) must expose {', '.join(missing)}: its "
                         "embedding size, input feature bins and shortest input in frames "
                         "(e.g. set self.min_frames = 1 in __init__ when any length works)")
    n_mels = getattr(datamodule, "n_mels", None)
    if n_mels is not None:  # before any feature is computed or any conv sees the wrong width
        check_feat_dim(model, int(n_mels), f"the datamodule's features have n_mels={n_mels}",
                       f"build the datamodule with n_mels={getattr(model, 'feat_dim', n_mels)}")
    datamodule.setup("fit")
    trials, val_features = getattr(datamodule, "trials", None), getattr(datamodule, "_val", None)
    for utt, feats in zip(trials.utterances if trials else [], val_features or []):
        if feats.shape[-1] < model.min_frames:  # refuse before training, not after an epoch
            raise ValueError(f"trial utterance {utt} gives {feats.shape[-1]} frames, fewer than "
                             f"the model's min_frames={model.min_frames} ({model.min_frames / 100:.2f} s)")
    system = SpeakerModule(model, datamodule.n_classes, margin=margin, scale=scale,
                           margin_warmup=margin_warmup, optimizer=optimizer, lr=lr,
                           scheduler=scheduler, max_epochs=epochs,
                           trials=getattr(datamodule, "trials", None))
    extra = {"max_time": {"seconds": float(budget_seconds)}} if budget_seconds else {}
    # deterministic algorithms; where a CUDA op has none, a warning instead of an error. The
    # Trainer sets that process-wide: the caller's setting is restored after the fit.
    previous = (torch.are_deterministic_algorithms_enabled(),
                torch.is_deterministic_algorithms_warn_only_enabled(), torch.backends.cudnn.benchmark)
    try:
        trainer = make_trainer(out_dir, max_epochs=epochs, device=device, logger=out_dir is not None,
                               devices=devices, num_nodes=num_nodes, strategy=strategy,
                               precision=precision, deterministic="warn", resume_dir=resume_dir, **extra)
        started = time.perf_counter()
        with warnings.catch_warnings():  # validation runs only when the datamodule carries trials
            warnings.filterwarnings("ignore", message=".*validation_step.*val_dataloader.*")
            warnings.filterwarnings("ignore", message="Total length of .* across ranks is zero")
            trainer.fit(system, datamodule=datamodule, ckpt_path=checkpoint, weights_only=True)
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.backends.cudnn.benchmark = previous[2]
    elapsed = system.seconds_before_resume + time.perf_counter() - started
    # a fit resumed from its final epoch trains no more: that epoch's values come from the checkpoint
    logged = {**system.restored_metrics, **trainer.callback_metrics}
    loss = logged.get("train_loss_epoch", logged.get("train_loss"))
    val = {k: float(logged[k]) if k in logged else None for k in ("val_eer", "val_mindcf001")}
    model.eval()
    return TrainResult(model, sum(p.numel() for p in model.parameters()), elapsed,
                       int(trainer.current_epoch), int(trainer.global_step),
                       float(loss) if loss is not None else float("nan"),
                       getattr(datamodule._train, "dropped", 0), **val, world_size=int(trainer.world_size))


def check_feat_dim(model: nn.Module, n_mels: int, features: str, fix: str) -> None:
    """Refuses features whose filterbank width ``n_mels`` is not the model's ``feat_dim`` (when
    the model declares one), naming both, instead of a raw convolution error mid-run."""
    feat_dim = getattr(model, "feat_dim", None)
    if feat_dim is not None and int(feat_dim) != int(n_mels):
        raise ValueError(f"the model takes feat_dim={int(feat_dim)} filterbank channels but {features}; "
                         f"{fix}")


@torch.no_grad()
def embed_features(model: nn.Module, features: Sequence[torch.Tensor], device: str = "cpu") -> np.ndarray:
    """Embeddings ``(N, E)`` of whole utterances, one at a time (no padding, so no pooled
    statistic ever covers padded frames; each embedding equals that utterance's embedded alone),
    model in eval mode."""
    from paperzoo.core.runtime import progress

    model.eval().to(device)
    out = []
    for feats in progress(features, desc="embed", total=len(features)):
        check_feat_dim(model, int(feats.shape[0]), f"an utterance has n_mels={int(feats.shape[0])}",
                       f"compute the features with n_mels={getattr(model, 'feat_dim', None)}")
        if feats.shape[-1] < model.min_frames:
            raise ValueError(f"an utterance has {feats.shape[-1]} frames, fewer than the model's "
                             f"min_frames={model.min_frames}")
        emb = model(feats.unsqueeze(0).to(device))[0].float().cpu()
        if not torch.isfinite(emb).all():
            raise ValueError("the model produced a non-finite embedding; refusing to score it")
        out.append(emb.numpy())
    return np.stack(out)


def extract_embeddings(model: nn.Module, files: Mapping[str, str | Path], n_mels: int | None = None,
                       sample_rate: int = 16000, resample: bool = False, device: str = "cpu") -> dict[str, np.ndarray]:
    """``{utt_id: embedding}`` of audio files (fbank with CMN, no dither, full utterances).

    Every file's header is checked before the first is embedded (:func:`check_audio_files`)."""
    n_mels = n_mels or model.feat_dim
    check_feat_dim(model, n_mels, f"n_mels={n_mels} was asked for",
                   "leave n_mels unset (it defaults to the model's feat_dim)")
    fbank = Fbank(n_mels=n_mels, sample_rate=sample_rate)
    ids = list(files)
    check_audio_files([files[utt] for utt in ids], sample_rate, resample)
    features = []
    for utt in ids:
        wave = read_audio(files[utt], sample_rate, resample)
        feats = fbank(wave)[0] if wave.numel() >= fbank.min_samples else torch.zeros(n_mels, 0)
        if feats.shape[-1] < model.min_frames:
            raise ValueError(f"{files[utt]} gives {feats.shape[-1]} frames, fewer than the model's "
                             f"min_frames={model.min_frames} ({model.min_frames / 100:.2f} s)")
        features.append(feats)
    return dict(zip(ids, embed_features(model, features, device)))


@dataclass
class ScoreResult:
    """Scores of a trial list and the metrics over them."""

    scores: np.ndarray
    labels: np.ndarray
    eer: float
    threshold: float
    min_dcf: dict[float, float] = field(default_factory=dict)

    @property
    def n_target(self) -> int:
        return int(self.labels.sum())

    @property
    def n_nontarget(self) -> int:
        return int(len(self.labels) - self.labels.sum())


def score_trials(trials: Trials, embeddings: Mapping[str, np.ndarray], norm: str = "none",
                 cohort: np.ndarray | None = None, top_n: int = 100,
                 p_targets: Sequence[float] = (0.01, 0.05)) -> ScoreResult:
    """Cosine-score every trial, optionally AS-norm/S-norm against ``cohort``, then EER and minDCF."""
    from paperzoo.rsknet.metrics import eer, min_dcf
    from paperzoo.rsknet.scoring import as_norm, cosine, s_norm

    if norm not in ("none", "asnorm", "snorm"):
        raise ValueError(f"norm must be 'none', 'asnorm' or 'snorm', got {norm!r}")
    for p in p_targets:
        if not 0.0 < p < 1.0:
            raise ValueError(f"p_target must be in (0, 1), got {p}")
    missing = [u for u in trials.utterances if u not in embeddings]
    if missing:
        raise ValueError(f"{len(missing)} trial utterance(s) have no embedding, e.g. {missing[0]}")
    enroll = torch.as_tensor(np.stack([embeddings[u] for u in trials.enroll]))
    test = torch.as_tensor(np.stack([embeddings[u] for u in trials.test]))
    scores = cosine(enroll, test)
    if norm != "none":
        if cohort is None:
            raise ValueError(f"norm {norm!r} needs a cohort of embeddings")
        cohort_t = torch.as_tensor(np.asarray(cohort))
        # cohort statistics once per distinct utterance (not per trial), then indexed per trial
        rows = {u: i for i, u in enumerate(dict.fromkeys([*trials.enroll, *trials.test]))}
        table = torch.as_tensor(np.stack([embeddings[u] for u in rows]))
        index = {"enroll_index": [rows[u] for u in trials.enroll],
                 "test_index": [rows[u] for u in trials.test]}
        scores = as_norm(scores, table, table, cohort_t, top_n, **index) if norm == "asnorm" else \
            s_norm(scores, table, table, cohort_t, **index)
    scores_np = scores.numpy()
    value, threshold = eer(scores_np, trials.labels)
    dcf = {p: min_dcf(scores_np, trials.labels, p_target=p)[0] for p in p_targets}
    return ScoreResult(scores_np, trials.labels, value, threshold, dcf)


def save_speaker_model(model: nn.Module, path: str | Path, name: str,
                       overrides: Mapping | None = None, meta: Mapping | None = None) -> Path:
    """Weights (safetensors) + sidecar naming the preset and overrides that rebuild the model.

    The sidecar also records where the low-rank factors came from (spec section 2):
    ``factors_from`` is ``"trained"``, ``"svd"``, ``"mixed"`` or ``"none"`` (no low-rank layer),
    and ``svd_layers`` maps each SVD-compressed layer to its rank, so that
    :func:`load_speaker_model` rebuilds those layers factorised.
    """
    from paperzoo.core.checkpoint import save_weights
    from paperzoo.rsknet.compress import lowrank_sources

    sources = lowrank_sources(model)
    kinds = sorted(set(sources.values()))
    info = {"model": name, "overrides": dict(overrides or {}), "feat_dim": int(model.feat_dim),
            "emb_dim": int(model.emb_dim), **dict(meta or {}),
            "factors_from": kinds[0] if len(kinds) == 1 else ("mixed" if kinds else "none"),
            "svd_layers": {n: int(model.get_submodule(n).rank) for n, k in sources.items() if k == "svd"}}
    return save_weights(model, path, meta=info)


def load_speaker_model(path: str | Path) -> tuple[nn.Module, dict]:
    """Rebuild a model saved by :func:`save_speaker_model` and load its weights (eval mode)."""
    from paperzoo.core.checkpoint import load_weights, read_meta
    from paperzoo.rsknet.model import create_model

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    meta = read_meta(path)
    if "model" not in meta:
        raise ValueError(f"{path} has no sidecar naming its model ({path.name}.json); "
                         "save it with save_speaker_model")
    model = create_model(meta["model"], **meta.get("overrides", {}))
    for layer, rank in meta.get("svd_layers", {}).items():
        _factorise_like_saved(model, layer, rank, path)
    load_weights(model, path)
    return model.eval(), meta


def _factorise_like_saved(model: nn.Module, layer: str, rank: int, path: Path) -> None:
    """Replace the preset's dense ``layer`` by a rank-``rank`` SVD layer (its weights load next)."""
    from paperzoo.rsknet.compress import lowrank_from_dense

    try:
        dense = model.get_submodule(layer)
        factorised = lowrank_from_dense(dense, int(rank), check_shrink=False)
    except (AttributeError, ValueError) as error:
        raise ValueError(f"{path}: its sidecar lists the SVD-compressed layer {layer!r} (rank {rank}), "
                         f"which the rebuilt model cannot hold: {error}") from error
    parent, _, child = layer.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, factorised)


def read_embeddings(path: str | Path, what: str = "embeddings file") -> dict[str, np.ndarray]:
    """``{utt_id: embedding}`` from an ``embeddings.npz`` written by ``embed`` (no pickles).

    A missing file, a file that is not an ``.npz`` archive (a bare ``.npy``, a pickle) and one
    without ``ids`` and ``embeddings`` are refused with an error naming the file (``what``
    names its role, e.g. ``"cohort embeddings"``)."""
    from paperzoo.core.data import read_npz

    path = Path(path)
    arrays = read_npz(path, required=("ids", "embeddings"), what=what)
    ids, emb = arrays["ids"], arrays["embeddings"]
    if emb.ndim != 2 or ids.ndim != 1 or len(ids) != len(emb):
        raise ValueError(f"{what} {path}: {len(ids)} ids but embeddings of shape {emb.shape}")
    if len(set(ids.tolist())) != len(ids):
        raise ValueError(f"{what} {path} holds duplicate utterance ids")
    return {str(k): v for k, v in zip(ids.tolist(), emb)}
