"""The verbs of ``paperzoo-vafl``: train, privacy, convex, demo, validate. Each writes
``metrics.json``, a Markdown table (``results.md``) and its plots under ``--out``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from paperzoo.core.results import write_results

RUNTIMES = ("sim", "threads", "sync", "central", "single")
DEFAULT_SIGMAS = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0)
DP_SGD_SIGMAS = (1.0, 2.0)  # V5: embedding noise levels run with client-side DP-SGD


def parse_dropout(spec: str | None) -> dict[int, list[tuple[float, float]]] | None:
    """``"3:100-200;1:0-50"`` -> ``{3: [(100, 200)], 1: [(0, 50)]}``; ``inf`` allowed as an end."""
    if spec is None or not spec.strip():
        return None
    schedule: dict[int, list[tuple[float, float]]] = {}
    for item in spec.split(";"):
        try:
            client, window = item.split(":")
            start, end = window.split("-")
            schedule.setdefault(int(client), []).append((float(start), float(end)))
        except ValueError:
            raise ValueError(f"dropout spec {item!r} does not parse; expected 'client:start-end[;...]'") from None
    return schedule


def _finite(value: float) -> float:
    return value if math.isfinite(value) else 1e12


def _history_metrics(history, prefix: str = "") -> dict[str, float]:
    metrics = {f"{prefix}accuracy": history.final_accuracy,
               f"{prefix}balanced_accuracy": history.balanced_accuracy[-1],
               f"{prefix}loss": history.loss[-1],
               f"{prefix}server_iterations": history.iterations[-1],
               f"{prefix}time": history.duration,
               f"{prefix}staleness_mean": float(np.mean(history.table_age)) if history.table_age else 0.0,
               f"{prefix}message_delay_mean": float(np.mean(history.message_delay)) if history.message_delay else 0.0}
    for m, (count, sent, eps) in enumerate(zip(history.update_counts, history.bytes_received, history.epsilon)):
        metrics[f"{prefix}updates_client{m}"] = count
        metrics[f"{prefix}bytes_client{m}"] = sent
        metrics[f"{prefix}epsilon_client{m}"] = _finite(eps)
    for m, (params, combined) in enumerate(zip(history.epsilon_params, history.epsilon_combined)):
        if math.isfinite(params):  # client DP-SGD on: the parameters' and the combined guarantee
            metrics[f"{prefix}epsilon_params_client{m}"] = params
            metrics[f"{prefix}epsilon_combined_client{m}"] = _finite(combined)
    return metrics


def train(
    out: Path,
    dataset: str = "digits",
    parties: int = 4,
    runtime: Literal["sim", "threads", "sync", "central", "single"] = "sim",
    delays: str = "exp:1,2,4,8",
    embed_dim: int = 8,
    hidden: int = 16,
    head_hidden: int = 16,
    batch_size: int = 16,
    lr: float = 0.05,
    budget: int = 4000,
    sigma: float = 0.0,
    clip: float = 1.0,
    bound: Literal["clip", "tanh", "none"] = "clip",
    delta: float = 1e-5,
    step_rule: Literal["constant", "inverse", "inverse_sqrt"] = "constant",
    server_update_every: int = 1,
    local_steps: int = 1,
    dp_noise_multiplier: float = 0.0,
    dp_max_grad_norm: float = 1.0,
    scheme: str | None = None,
    root: str | None = None,
    align: Literal["strict", "intersect"] = "strict",
    dropout: str | None = None,
    duration_s: float = 10.0,
    eval_every: int = 200,
    epochs: int = 100,
    seed: int = 0,
    device: str = "cpu",
) -> dict:
    """Train one vertical model with a chosen runtime (VAFL sim/threads, sync VFL, or a baseline).

    Args:
        dataset: digits, breast_cancer, csv (root: party*.csv + labels.csv), mnist or cifar10 (root).
        parties: number of clients M.
        runtime: sim (discrete-event VAFL), threads (real threads), sync, central or single.
        delays: per-client compute-time distributions, e.g. exp:1,2,4,8 (ms for threads).
        embed_dim: local embedding dimension p.
        hidden: hidden units of each local MLP.
        head_hidden: hidden units of the server head.
        batch_size: mini-batch size B of every upload.
        lr: step size of clients and server (c of c/k for the decaying rules).
        budget: server updates (sim, threads), or budget / M rounds (sync).
        sigma: standard deviation of the Gaussian noise on every upload.
        clip: embedding norm bound C.
        bound: clip (L2), tanh, or none (only without noise).
        delta: delta of the reported (epsilon, delta).
        step_rule: constant, inverse (c/k) or inverse_sqrt (c/sqrt(k)).
        server_update_every: update theta_0 every r arrivals.
        local_steps: client steps per received gradient.
        dp_noise_multiplier: client-side DP-SGD (opacus) noise multiplier z on each client update;
            0 turns it off. The combined epsilon composes it with the embedding releases.
        dp_max_grad_norm: client-side DP-SGD per-sample gradient clip.
        scheme: partition: contiguous, permutation or quadrants (default by data).
        root: folder of a user dataset.
        align: csv only: strict refuses differing ID sets, intersect keeps common IDs.
        dropout: offline windows, 'client:start-end;...' in virtual time (sim) or seconds (threads).
        duration_s: wall-clock length of a threaded run.
        eval_every: server iterations between evaluations.
        epochs: epochs of the central/single baselines.
    """
    from paperzoo.core.checkpoint import save_weights
    from paperzoo.vafl.baselines import train_centralised, train_single_parties
    from paperzoo.vafl.data import load_dataset
    from paperzoo.vafl.plots import plot_curves, plot_staleness
    from paperzoo.vafl.runtime import (
        DelaySpec,
        DropoutSchedule,
        FederationConfig,
        SimRuntime,
        SyncRuntime,
        ThreadedRuntime,
        build_federation,
    )

    torch.set_num_threads(1)  # tiny models: one intra-op thread is fastest (spec pitfall 10)
    config = FederationConfig(embed_dim=embed_dim, hidden=hidden, head_hidden=head_hidden, lr=lr,
                              batch_size=batch_size, step_rule=step_rule, sigma=sigma, clip=clip,
                              bound=bound, delta=delta, server_update_every=server_update_every,
                              local_steps=local_steps, seed=seed, dp_noise_multiplier=dp_noise_multiplier,
                              dp_max_grad_norm=dp_max_grad_norm)
    config.validate()
    if not isinstance(budget, int) or budget < 1:
        raise ValueError(f"budget must be a positive integer, got {budget}")
    DelaySpec.parse(delays, parties)
    schedule = parse_dropout(dropout)
    DropoutSchedule(schedule, parties, horizon=duration_s if runtime == "threads" else math.inf)
    data = load_dataset(dataset, parties, scheme, seed, root=root, align=align)
    if runtime in ("central", "single"):
        results = ([train_centralised(data, config, epochs, device)] if runtime == "central"
                   else train_single_parties(data, config, epochs, device))
        best = max(results, key=lambda r: r.accuracy)
        metrics = {"accuracy": best.accuracy, "balanced_accuracy": best.balanced_accuracy}
        for m, result in enumerate(results if runtime == "single" else []):
            metrics[f"accuracy_party{m}"] = result.accuracy
        save_weights(best.model.model, out / "model.safetensors", meta={"dataset": dataset, "runtime": runtime})
        write_results(out, metrics, title=f"{runtime} on {dataset}")
        return metrics
    federation = build_federation(data, config)
    if runtime == "sim":
        history = SimRuntime(delays, budget, seed, schedule, eval_every).run(federation)
    elif runtime == "sync":
        history = SyncRuntime(delays, max(1, budget // parties), seed, max(1, eval_every // parties)).run(federation)
    else:
        history = ThreadedRuntime(delays, duration_s, schedule, seed, budget=budget,
                                  eval_every_s=duration_s / 10).run(federation)
    metrics = _history_metrics(history)
    plot_curves({runtime: history}, out / "curves.png", title=dataset)
    plot_staleness(history.table_age, history.message_delay, out / "staleness.png")
    save_weights(federation.vertical_model(), out / "model.safetensors",
                 meta={"dataset": dataset, "runtime": runtime, "in_dims": data.in_dims})
    rows = [{"client": m, "updates": history.update_counts[m], "bytes_uploaded": history.bytes_received[m],
             "raw_block_bytes": int(data.train_parts[m].numel() * 4), "epsilon": history.epsilon[m],
             "epsilon_params": history.epsilon_params[m], "epsilon_combined": history.epsilon_combined[m]}
            for m in range(parties)]
    write_results(out, metrics, rows, title=f"VAFL ({runtime}) on {dataset}: accuracy {history.final_accuracy:.4f}")
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
    from paperzoo.vafl.data import load_dataset
    from paperzoo.vafl.experiments import epsilons_match, privacy_point, strictly_decreasing
    from paperzoo.vafl.plots import plot_privacy
    from paperzoo.vafl.privacy import (
        EmbeddingAccountant,
        check_dp_sgd_parameters,
        check_privacy_parameters,
        opacus_epsilon,
    )

    torch.set_num_threads(1)
    sigmas = [float(s) for s in (DEFAULT_SIGMAS if sigmas is None else sigmas)]
    if not sigmas:
        raise ValueError("sigmas is empty")
    for sigma in sigmas:
        check_privacy_parameters(sigma, clip, delta)
    check_dp_sgd_parameters(dp_noise_multiplier, 1.0)
    if accountant_only:
        rows, metrics = [], {}
        for sigma in sigmas:
            accountant = EmbeddingAccountant(sigma, clip, delta)
            accountant.step(sample_rate, steps)
            eps = accountant.epsilon()
            direct = opacus_epsilon(sigma / (2 * clip), [(sample_rate, steps)], delta)
            rows.append({"sigma": sigma, "noise_multiplier": sigma / (2 * clip), "epsilon": eps,
                         "epsilon_opacus": direct})
            metrics[f"epsilon_sigma{sigma:g}"] = _finite(eps)
        metrics["epsilon_matches_opacus"] = int(all(
            (math.isinf(r["epsilon"]) and math.isinf(r["epsilon_opacus"])) or
            math.isclose(r["epsilon"], r["epsilon_opacus"], rel_tol=1e-9) for r in rows))
        write_results(out, metrics, rows, title="RDP accountant (opacus) query")
        return metrics
    data = load_dataset(dataset, 4, seed=seed)
    points = [privacy_point(data, sigma, seed, budget, clip, delta, delays, dp_noise_multiplier=dp_noise_multiplier)
              for sigma in sigmas]
    rows = [{"sigma": p.sigma, "accuracy": p.accuracy, "epsilon_max": max(p.epsilon),
             "epsilon_opacus_max": max(p.epsilon_opacus), "attack_r2": p.attack_r2} for p in points]
    if dp_noise_multiplier > 0:
        for row, p in zip(rows, points):
            row.update(epsilon_params_max=max(p.epsilon_params), epsilon_combined_max=max(p.epsilon_combined))
    metrics = {f"accuracy_sigma{p.sigma:g}": p.accuracy for p in points}
    metrics.update({f"epsilon_sigma{p.sigma:g}": _finite(max(p.epsilon)) for p in points})
    metrics.update({f"attack_r2_sigma{p.sigma:g}": p.attack_r2 for p in points})
    if dp_noise_multiplier > 0:
        metrics.update({f"epsilon_combined_sigma{p.sigma:g}": _finite(max(p.epsilon_combined)) for p in points})
        metrics["epsilon_params"] = max(points[0].epsilon_params)
    metrics["epsilon_matches_opacus"] = int(epsilons_match(points))
    metrics["epsilon_monotone"] = int(strictly_decreasing([max(p.epsilon) for p in points]))
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
    from paperzoo.vafl.convex import _train_arrays, optimum, run_convex
    from paperzoo.vafl.data import load_dataset
    from paperzoo.vafl.plots import plot_convex

    torch.set_num_threads(1)
    if lam <= 0:
        raise ValueError(f"lam must be positive (strong convexity), got {lam}")
    data = load_dataset("breast_cancer", 4, seed=seed)
    x, y = _train_arrays(data)
    opt = optimum(x, y, lam)
    kwargs = dict(budget=budget, seed=seed, lam=lam, lr=lr, offset=step_offset, batch_size=batch_size,
                  data=data, f_star=opt["f_star"], eval_every=max(1, budget // 100))
    main_run = run_convex(delays, **kwargs)
    runs = [main_run, run_convex(delays, synchronous=True, **kwargs)]
    runs += [run_convex(f"bounded:{d}", **kwargs) for d in ((8, 32) if bounded is None else bounded)]
    plot_convex(runs, out / "convex_gap.png")
    metrics = {"convex_gap_final": main_run.final_gap, "convex_slope_late": main_run.late_slope(),
               "f_star": opt["f_star"], "f_star_scipy_minus_sklearn": opt["f_scipy"] - opt["f_sklearn"]}
    rows = [{"run": r.label, "final_gap": r.final_gap, "late_slope": r.late_slope()} for r in runs]
    for r in runs[1:]:
        key = r.label.split(" ")[0].replace(":", "")
        metrics[f"convex_gap_final_{key}"] = r.final_gap
    write_results(out, metrics, rows, title=f"Convex case: F* = {opt['f_star']:.8f}")
    return metrics


def demo(out: Path, budget: int = 1500, seed: int = 0) -> dict:
    """VAFL on digits in seconds: 4 clients with exponential speeds 1:2:4:8, a plot and metrics.

    Args:
        budget: server updates.
    """
    torch.set_num_threads(1)
    return train(out, dataset="digits", runtime="sim", budget=budget, eval_every=100, seed=seed)


def validate(out: Path, seeds: int = 3, budget: int = 12_000, reference_budget: int | None = None,
             convex_budget: int = 20_000, privacy_budget: int = 4000, threaded_duration_s: float = 8.0,
             central_epochs: int = 100, single_epochs: int = 60, dp_noise_multiplier: float = 1.0,
             seed: int = 0) -> dict:
    """The spec's validation (V1 convex, V2 accuracy, V3 asynchrony and threads, V4 privacy).

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
    from paperzoo.vafl.convex import _train_arrays, optimum, run_convex
    from paperzoo.vafl.data import load_dataset
    from paperzoo.vafl.experiments import (
        accuracy_experiment,
        epsilons_match,
        privacy_point,
        strictly_decreasing,
        threaded_experiment,
    )
    from paperzoo.vafl.plots import plot_convex, plot_curves, plot_privacy, plot_staleness

    torch.set_num_threads(1)
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    reference_budget = min(4000, budget) if reference_budget is None else reference_budget
    if not 0 < reference_budget <= budget:
        raise ValueError(f"reference_budget must lie in (0, budget={budget}], got {reference_budget}")
    eval_every = math.gcd(200, reference_budget, budget)
    metrics: dict[str, float] = {}
    rows: list[dict] = []
    # V2 accuracy (and V3 asynchrony from the same runs)
    results = {}
    for dataset in ("digits", "breast_cancer"):
        results[dataset] = [accuracy_experiment(dataset, s, budget, central_epochs=central_epochs,
                                                single_epochs=single_epochs, eval_every=eval_every)
                            for s in range(seed, seed + seeds)]
        runs = results[dataset]
        vafl = float(np.mean([r.vafl.final_accuracy for r in runs]))
        central = float(np.mean([r.central_accuracy for r in runs]))
        metrics[f"vafl_acc_{dataset}"] = vafl
        metrics[f"central_acc_{dataset}"] = central
        metrics[f"gap_{dataset}"] = central - vafl
        # the same runs earlier on: at the spec's calibration budget and at half the budget
        for name, k in ((f"at_{reference_budget}", reference_budget), ("at_half_budget", budget // 2)):
            acc = float(np.mean([r.vafl.accuracy_at(k) for r in runs]))
            metrics[f"vafl_acc_{dataset}_{name}"] = acc
            metrics[f"gap_{dataset}_{name}"] = central - acc
        metrics[f"sync_acc_{dataset}"] = float(np.mean([r.sync.final_accuracy for r in runs]))
        metrics[f"single_party_acc_{dataset}"] = float(np.mean([max(r.single_accuracies) for r in runs]))
        metrics[f"vafl_balanced_acc_{dataset}"] = float(np.mean([r.vafl.balanced_accuracy[-1] for r in runs]))
        metrics[f"central_balanced_acc_{dataset}"] = float(np.mean([r.central_balanced for r in runs]))
        # equal virtual time: sync's accuracy when VAFL's budget ran out (spec pitfall 8)
        metrics[f"sync_acc_equal_time_{dataset}"] = float(np.mean([
            [a for t, a in zip(r.sync.times, r.sync.accuracy) if t <= r.vafl.duration][-1] for r in runs]))
        metrics[f"time_to_95_ratio_{dataset}"] = float(np.mean([r.time_to_95_ratio for r in runs]))
        metrics[f"staleness_mean_{dataset}"] = float(np.mean([np.mean(r.vafl.table_age) for r in runs]))
        metrics[f"message_delay_mean_{dataset}"] = float(np.mean([np.mean(r.vafl.message_delay) for r in runs]))
        counts = np.mean([r.vafl.update_counts for r in runs], axis=0)
        metrics[f"updates_ordered_by_speed_{dataset}"] = int(all(a > b for a, b in zip(counts, counts[1:])))
        for m, count in enumerate(counts):
            metrics[f"updates_client{m}_{dataset}"] = float(count)
            upload = np.mean([r.vafl.bytes_received[m] for r in runs])
            metrics[f"upload_over_raw_client{m}_{dataset}"] = float(upload / runs[0].raw_block_bytes[m])
        for r in runs:
            rows.append({"check": f"V2 {dataset} seed {r.seed}", "vafl": r.vafl.final_accuracy,
                         "sync": r.sync.final_accuracy, "central": r.central_accuracy,
                         "best_single": max(r.single_accuracies), "t95_ratio": r.time_to_95_ratio})
        first = runs[0]
        plot_curves({"VAFL (sim)": first.vafl, "sync VFL": first.sync}, out / f"curves_{dataset}.png",
                    central_accuracy=first.central_accuracy, title=dataset)
    metrics["staleness_mean"] = metrics["staleness_mean_digits"]
    plot_staleness(results["digits"][0].vafl.table_age, results["digits"][0].vafl.message_delay,
                   out / "staleness_digits.png")
    # V1 convex
    data_bc = load_dataset("breast_cancer", 4, seed=seed)
    x, y = _train_arrays(data_bc)
    f_star = optimum(x, y, 1e-2)["f_star"]
    kwargs = dict(budget=convex_budget, seed=seed, data=data_bc, f_star=f_star, eval_every=max(1, convex_budget // 100))
    convex_runs = [run_convex("exp:1,2,4,8", **kwargs), run_convex("exp:1,2,4,8", synchronous=True, **kwargs),
                   run_convex("bounded:8", **kwargs), run_convex("bounded:32", **kwargs)]
    plot_convex(convex_runs, out / "convex_gap.png")
    metrics["convex_gap_final"] = convex_runs[0].final_gap
    metrics["convex_slope_late"] = convex_runs[0].late_slope()
    for run in convex_runs:
        rows.append({"check": f"V1 convex {run.label}", "final_gap": run.final_gap, "late_slope": run.late_slope()})
    # V3 threads
    data_digits = load_dataset("digits", 4, seed=seed)
    threaded = threaded_experiment(data_digits, seed, threaded_duration_s)
    sim_accuracy = results["digits"][0].vafl.final_accuracy
    metrics["threaded_acc_digits"] = threaded.threaded.final_accuracy
    metrics["threaded_gap_digits"] = abs(threaded.threaded.final_accuracy - sim_accuracy)
    metrics["threaded_all_clients_progress"] = int(min(threaded.threaded.update_counts) > 0)
    metrics["threaded_updates_during_outage"] = threaded.updates_during_outage
    metrics["threaded_offline_client_updates_during_outage"] = threaded.offline_client_updates_during_outage
    for m, count in enumerate(threaded.threaded.update_counts):
        metrics[f"threaded_updates_client{m}"] = count
    rows.append({"check": "V3 threads digits", "vafl": threaded.threaded.final_accuracy})
    # V4 privacy
    sigmas = list(DEFAULT_SIGMAS)
    points = [privacy_point(data_digits, s, seed, privacy_budget) for s in sigmas]
    metrics["epsilon_matches_opacus"] = int(epsilons_match(points))
    metrics["epsilon_monotone"] = int(strictly_decreasing([max(p.epsilon) for p in points]))
    metrics["attack_r2_sigma0"] = points[0].attack_r2
    metrics["attack_r2_sigma_max"] = points[-1].attack_r2
    for p in points:
        metrics[f"privacy_acc_sigma{p.sigma:g}"] = p.accuracy
        metrics[f"epsilon_sigma{p.sigma:g}"] = _finite(max(p.epsilon))
        metrics[f"attack_r2_sigma{p.sigma:g}"] = p.attack_r2
        rows.append({"check": f"V4 sigma {p.sigma:g}", "vafl": p.accuracy, "epsilon_max": max(p.epsilon),
                     "attack_r2": p.attack_r2})
    plot_privacy(sigmas, [p.accuracy for p in points], [max(p.epsilon) for p in points],
                 [p.attack_r2 for p in points], out / "privacy.png")
    # V5 (optional in the spec): client-side DP-SGD on top of the perturbed embeddings
    if dp_noise_multiplier > 0:
        dp_points = [privacy_point(data_digits, s, seed, privacy_budget, dp_noise_multiplier=dp_noise_multiplier)
                     for s in DP_SGD_SIGMAS]
        metrics["v5_dp_noise_multiplier"] = dp_noise_multiplier
        metrics["v5_epsilon_matches_opacus"] = int(epsilons_match(dp_points))
        for p in dp_points:
            metrics[f"v5_acc_sigma{p.sigma:g}"] = p.accuracy
            metrics[f"v5_epsilon_embeddings_sigma{p.sigma:g}"] = max(p.epsilon)
            metrics[f"v5_epsilon_params_sigma{p.sigma:g}"] = max(p.epsilon_params)
            metrics[f"v5_epsilon_combined_sigma{p.sigma:g}"] = max(p.epsilon_combined)
            metrics[f"v5_attack_r2_sigma{p.sigma:g}"] = p.attack_r2
            rows.append({"check": f"V5 sigma {p.sigma:g} + DP-SGD z {dp_noise_multiplier:g}", "vafl": p.accuracy,
                         "epsilon_max": max(p.epsilon), "epsilon_params_max": max(p.epsilon_params),
                         "epsilon_combined_max": max(p.epsilon_combined), "attack_r2": p.attack_r2})
    # pass flags (the pass numbers)
    metrics["v2_budget"] = budget
    metrics["pass_gap_digits"] = int(metrics["gap_digits"] <= 0.02)
    metrics["pass_gap_breast_cancer"] = int(metrics["gap_breast_cancer"] <= 0.03)
    metrics["pass_above_single_digits"] = int(metrics["vafl_acc_digits"] > metrics["single_party_acc_digits"])
    metrics["pass_time_to_95_digits"] = int(metrics["time_to_95_ratio_digits"] < 1.0)
    metrics["pass_convex"] = int(metrics["convex_gap_final"] < 1e-3 and metrics["convex_slope_late"] <= -0.7)
    metrics["pass_privacy"] = int(metrics["epsilon_matches_opacus"] and metrics["epsilon_monotone"]
                                  and metrics["attack_r2_sigma_max"] < metrics["attack_r2_sigma0"])
    metrics["pass_threads"] = int(metrics["threaded_gap_digits"] <= 0.03 and metrics["threaded_all_clients_progress"]
                                  and metrics["threaded_updates_during_outage"] > 0)
    write_results(out, metrics, rows, title="VAFL validation (V1-V5)")
    return metrics
