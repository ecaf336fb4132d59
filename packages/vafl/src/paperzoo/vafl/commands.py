"""The verbs of ``paperzoo-vafl``: train, predict, privacy, convex, demo, validate. Each checks its
arguments, calls :mod:`~paperzoo.vafl.pipeline` or :mod:`~paperzoo.vafl.validation`, and writes
``metrics.json``, a Markdown table (``results.md``) and its plots under ``--out``.

Only the torch-free :mod:`~paperzoo.vafl.config` is imported at module level, so ``--help`` loads
no torch; every heavy module is imported inside the verb that needs it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from paperzoo.vafl.config import FederationConfig, as_federation_config, default_delays

FEDERATED_RUNTIMES = ("sim", "threads", "sync")


def _check_device(device: str, runtime: str) -> None:
    if device != "cpu" and runtime in FEDERATED_RUNTIMES:
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
    eval_every: int = 200,
    epochs: int = 100,
    seed: int = 0,
    device: str = "cpu",
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
        eval_every: server iterations between evaluations.
        epochs: epochs of the central/single baselines.
        device: central/single train there; the federated runtimes run on the CPU only.
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
    delays = default_delays(parties) if delays is None else delays
    DelaySpec.parse(delays, parties)
    schedule = parse_dropout(dropout)
    DropoutSchedule(schedule, parties, horizon=duration_s if runtime == "threads" else float("inf"))
    _check_device(device, runtime)
    data = load_dataset(dataset, parties, scheme, seed, root=root, align=align, id_column=id_column,
                        label_column=label_column)
    meta = {"dataset": dataset, "runtime": runtime, "in_dims": data.in_dims, "classes": data.num_classes,
            "parties": parties, "scheme": scheme, "root": root, "federation": config.__dict__,
            "csv_columns": {"id_column": id_column, "label_column": label_column, "align": align}}
    if runtime in ("central", "single"):
        results = ([train_centralised(data, config, epochs, device)] if runtime == "central"
                   else train_single_parties(data, config, epochs, device))
        best = max(results, key=lambda r: r.accuracy)
        metrics = {"accuracy": best.accuracy, "balanced_accuracy": best.balanced_accuracy}
        for m, result in enumerate(results if runtime == "single" else []):
            metrics[f"accuracy_party{m}"] = result.accuracy
        save_weights(best.model.model, out / "model.safetensors", meta=meta)
        write_results(out, metrics, title=f"{runtime} on {dataset}")
        return metrics
    from paperzoo.vafl.federation import history_metrics

    result = train_federation(data, config, runtime, delays, budget, eval_every, schedule, duration_s)
    history = result.history
    metrics = history_metrics(history)
    plot_curves({runtime: history}, out / "curves.png", title=dataset)
    plot_staleness(history.table_age, history.message_delay, out / "staleness.png")
    save_weights(result.federation.vertical_model(), out / "model.safetensors", meta=meta)
    rows = [{"client": m, "updates": history.update_counts[m], "bytes_uploaded": history.bytes_received[m],
             "raw_block_bytes": int(data.train_parts[m].numel() * 4), "epsilon": history.epsilon[m],
             "epsilon_params": history.epsilon_params[m], "epsilon_combined": history.epsilon_combined[m]}
            for m in range(parties)]
    write_results(out, metrics, rows, title=f"VAFL ({runtime}) on {dataset}: accuracy {history.final_accuracy:.4f}")
    return metrics


def predict(out: Path, checkpoint: str, split: Literal["train", "test"] = "test", root: str | None = None) -> dict:
    """Predict with a trained federation (``train``'s model.safetensors) on its data set's split.

    Args:
        checkpoint: model.safetensors written by ``train`` (its sidecar names data and sizes).
        split: which split of the checkpoint's data set to predict.
        root: folder of a user dataset (default: the one the checkpoint was trained on).
    """
    from paperzoo.core.results import write_results
    from paperzoo.vafl.pipeline import load_federation_model, predict_federation, prediction_metrics

    model, meta, data = load_federation_model(checkpoint, root=root)
    parts = data.train_parts if split == "train" else data.test_parts
    targets = data.y_train if split == "train" else data.y_test
    config = FederationConfig(**meta["federation"])
    predicted = predict_federation(model, parts, clip=config.clip, bound=config.bound)
    metrics = prediction_metrics(predicted, targets, data.num_classes)
    rows = [{"row": k, "predicted": int(p), "label": int(t)} for k, (p, t) in enumerate(zip(predicted, targets))]
    from paperzoo.core.results import atomic_write_text

    atomic_write_text(out / "predictions.csv", "row,predicted,label\n" + "".join(
        f"{r['row']},{r['predicted']},{r['label']}\n" for r in rows))
    write_results(out, metrics, title=f"Predictions of {checkpoint} on {meta['dataset']} ({split})")
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
    sample_rate: float = 0.01,
    steps: int = 1000,
    dp_noise_multiplier: float = 0.0,
    seed: int = 0,
) -> dict:
    """Sigma sweep (accuracy, epsilon per client, inversion-attack R^2) or a pure accountant query.

    Args:
        dataset: digits or breast_cancer.
        sigmas: noise standard deviations to sweep (default 0, 0.1, 0.25, 0.5, 1, 2).
        clip: embedding norm bound C (sensitivity 2C).
        delta: delta of the reported epsilon.
        budget: server updates per run.
        delays: per-client compute-time distributions.
        accountant_only: only query the accountant (sigmas x sample_rate x steps), no training.
        sample_rate: accountant query: B / N.
        steps: accountant query: number of uploads.
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
        metrics, rows = accountant_query(sigmas, clip, delta, sample_rate, steps)
        write_results(out, metrics, rows, title="RDP accountant (opacus) query")
        return metrics
    from paperzoo.vafl.data import load_dataset
    from paperzoo.vafl.plots import plot_privacy

    data = load_dataset(dataset, 4, seed=seed)
    metrics, rows, points = privacy_sweep(data, sigmas, seed, budget, clip, delta, delays, dp_noise_multiplier)
    plot_privacy(sigmas, [p.accuracy for p in points], [max(p.epsilon) for p in points],
                 [p.attack_r2 for p in points], out / "privacy.png")
    write_results(out, metrics, rows, title=f"Privacy-utility-leakage on {dataset} (clip {clip}, delta {delta})")
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
    plot_privacy([p.sigma for p in points], [p.accuracy for p in points], [max(p.epsilon) for p in points],
                 [p.attack_r2 for p in points], out / "privacy.png")
    write_results(out, result.metrics, result.rows, title="VAFL validation (V1-V5)")
    return result.metrics
