"""Library-level runs of VAFL, what a Python user calls on their own vertical data
(:func:`~paperzoo.vafl.data.make_vertical_data` or :func:`~paperzoo.vafl.data.load_dataset`):

- :func:`train_federation`: one federation trained by a runtime (the discrete-event simulation,
  real threads, or synchronous VFL), returning the run's history and the trained federation;
- :func:`train_centralised` and :func:`train_single_parties`: the references beside VAFL (spec
  section 3 and V2), the same vertical model trained with Lightning on all blocks or on one;
- :func:`predict_federation`: class predictions of a trained federation on new blocks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, TensorDataset

from paperzoo.core.data import RankShareOfBatches
from paperzoo.core.lightning import make_trainer, resume_from
from paperzoo.vafl.config import FederationConfig, default_delays
from paperzoo.vafl.data import VerticalData
from paperzoo.vafl.delays import DelaySpec, DropoutSchedule, check_budget
from paperzoo.vafl.federation import Federation, RunHistory, balanced_accuracy, build_federation
from paperzoo.vafl.model import VerticalModel
from paperzoo.vafl.module import VerticalClassifier
from paperzoo.vafl.simulation import SimRuntime, SyncRuntime
from paperzoo.vafl.threaded import ThreadedRuntime

FEDERATED_RUNTIMES = ("sim", "threads", "sync")


@dataclass
class FederationResult:
    """A trained federation and what its runtime measured."""

    history: RunHistory
    federation: Federation


def train_federation(data: VerticalData, config: FederationConfig | None = None, runtime: str = "sim",
                     delays: str | None = None, budget: int = 4000, eval_every: int = 200,
                     dropout: Mapping[int, Sequence[Sequence[float]]] | None = None,
                     duration_s: float = 10.0, **threaded_options) -> FederationResult:
    """Train VAFL (``sim`` or ``threads``) or synchronous VFL (``sync``) on ``data``.

    ``data`` is checked before anything is built: a non-finite feature (NaN, infinity) or a label
    that is not a class index ``0..num_classes-1`` raises ``ValueError`` naming where it is.
    ``delays`` defaults to exponential compute times with means 1, 2, 4, ... (one per party; ms
    for threads). ``budget`` counts server updates (``sim``, ``threads``) or ``budget / M``
    rounds (``sync``, equal total uploads). ``dropout`` is ``client -> [(start, end), ...]`` in
    virtual time (``sim``) or seconds (``threads``). ``threaded_options`` go to
    :class:`~paperzoo.vafl.threaded.ThreadedRuntime` (e.g. ``client_timeout_s``, ``on_client_lost``).
    """
    if runtime not in FEDERATED_RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; choose from {', '.join(FEDERATED_RUNTIMES)}")
    config = config or FederationConfig()
    config.validate()
    check_budget(budget)
    delays = default_delays(data.num_parties) if delays is None else delays
    DelaySpec.parse(delays, data.num_parties)
    DropoutSchedule(dropout, data.num_parties, horizon=duration_s if runtime == "threads" else float("inf"))
    federation = build_federation(data, config)
    seed = config.seed
    if runtime == "sim":
        history = SimRuntime(delays, budget, seed, dropout, eval_every).run(federation)
    elif runtime == "sync":
        parties = data.num_parties
        history = SyncRuntime(delays, max(1, budget // parties), seed, max(1, eval_every // parties)).run(federation)
    else:
        options = {"eval_every_s": duration_s / 10, **threaded_options}
        history = ThreadedRuntime(delays, duration_s, dropout, seed, budget=budget, **options).run(federation)
    return FederationResult(history, federation)


def predict_federation(model: VerticalModel, parts: Sequence[torch.Tensor], clip: float = 1.0,
                       bound: str = "clip", sigma: float = 0.0, seed: int = 0) -> torch.Tensor:
    """Class predictions of a trained vertical model for blocks ``parts`` (one per party, rows
    aligned), through the same bound as training; ``sigma > 0`` perturbs the released
    embeddings as an upload would be (section 2.2), with noise from a generator seeded with
    ``seed`` (the same seed, the same perturbation)."""
    if len(parts) != len(model.locals):
        raise ValueError(f"the model has {len(model.locals)} parties, got {len(parts)} blocks")
    from paperzoo.vafl.data import check_finite
    from paperzoo.vafl.privacy import EmbeddingBound, GaussianPerturbation

    for m, part in enumerate(parts):
        if part.dim() != 2 or part.shape[0] != parts[0].shape[0]:
            raise ValueError(f"predict_federation: party {m}'s block has shape {tuple(part.shape)}; every block "
                             f"must be (records, features) with the same {parts[0].shape[0]} rows")
        check_finite(part, f"predict_federation: party {m}'s block")

    bounding, noise = EmbeddingBound(clip, bound), GaussianPerturbation(sigma, torch.Generator().manual_seed(seed))
    model.eval()
    with torch.no_grad():
        embeddings = [noise(bounding(net(x))) for net, x in zip(model.locals, parts)]
        output = model.head(torch.cat(embeddings, dim=-1))
    if output.dim() == 1:  # the logistic case: one logit per sample
        return (output > 0).long()
    return output.argmax(dim=-1)


def prediction_metrics(predicted: torch.Tensor, targets: torch.Tensor, classes: int) -> dict[str, float]:
    """Accuracy, balanced accuracy (the mean recall over the classes present in ``targets``, as
    scikit-learn's ``balanced_accuracy_score``: a class only predicted does not count as a zero),
    the sample count and ``label_classes``, the number of classes present in ``targets``."""
    from torchmetrics.functional.classification import multiclass_accuracy

    classes = max(classes, int(predicted.max()) + 1, int(targets.max()) + 1)
    return {"accuracy": float(multiclass_accuracy(predicted, targets, classes, average="micro")),
            "balanced_accuracy": balanced_accuracy(predicted, targets),
            "samples": int(targets.numel()), "label_classes": int(torch.unique(targets).numel())}


def load_federation_model(checkpoint: str | Path, seed: int | None = None, root: str | None = None
                          ) -> tuple[VerticalModel, dict, VerticalData]:
    """The vertical model a ``train`` run saved, its metadata, and its data set rebuilt the same way
    (same parties, partition and seed, so the blocks match the trained local models)."""
    from paperzoo.core.checkpoint import load_weights, read_meta
    from paperzoo.vafl.data import load_dataset
    from paperzoo.vafl.model import create_model

    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    meta = read_meta(path)
    needed = ("dataset", "in_dims", "classes", "parties", "federation")
    missing = [k for k in needed if k not in meta]
    if missing:
        raise ValueError(f"{path} was not written by paperzoo-vafl train (its metadata lacks {missing})")
    if meta.get("runtime") == "single":
        raise ValueError(f"{path} is a --runtime single baseline (one party's block with its own head), "
                         "not a vertical model of every party; predict takes federated or central checkpoints")
    config = FederationConfig(**meta["federation"])
    seed = config.seed if seed is None else seed
    data = load_dataset(meta["dataset"], meta["parties"], meta.get("scheme"), seed, root=root or meta.get("root"),
                        **meta.get("csv_columns", {}))
    if data.in_dims != list(meta["in_dims"]):
        raise ValueError(f"{path} was trained on blocks of {meta['in_dims']} features, "
                         f"the data set gives {data.in_dims}")
    data = _align_classes(data, meta.get("class_names"), path)
    model = create_model(config.preset, in_dims=data.in_dims, classes=meta["classes"], **config.model_sizes())
    load_weights(model, path)
    return model, meta, data


def _align_classes(data: VerticalData, trained: Sequence[str] | None, path: Path) -> VerticalData:
    """Re-index ``data``'s labels to the classes the model was trained on (``trained``, the CSV
    label values in class-index order): a root read for prediction may hold fewer label values,
    which its own re-indexing would number differently. Labels the model never saw are refused."""
    if trained is None or data.class_names is None or list(data.class_names) == list(trained):
        return data
    trained = [str(name) for name in trained]
    unknown = sorted(set(data.class_names) - set(trained))
    if unknown:
        raise ValueError(f"the data holds labels {unknown[:5]} that {path} was not trained on "
                         f"(its classes: {trained[:10]})")
    mapping = torch.tensor([trained.index(name) for name in data.class_names], dtype=torch.int64)
    from dataclasses import replace

    return replace(data, y_train=mapping[data.y_train], y_test=mapping[data.y_test],
                   num_classes=max(data.num_classes, len(trained)), class_names=trained)


def checkpoint_bound(meta: Mapping) -> str:
    """The embedding bound a saved model was trained through (``load_federation_model``'s
    ``meta``): ``none`` for the central reference, the federation's bound otherwise."""
    if "embedding_bound" in meta:
        return str(meta["embedding_bound"])
    return "none" if meta.get("runtime") in ("central", "single") else FederationConfig(**meta["federation"]).bound


