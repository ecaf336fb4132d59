"""The spec's experiments as functions (section 5): accuracy against the baselines (V2), asynchrony
and threads (V3), the privacy sweep (V4). The convex check (V1) lives in :mod:`convex`.
Shared by the CLI verbs, the tests (reduced) and the benchmark."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from paperzoo.vafl.data import VerticalData, load_dataset
from paperzoo.vafl.privacy import FeatureInversionAttack, opacus_epsilon, opacus_epsilon_composed
from paperzoo.vafl.runtime import (
    FederationConfig,
    RunHistory,
    SimRuntime,
    SyncRuntime,
    ThreadedRuntime,
    build_federation,
)


@dataclass
class AccuracyResult:
    """One dataset and seed of V2: VAFL (sim), sync, centralised and single-party."""

    dataset: str
    seed: int
    vafl: RunHistory
    sync: RunHistory
    central_accuracy: float
    central_balanced: float
    single_accuracies: list[float]
    raw_block_bytes: list[int] = field(default_factory=list)

    @property
    def time_to_95_ratio(self) -> float:
        return self.vafl.time_to_fraction(0.95) / max(self.sync.time_to_fraction(0.95), 1e-12)


def accuracy_experiment(dataset: str, seed: int, budget: int = 4000, delays: str = "exp:1,2,4,8",
                        config: FederationConfig | None = None, central_epochs: int = 100,
                        single_epochs: int = 60, eval_every: int = 200, baselines: bool = True,
                        data: VerticalData | None = None) -> AccuracyResult:
    """VAFL with ``budget`` server updates; sync VFL with ``budget / M`` rounds (equal total uploads);
    centralised and single-party references trained with Lightning to convergence."""
    from paperzoo.vafl.baselines import train_centralised, train_single_parties

    data = data if data is not None else load_dataset(dataset, 4, seed=seed)
    base = config or FederationConfig()
    base = FederationConfig(**{**base.__dict__, "seed": seed})
    vafl = SimRuntime(delays, budget, seed, eval_every=eval_every).run(build_federation(data, base))
    rounds = max(1, budget // data.num_parties)
    sync = SyncRuntime(delays, rounds, seed, eval_every=max(1, eval_every // data.num_parties)).run(
        build_federation(data, base))
    central_accuracy = central_balanced = math.nan
    singles: list[float] = []
    if baselines:
        central = train_centralised(data, base, epochs=central_epochs)
        central_accuracy, central_balanced = central.accuracy, central.balanced_accuracy
        singles = [r.accuracy for r in train_single_parties(data, base, epochs=single_epochs)]
    raw = [int(p.numel() * p.element_size()) for p in data.train_parts]
    return AccuracyResult(dataset, seed, vafl, sync, central_accuracy, central_balanced, singles, raw)


@dataclass
class ThreadedResult:
    threaded: RunHistory
    offline_client: int
    outage: tuple[float, float]
    updates_during_outage: int
    offline_client_updates_during_outage: int


def threaded_experiment(data: VerticalData, seed: int = 0, duration_s: float = 8.0,
                        delays_ms: str = "exp:1,2,4,8", offline_client: int = 3,
                        offline_fraction: float = 0.4, budget: int | None = None,
                        config: FederationConfig | None = None) -> ThreadedResult:
    """V3: the threaded runtime with ``offline_client`` offline for ``offline_fraction`` of the
    run (centred window); counts the server updates and that client's updates in the outage."""
    if not 0.0 <= offline_fraction < 1.0:
        raise ValueError(f"offline_fraction must lie in [0, 1), got {offline_fraction}")
    base = config or FederationConfig()
    federation = build_federation(data, FederationConfig(**{**base.__dict__, "seed": seed}))
    start = (1.0 - offline_fraction) / 2 * duration_s
    outage = (start, start + offline_fraction * duration_s)
    dropout = {offline_client: [outage]} if offline_fraction > 0 else None
    runtime = ThreadedRuntime(delays_ms, duration_s, dropout=dropout, seed=seed, budget=budget,
                              eval_every_s=duration_s / 8)
    history = runtime.run(federation)
    in_outage = [client for t, client in runtime.arrivals if outage[0] <= t < outage[1]]
    return ThreadedResult(history, offline_client, outage, len(in_outage),
                          sum(1 for client in in_outage if client == offline_client))


