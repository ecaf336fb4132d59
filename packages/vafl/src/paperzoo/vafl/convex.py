"""The convex case (Chen et al. 2020, section 3 theory: O(1/K) for strongly convex objectives with
delays and decaying steps): L2-regularised logistic regression split by features.

Each client holds a scalar linear embedding ``w_m^T x_{n,m}``; the server's :class:`SumHead` adds
them and a bias. ``F(theta) = mean log(1 + exp(-y_n f_n)) + lambda/2 ||w||^2`` (bias unpenalised,
as scikit-learn does). The optimum ``F*`` is computed independently, by full-batch L-BFGS (SciPy,
float64) and by scikit-learn's ``LogisticRegression`` with ``C = 1 / (lambda N)``; the lower of the
two is used. The gap ``F(theta_k) - F*`` is logged against the server iteration k.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from paperzoo.vafl.config import FederationConfig
from paperzoo.vafl.data import VerticalData, load_dataset
from paperzoo.vafl.federation import build_federation
from paperzoo.vafl.simulation import SimRuntime


def logistic_objective(w: np.ndarray, b: float, x: np.ndarray, y: np.ndarray, lam: float) -> float:
    """``F(w, b)`` in float64, labels in {0, 1}."""
    margin = (2.0 * y - 1.0) * (x @ w + b)
    return float(np.mean(np.logaddexp(0.0, -margin)) + 0.5 * lam * w @ w)


def optimum(x: np.ndarray, y: np.ndarray, lam: float) -> dict[str, float]:
    """``F*`` by SciPy L-BFGS on the exact objective and by scikit-learn; both reported."""
    from scipy.optimize import minimize
    from scipy.special import expit
    from sklearn.linear_model import LogisticRegression

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    sign = 2.0 * y - 1.0

    def value_and_grad(theta):
        w, b = theta[:-1], theta[-1]
        margin = sign * (x @ w + b)
        weight = -sign * expit(-margin) / len(y)
        value = np.mean(np.logaddexp(0.0, -margin)) + 0.5 * lam * w @ w
        return value, np.concatenate([x.T @ weight + lam * w, [weight.sum()]])

    result = minimize(value_and_grad, np.zeros(x.shape[1] + 1), jac=True, method="L-BFGS-B",
                      options={"maxiter": 10_000, "gtol": 1e-12, "ftol": 1e-15})
    scipy_value = logistic_objective(result.x[:-1], result.x[-1], x, y, lam)
    sk = LogisticRegression(C=1.0 / (lam * len(y)), tol=1e-12, max_iter=100_000).fit(x, y)
    sklearn_value = logistic_objective(sk.coef_[0], float(sk.intercept_[0]), x, y, lam)
    return {"f_star": min(scipy_value, sklearn_value), "f_scipy": scipy_value, "f_sklearn": sklearn_value}


@dataclass
class ConvexRun:
    label: str
    iterations: list[int] = field(default_factory=list)
    gaps: list[float] = field(default_factory=list)

    @property
    def final_gap(self) -> float:
        return self.gaps[-1]

    def late_slope(self, start_fraction: float = 0.25) -> float:
        """Least-squares slope of log gap against log k over ``k >= start_fraction * K``."""
        k = np.asarray(self.iterations, dtype=np.float64)
        gap = np.asarray(self.gaps, dtype=np.float64)
        keep = (k >= start_fraction * k.max()) & (gap > 0)
        if keep.sum() < 2:
            return float("nan")
        return float(np.polyfit(np.log(k[keep]), np.log(gap[keep]), 1)[0])


def convex_config(seed: int = 0, lr: float = 1.0, offset: float = 200.0, batch_size: int = 16,
                  lam: float = 1e-2) -> FederationConfig:
    """Scalar linear embeddings, SumHead, logistic loss, ``c/k`` steps (``inverse`` rule), no
    bound or noise (the convex check is about optimisation, not privacy). The L2 term covers the
    clients' weights; the head's bias stays unpenalised."""
    return FederationConfig(preset="linear", embed_dim=1, hidden=1, head_hidden=0, kind="linear", lr=lr,
                            batch_size=batch_size, step_rule="inverse", step_offset=offset, sigma=0.0,
                            bound="none", weight_decay=lam, head_weight_decay=0.0, loss="logistic",
                            seed=seed)


def _train_arrays(data: VerticalData) -> tuple[np.ndarray, np.ndarray]:
    return data.merged("train").double().numpy(), data.y_train.double().numpy()


def run_convex(delays: str = "exp:1,2,4,8", budget: int = 20_000, seed: int = 0, lam: float = 1e-2,
               lr: float = 1.0, offset: float = 200.0, batch_size: int = 16, eval_every: int = 200,
               data: VerticalData | None = None, f_star: float | None = None,
               synchronous: bool = False) -> ConvexRun:
    """VAFL on the logistic problem; the gap logged every ``eval_every`` server iterations.
    ``synchronous`` runs the no-delay reference (fresh embeddings every round)."""
    data = data if data is not None else load_dataset("breast_cancer", 4, seed=seed)
    x, y = _train_arrays(data)
    if f_star is None:
        f_star = optimum(x, y, lam)["f_star"]
    federation = build_federation(data, convex_config(seed, lr, offset, batch_size, lam))
    run = ConvexRun("sync (no delay)" if synchronous else delays)

    def log_gap(iteration: int, _time: float) -> None:
        if iteration % eval_every:
            return
        w = torch.cat([c.model.net[1].weight.detach().reshape(-1) for c in federation.clients]).double().numpy()
        b = float(federation.server.head.bias.detach())
        run.iterations.append(iteration)
        run.gaps.append(logistic_objective(w, b, x, y, lam) - f_star)

    if synchronous:
        # No delay: every round all clients embed the same batch at the current parameters;
        # k counts client updates so the curve is comparable with the asynchronous ones.
        federation.initialise()
        server = federation.server
        batch_generator = torch.Generator().manual_seed(seed + 1)
        for _ in range(budget // len(federation.clients)):
            indices = torch.randperm(data.num_train, generator=batch_generator)[:batch_size]
            uploads = [c.step(indices=indices) for c in federation.clients]
            for client, reply in zip(federation.clients, server.handle_round(uploads)):
                client.apply(reply)
            log_gap(server.iteration * len(federation.clients), 0.0)
    else:
        SimRuntime(delays, budget, seed, eval_every=budget).run(federation, callback=log_gap)
    return run


def convex_experiment(delays: str = "exp:1,2,4,8", budget: int = 20_000, lam: float = 1e-2, lr: float = 1.0,
                      step_offset: float = 200.0, batch_size: int = 16, bounded: tuple[int, ...] = (8, 32),
                      seed: int = 0) -> tuple[dict[str, float], list[dict], list[ConvexRun]]:
    """The ``convex`` verb: the delayed run, the no-delay reference and bounded delays ``D`` against
    ``F*``; returns the metrics, the table rows and the runs."""
    if lam <= 0:
        raise ValueError(f"lam must be positive (strong convexity), got {lam}")
    data = load_dataset("breast_cancer", 4, seed=seed)
    x, y = _train_arrays(data)
    opt = optimum(x, y, lam)
    kwargs = dict(budget=budget, seed=seed, lam=lam, lr=lr, offset=step_offset, batch_size=batch_size,
                  data=data, f_star=opt["f_star"], eval_every=max(1, budget // 100))
    main_run = run_convex(delays, **kwargs)
    runs = [main_run, run_convex(delays, synchronous=True, **kwargs)]
    runs += [run_convex(f"bounded:{d}", **kwargs) for d in bounded]
    metrics = {"convex_gap_final": main_run.final_gap, "convex_slope_late": main_run.late_slope(),
               "f_star": opt["f_star"], "f_star_scipy_minus_sklearn": opt["f_scipy"] - opt["f_sklearn"]}
    rows = [{"run": r.label, "final_gap": r.final_gap, "late_slope": r.late_slope()} for r in runs]
    for r in runs[1:]:
        key = r.label.split(" ")[0].replace(":", "")
        metrics[f"convex_gap_final_{key}"] = r.final_gap
    return metrics, rows, runs