@dataclass
class BaselineResult:
    accuracy: float
    balanced_accuracy: float
    model: VerticalClassifier


def _scores(model: VerticalClassifier, x: torch.Tensor, y: torch.Tensor, classes: int) -> tuple[float, float]:
    from torchmetrics.functional.classification import multiclass_accuracy

    model.eval()
    with torch.no_grad():
        logits = model(x)
    return (float(multiclass_accuracy(logits, y, classes, average="micro")),
            balanced_accuracy(logits.argmax(dim=-1), y))


def train_reference(train_x: torch.Tensor, y_train: torch.Tensor, test_x: torch.Tensor, y_test: torch.Tensor,
                    in_dims: list[int], classes: int, config: FederationConfig, epochs: int = 150,
                    batch_size: int = 128, lr: float = 1e-2, out_dir: Path | None = None,
                    device: str = "cpu", resume_dir: str | Path | None = None, resume: bool = False,
                    **scale) -> BaselineResult:
    """Train :class:`VerticalClassifier` with Adam for ``epochs`` full passes (to convergence on the
    built-in data sets) and score it on the test split. ``scale`` (``devices``, ``num_nodes``,
    ``strategy``, ``precision``) goes to Lightning through the core's ``make_trainer``.

    Under DDP ``batch_size`` is the global batch: each rank takes its share of every batch
    (the core's :class:`~paperzoo.core.data.RankShareOfBatches`), so the run takes the one-process steps. The test split is
    scored after training, in this process, on the whole split in float32 (whatever
    ``precision`` the training ran in), so every rank reports the same, whole-split accuracy.

    ``resume_dir``: save ``resume_dir/last.ckpt`` (the core's ``ResumeCheckpoint``: weights,
    optimiser, loop and the sampler's generator) after every epoch; with ``resume`` the fit
    continues from it when it exists (one that had not started runs from the beginning), giving
    the weights of an uninterrupted run bit for bit."""
    checkpoint = resume_from(resume_dir, resume, required=False)
    torch.manual_seed(config.seed)
    model = VerticalClassifier(in_dims, classes, preset=config.preset, embed_dim=config.embed_dim,
                               hidden=config.hidden, head_hidden=config.head_hidden, kind=config.kind,
                               lr=lr, max_epochs=epochs)
    dataset = TensorDataset(train_x, y_train)
    # the sampler DataLoader(shuffle=True, generator=...) builds, shared out between ranks; the
    # loader also draws its base seed from the generator at every epoch, as that one does
    generator = torch.Generator().manual_seed(config.seed)
    batches = BatchSampler(RandomSampler(dataset, generator=generator), batch_size=batch_size, drop_last=False)
    loader = DataLoader(dataset, batch_sampler=RankShareOfBatches(batches), generator=generator)
    trainer = make_trainer(out_dir, max_epochs=epochs, device=device, logger=False, progress_bar=False,
                           use_distributed_sampler=False, resume_dir=resume_dir, **scale)
    trainer.fit(model, train_dataloaders=loader, ckpt_path=checkpoint,
                weights_only=True)
    model = model.cpu().float()
    accuracy, balanced = _scores(model, test_x, y_test, classes)
    return BaselineResult(accuracy, balanced, model)