@dataclass
class PrivacyPoint:
    sigma: float
    accuracy: float
    epsilon: list[float]
    epsilon_opacus: list[float]
    attack_r2: float
    epsilon_params: list[float] = field(default_factory=list)
    epsilon_combined: list[float] = field(default_factory=list)
    epsilon_combined_opacus: list[float] = field(default_factory=list)


def privacy_point(data: VerticalData, sigma: float, seed: int = 0, budget: int = 4000, clip: float = 1.0,
                  delta: float = 1e-5, delays: str = "exp:1,2,4,8", attacked_client: int = 0,
                  config: FederationConfig | None = None, dp_noise_multiplier: float = 0.0,
                  dp_max_grad_norm: float = 1.0) -> PrivacyPoint:
    """V4 at one sigma: accuracy, epsilon per client from the package's accountant and from
    opacus's analysis called directly with the same inputs, and the inversion attack's R^2 on the
    server's stored table. With ``dp_noise_multiplier > 0`` the clients also train with DP-SGD
    (V5): the parameters' epsilon and the combined one are reported and checked the same way."""
    base = config or FederationConfig()
    cfg = FederationConfig(**{**base.__dict__, "seed": seed, "sigma": sigma, "clip": clip, "delta": delta,
                              "bound": "clip", "dp_noise_multiplier": dp_noise_multiplier,
                              "dp_max_grad_norm": dp_max_grad_norm})
    federation = build_federation(data, cfg)
    history = SimRuntime(delays, budget, seed, eval_every=budget).run(federation)
    epsilons, direct, combined_direct = [], [], []
    for client in federation.clients:
        epsilons.append(client.epsilon(delta))
        rate = client.batch_size / client.num_samples
        # the same inputs, independently: one full initial pass, then one step per upload
        direct.append(opacus_epsilon(sigma / (2 * clip), [(1.0, 1), (rate, client.uploads)], delta))
        if dp_noise_multiplier > 0:  # plus one DP-SGD step per client update
            combined_direct.append(opacus_epsilon_composed(
                [(sigma / (2 * clip), 1.0, 1), (sigma / (2 * clip), rate, client.uploads),
                 (dp_noise_multiplier, rate, client.updates)], delta))
    stored = federation.server.table[:, attacked_client]
    r2 = FeatureInversionAttack(seed=seed).run(stored, data.train_parts[attacked_client])
    params = [c.epsilon_params(delta) for c in federation.clients] if dp_noise_multiplier > 0 else []
    combined = [c.epsilon_combined(delta) for c in federation.clients] if dp_noise_multiplier > 0 else []
    return PrivacyPoint(sigma, history.final_accuracy, epsilons, direct, r2, params, combined, combined_direct)


def epsilons_match(points: list[PrivacyPoint], rel_tol: float = 1e-9) -> bool:
    """The package's epsilon equals opacus's direct computation for every client and sigma."""
    for point in points:
        pairs = [*zip(point.epsilon, point.epsilon_opacus), *zip(point.epsilon_combined, point.epsilon_combined_opacus)]
        for ours, theirs in pairs:
            if math.isinf(ours) and math.isinf(theirs):
                continue
            if not math.isclose(ours, theirs, rel_tol=rel_tol):
                return False
    return True


def strictly_decreasing(values: list[float]) -> bool:
    finite = [v for v in values if math.isfinite(v)]
    return all(b < a for a, b in zip(finite, finite[1:]))


def mean(values) -> float:
    return float(np.mean(values))
