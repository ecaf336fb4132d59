"""The verbs of ``paperzoo-vafl``: train, predict, privacy, convex, demo, validate. Each checks its
arguments, calls :mod:`~paperzoo.vafl.pipeline` or :mod:`~paperzoo.vafl.validation`, and writes
``metrics.json``, a Markdown table (``results.md``) and its plots under ``--out``.

Only the torch-free :mod:`~paperzoo.vafl.config` is imported at module level, so ``--help`` loads
no torch; every heavy module is imported inside the verb that needs it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from paperzoo.core.runtime import requested_device  # torch-free
from paperzoo.vafl.config import FederationConfig, as_federation_config, default_delays

FEDERATED_RUNTIMES = ("sim", "threads", "sync")


def _check_device(device: str, runtime: str, devices: int | str = 1, num_nodes: int = 1,
                  strategy: str = "auto", precision: str | None = None) -> None:
    """Refuse Lightning options a federated runtime would ignore (they would be recorded in
    config.yaml without deciding anything): the runtimes run in float32 in one process."""
    if runtime in FEDERATED_RUNTIMES and devices not in (1, "1"):
        raise ValueError(f"--runtime {runtime} runs in one process (one thread per client); --devices "
                         f"{devices} applies to --runtime central and single only")
    if runtime in FEDERATED_RUNTIMES and (num_nodes != 1 or strategy != "auto"):
        raise ValueError(f"--runtime {runtime} runs in one process (one thread per client); --num_nodes "
                         f"and --strategy apply to --runtime central and single only")
    if runtime in FEDERATED_RUNTIMES and precision not in (None, "32-true", "32"):
        raise ValueError(f"--runtime {runtime} trains in float32 outside Lightning; --precision {precision} "
                         f"applies to --runtime central and single only")
    # an explicit cuda is refused; --device auto (the default) resolves to cuda on a GPU machine,
    # and means the CPU for these runtimes
    if device != "cpu" and runtime in FEDERATED_RUNTIMES and (requested_device() or device) != "auto":
        raise ValueError(f"--runtime {runtime} runs on the CPU only (one thread per client, tiny models); "
                         f"got --device {device}: pass --device cpu (central and single train on any device)")


def train(
    out: Path,
    federation: FederationConfig | None = None,
    dataset: str = "digits",
    parties: int = 4,
    runtime: Literal["sim", "threads", "sync", "central", "single"] = "sim",
    delays: str | None = None,
    budget: int = 4000,
    scheme: str | None = None,
    root: str | None = None,
    align: Literal["strict", "intersect"] = "strict",
    id_column: str = "id",
    label_column: str = "label",
    dropout: str | None = None,
    duration_s: float = 10.0,
    client_timeout_s: float = 5.0,
    on_client_lost: Literal["continue", "stop"] = "continue",
    eval_every: int = 200,
    epochs: int = 100,
    seed: int = 0,
    device: str = "cpu",
    devices: int | str = 1,
    num_nodes: int = 1,
    strategy: str = "auto",
    precision: str | None = None,
    resume: bool = False,
) -> dict:
    """Train one vertical model with a chosen runtime (VAFL sim/threads, sync VFL, or a baseline).

    Args:
        federation: model sizes, step sizes, noise and DP-SGD (``--federation.sigma 0.5``,
            ``--federation.preset tiny``); its seed is the run's ``--seed``.
        dataset: digits, breast_cancer, csv (root: party*.csv + labels.csv), mnist or cifar10 (root).
        parties: number of clients M.
        runtime: sim (discrete-event VAFL), threads (real threads), sync, central or single.
        delays: per-client compute-time distributions, e.g. exp:1,2,4,8 (ms for threads);
            default exponential with means 1, 2, 4, ... (one per party).
        budget: server updates (sim, threads), or budget / M rounds (sync).
        scheme: partition: contiguous, permutation or quadrants (default by data).
        root: folder of a user dataset.
        align: csv only: strict refuses differing ID sets, intersect keeps common IDs.
        id_column: csv only: the ID column of every party file and of labels.csv.
        label_column: csv only: the label column of labels.csv.
        dropout: offline windows, 'client:start-end;...' in virtual time (sim) or seconds (threads).
        duration_s: wall-clock length of a threaded run.
        client_timeout_s: threads: a client that misses this deadline (or raises) is marked lost.
        on_client_lost: threads: continue with the others (its rows stay stale) or stop the run;
            either way everything measured is written.
        eval_every: server iterations between evaluations.
        epochs: epochs of the central/single baselines.
        device: central/single train there; the federated runtimes run on the CPU only.
        devices: central/single: Lightning devices per node.
        num_nodes: central/single: Lightning nodes.
        strategy: central/single: Lightning strategy (ddp, ...).
        precision: central/single: Lightning precision.
        resume: continue the interrupted run in --out from its last checkpoint (same options);
            central and single only (the federated runtimes save no checkpoint).
    """
    from dataclasses import replace

    from paperzoo.core.checkpoint import save_weights
    from paperzoo.core.results import write_results
    from paperzoo.vafl.data import load_dataset
    from paperzoo.vafl.delays import DelaySpec, DropoutSchedule, check_budget, parse_dropout
    from paperzoo.vafl.pipeline import train_centralised, train_federation, train_single_parties
    from paperzoo.vafl.plots import plot_curves, plot_staleness

    config = replace(as_federation_config(federation), seed=seed)
    config.validate()
    check_budget(budget)
    delays = default_delays(parties) if delays is None else delays  # also checks the party count
    DelaySpec.parse(delays, parties)
    schedule = parse_dropout(dropout)
    DropoutSchedule(schedule, parties, horizon=duration_s if runtime == "threads" else float("inf"))
    _check_device(device, runtime, devices, num_nodes, strategy, precision)
    if resume and runtime in FEDERATED_RUNTIMES:
        raise ValueError(f"--resume continues --runtime central and single only (Lightning trainings with a "
                         f"per-epoch checkpoint); --runtime {runtime} runs outside Lightning and saves no "
                         "checkpoint: run it again with --overwrite")
    data = load_dataset(dataset, parties, scheme, seed, root=root, align=align, id_column=id_column,
                        label_column=label_column)
    if len(set(data.y_train.tolist())) < 2:
        raise ValueError(f"dataset {dataset!r}{f' ({root})' if root else ''}: the training labels hold a "
                         "single class; a classifier needs at least two")
    # the central/single references train without the embedding bound; predict must not add it
    meta = {"dataset": dataset, "runtime": runtime, "in_dims": data.in_dims, "classes": data.num_classes,
            "parties": parties, "scheme": scheme, "root": root, "federation": config.__dict__,
            "embedding_bound": "none" if runtime in ("central", "single") else config.bound,
            "csv_columns": {"id_column": id_column, "label_column": label_column, "align": align}}
    if data.class_names is not None:  # the label value of each class index (predict writes them)
        meta["class_names"] = list(data.class_names)
    if runtime in ("central", "single"):
        from paperzoo.core.lightning import CHECKPOINT_DIR

        # central: OUT/checkpoints/last.ckpt; single: OUT/checkpoints/party<m>/last.ckpt
        scale = {"devices": devices, "num_nodes": num_nodes, "strategy": strategy, "precision": precision,
                 "resume_dir": out / CHECKPOINT_DIR, "resume": resume}
        results = ([train_centralised(data, config, epochs, device, **scale)] if runtime == "central"
                   else train_single_parties(data, config, epochs, device, **scale))
        best = max(results, key=lambda r: r.accuracy)
        metrics = {"accuracy": best.accuracy, "balanced_accuracy": best.balanced_accuracy}
        for m, result in enumerate(results if runtime == "single" else []):
            metrics[f"accuracy_party{m}"] = result.accuracy
        trainer = best.model.trainer  # how the weights were trained, beside what they are
        meta.update(precision=str(trainer.precision), world_size=trainer.world_size)
        save_weights(best.model.model, out / "model.safetensors", meta=meta)
        write_results(out, metrics, title=f"{runtime} on {dataset}")
        return metrics
    from paperzoo.vafl.federation import history_metrics

    threaded = {"client_timeout_s": client_timeout_s, "on_client_lost": on_client_lost} if runtime == "threads" else {}
    result = train_federation(data, config, runtime, delays, budget, eval_every, schedule, duration_s, **threaded)
    history = result.history
    metrics = history_metrics(history)
    plot_curves({runtime: history}, out / "curves.png", title=dataset)
    plot_staleness(history.table_age, history.message_delay, out / "staleness.png")
    save_weights(result.federation.vertical_model(), out / "model.safetensors", meta=meta)
    lost = {record["client"]: record for record in history.clients_lost}
    rows = [{"client": m, "updates": history.update_counts[m], "bytes_uploaded": history.bytes_received[m],
             "raw_block_bytes": int(data.train_parts[m].numel() * 4), "releases_max": history.releases_max[m],
             "epsilon_record": _shown(history.epsilon_record[m]),
             "epsilon_record_mean": _shown(history.epsilon_record_mean[m]),
             "epsilon_amplified": _shown(history.epsilon[m]),
             "lost": f"iteration {lost[m]['iteration']}: {lost[m]['reason']}" if m in lost else ""}
            for m in range(parties)]
    if config.dp_noise_multiplier > 0:
        for m, row in enumerate(rows):
            row.update(epsilon_params=history.epsilon_params[m],
                       epsilon_record_combined=_shown(history.epsilon_record_combined[m]))
    privacy = ("sigma 0: no privacy (epsilon none)" if config.sigma == 0 else
               f"per-record epsilon (worst record, against this server) {max(history.epsilon_record):.4g}; "
               "epsilon_amplified holds only if the server could not see which records were sampled")
    title = f"VAFL ({runtime}) on {dataset}: accuracy {history.final_accuracy:.4f}; {privacy}"
    if history.clients_lost:
        title += f"; clients lost: {sorted(lost)} (run stopped by: {history.stopped_by})"
    write_results(out, metrics, rows, title=title)
    if config.sigma == 0:
        print("sigma 0: the uploads are not perturbed, so there is no privacy guarantee (epsilon null)")
    for record in history.clients_lost:
        print(f"client {record['client']} lost at server iteration {record['iteration']}: {record['reason']}")
    return metrics


def _shown(epsilon: float) -> float | str:
    """epsilon for a table: without noise there is no privacy, shown as 'none'."""
    return epsilon if epsilon != float("inf") else "none (no noise)"


def predict(out: Path, checkpoint: str, split: Literal["train", "test"] = "test", root: str | None = None) -> dict:
    """Predict with a trained federation (``train``'s model.safetensors) on its data set's split.

    Writes ``predictions.csv``: ``row`` (the record's position in the split), ``predicted`` and
    ``label`` (class indices), then ``id`` (the record's ID, when the data has an ID column),
    ``predicted_name`` and ``label_name`` (the original label values, e.g. yes/no, for CSV data;
    the class index otherwise).

    Args:
        checkpoint: model.safetensors written by ``train`` (its sidecar names data and sizes);
            a ``--runtime central`` model predicts without the embedding bound, as it was
            trained; ``--runtime single`` models (one party's block) are refused.
        split: which split of the checkpoint's data set to predict.
        root: folder of a user dataset (default: the one the checkpoint was trained on).
    """
    from paperzoo.core.results import write_results
    from paperzoo.vafl.pipeline import (
        checkpoint_bound,
        load_federation_model,
        predict_federation,
        prediction_metrics,
    )

    model, meta, data = load_federation_model(checkpoint, root=root)
    parts = data.train_parts if split == "train" else data.test_parts
    targets = data.y_train if split == "train" else data.y_test
    config = FederationConfig(**meta["federation"])
    predicted = predict_federation(model, parts, clip=config.clip, bound=checkpoint_bound(meta))
    metrics = prediction_metrics(predicted, targets, data.num_classes)
    import csv
    import io

    from paperzoo.core.results import atomic_write_text

    names = meta.get("class_names") or data.class_names
    ids = data.train_ids if split == "train" else data.test_ids

    def name(index: int) -> str:
        return str(names[index]) if names is not None and index < len(names) else str(index)

    title = f"Predictions of {checkpoint} on {meta['dataset']} ({split})"
    if metrics["label_classes"] == 1:
        single = (f"the {split} labels hold a single class ({name(int(targets[0]))!r}): accuracy and "
                  "balanced_accuracy are that class's recall only, not the model's accuracy over its classes")
        print(f"predict: {meta['dataset']}{f' ({root})' if root else ''}: {single}")
        title += f"; {single}"

    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["row", "predicted", "label", *(["id"] if ids is not None else []), "predicted_name", "label_name"])
    for k, (p, t) in enumerate(zip(predicted.tolist(), targets.tolist())):
        writer.writerow([k, p, t, *([ids[k]] if ids is not None else []), name(p), name(t)])
    atomic_write_text(out / "predictions.csv", text.getvalue())
    write_results(out, metrics, title=title)
    return metrics


def privacy(
    out: Path,
    dataset: str = "digits",
    sigmas: list[float] | None = None,
    clip: float = 1.0,
    delta: float = 1e-5,
    budget: int = 4000,
    delays: str = "exp:1,2,4,8",
    accountant_only: bool = False,
    num_samples: int = 455,
    batch_size: int = 16,
    steps: int = 2000,
    dp_noise_multiplier: float = 0.0,
    seed: int = 0,
) -> dict:
    """Sigma sweep (accuracy, per-record epsilon per client, inversion-attack R^2) or an accountant query.

    The guarantee reported is per record against this server, which sees every upload's indices:
    record i released k_i times composes k_i Gaussian releases (no subsampling amplification).
    ``epsilon_sigma<s>`` is the amplified figure, valid only if the server could not see which
    records were sampled. sigma 0 gives no privacy: epsilon is null ("none").

    Args:
        dataset: digits or breast_cancer.
        sigmas: noise standard deviations to sweep (default 0, 0.1, 0.25, 0.5, 1, 2).
        clip: embedding norm bound C (sensitivity 2C).
        delta: delta of the reported epsilon.
        budget: server updates per run.
        delays: per-client compute-time distributions.
        accountant_only: only query the accountant (one client: num_samples, batch_size, steps), no training.
        num_samples: accountant query: the client's training records N.
        batch_size: accountant query: records per upload B.
        steps: accountant query: number of uploads (after the initial pass).
        dp_noise_multiplier: clients also train with DP-SGD at this noise multiplier (0: off);
            adds the parameters' and the combined epsilon.
    """
    from paperzoo.core.results import write_results
    from paperzoo.vafl.config import check_dp_sgd_parameters, check_privacy_parameters
    from paperzoo.vafl.validation import DEFAULT_SIGMAS, accountant_query, privacy_sweep

    sigmas = [float(s) for s in (DEFAULT_SIGMAS if sigmas is None else sigmas)]
    if not sigmas:
        raise ValueError("sigmas is empty")
    for sigma in sigmas:
        check_privacy_parameters(sigma, clip, delta)
    check_dp_sgd_parameters(dp_noise_multiplier, 1.0)
    if accountant_only:
        metrics, rows = accountant_query(sigmas, clip, delta, num_samples, batch_size, steps, seed)
        write_results(out, metrics, rows, title=f"Per-record epsilon (opacus) of one client: N {num_samples}, "
                      f"B {batch_size}, {steps} uploads, C {clip}, delta {delta:g}; epsilon_amplified holds only "
                      "if the server could not see which records were sampled")
        return metrics
    from paperzoo.vafl.data import load_dataset
    from paperzoo.vafl.plots import plot_privacy

    data = load_dataset(dataset, 4, seed=seed)
    metrics, rows, points = privacy_sweep(data, sigmas, seed, budget, clip, delta, delays, dp_noise_multiplier)
    plot_privacy(sigmas, [p.accuracy for p in points], [p.worst_record for p in points],
                 [p.attack_r2 for p in points], out / "privacy.png", amplified=[max(p.epsilon) for p in points])
    write_results(out, metrics, rows, title=f"Privacy-utility-leakage on {dataset} (clip {clip}, delta {delta}); "
                  "epsilon_record: worst record against this server; epsilon_amplified: only if the server "
                  "could not see which records were sampled; none: sigma 0, no privacy")
    return metrics


def convex(
    out: Path,
    delays: str = "exp:1,2,4,8",
    budget: int = 20_000,
    lam: float = 1e-2,
    lr: float = 1.0,
    step_offset: float = 200.0,
    batch_size: int = 16,
    bounded: list[int] | None = None,
    seed: int = 0,
) -> dict:
    """The convex case: logistic regression on breast cancer with delays and c/k steps against F*.

    Args:
        delays: compute-time distributions of the main run.
        budget: server updates K.
        lam: L2 regularisation lambda.
        lr: c of the step c * k0 / (k + k0).
        step_offset: k0 of the decaying step.
        batch_size: mini-batch size.
        bounded: bounds D of the extra bounded-delay runs (uniform compute times on [1, D]; default 8, 32).
    """
    from paperzoo.core.results import write_results
    from paperzoo.vafl.convex import convex_experiment
    from paperzoo.vafl.plots import plot_convex

    metrics, rows, runs = convex_experiment(delays, budget, lam, lr, step_offset, batch_size,
                                            (8, 32) if bounded is None else bounded, seed)
    plot_convex(runs, out / "convex_gap.png")
    write_results(out, metrics, rows, title=f"Convex case: F* = {metrics['f_star']:.8f}")
    return metrics


def demo(out: Path, budget: int = 1500, seed: int = 0) -> dict:
    """VAFL on digits in seconds: 4 clients with exponential speeds 1:2:4:8, a plot and metrics.

    Args:
        budget: server updates.
    """
    return train(out, dataset="digits", runtime="sim", budget=budget, eval_every=100, seed=seed)


def validate(out: Path, seeds: int = 3, budget: int = 12_000, reference_budget: int | None = None,
             convex_budget: int = 20_000, privacy_budget: int = 4000, threaded_duration_s: float = 8.0,
             central_epochs: int = 100, single_epochs: int = 60, dp_noise_multiplier: float = 1.0,
             seed: int = 0) -> dict:
    """The spec's validation (V1 convex, V2 accuracy, V3 asynchrony and threads, V4 privacy, V5 DP-SGD).

    Args:
        seeds: seeds of V2 (mean over seeds).
        budget: server updates of each V2 VAFL run. The default lets VAFL converge (its test
            loss is flat from about 8,000 updates on digits), as the centralised reference is
            trained to convergence (spec pitfall 8).
        reference_budget: the accuracy the same runs had after this many updates is reported
            beside (``vafl_acc_*_at_<reference_budget>``); default the spec's calibration budget
            of 4,000 updates, or ``budget`` when smaller.
        convex_budget: server updates of V1.
        privacy_budget: server updates per sigma of V4.
        threaded_duration_s: wall-clock seconds of the threaded run.
        central_epochs: epochs of the centralised reference.
        single_epochs: epochs of each single-party baseline.
        dp_noise_multiplier: V5, client-side DP-SGD noise multiplier (0 skips V5).
    """
    from paperzoo.core.results import write_results
    from paperzoo.vafl.plots import plot_convex, plot_curves, plot_privacy, plot_staleness
    from paperzoo.vafl.validation import run_validation

    result = run_validation(seeds, budget, reference_budget, convex_budget, privacy_budget, threaded_duration_s,
                            central_epochs, single_epochs, dp_noise_multiplier, seed)
    for dataset, runs in result.accuracy.items():
        first = runs[0]
        plot_curves({"VAFL (sim)": first.vafl, "sync VFL": first.sync}, out / f"curves_{dataset}.png",
                    central_accuracy=first.central_accuracy, title=dataset)
    digits = result.accuracy["digits"][0].vafl
    plot_staleness(digits.table_age, digits.message_delay, out / "staleness_digits.png")
    plot_convex(result.convex_runs, out / "convex_gap.png")
    points = result.privacy_points
    plot_privacy([p.sigma for p in points], [p.accuracy for p in points], [p.worst_record for p in points],
                 [p.attack_r2 for p in points], out / "privacy.png", amplified=[max(p.epsilon) for p in points])
    write_results(out, result.metrics, result.rows, title="VAFL validation (V1-V5)")
    return result.metrics