def train_centralised(data: VerticalData, config: FederationConfig, epochs: int = 150,
                      device: str = "cpu", resume_dir: str | Path | None = None, resume: bool = False,
                      **scale) -> BaselineResult:
    """All parties' features in one place: the upper reference of vertical training.
    ``resume_dir`` / ``resume``: the per-epoch checkpoint and its continuation
    (:func:`train_reference`)."""
    data.check()  # non-finite features or labels outside 0..K-1, named, as for the federation
    return train_reference(data.merged("train"), data.y_train, data.merged("test"), data.y_test,
                           data.in_dims, data.num_classes, config, epochs, device=device,
                           resume_dir=resume_dir, resume=resume, **scale)


def train_single_parties(data: VerticalData, config: FederationConfig, epochs: int = 150,
                         device: str = "cpu", resume_dir: str | Path | None = None, resume: bool = False,
                         **scale) -> list[BaselineResult]:
    """One model per party on its own block with its own head (labels assumed co-located).
    ``resume_dir``: party m's training keeps its per-epoch checkpoint in ``resume_dir/party<m>``;
    ``resume`` continues each from there (:func:`train_reference`)."""
    data.check()
    # checks the pair before any party trains; each party finds its own checkpoint
    resume_from(resume_dir, resume, required=False, what="the interrupted run's checkpoints")
    return [train_reference(data.train_parts[m], data.y_train, data.test_parts[m], data.y_test,
                            [data.in_dims[m]], data.num_classes, config, epochs, device=device,
                            resume_dir=None if resume_dir is None else Path(resume_dir) / f"party{m}",
                            resume=resume, **scale)
            for m in range(data.num_parties)]
