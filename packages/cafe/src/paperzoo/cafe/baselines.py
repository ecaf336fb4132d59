"""The DLG baseline (Zhu, Liu, Han, NeurIPS 2019) on one VFL round, as CAFE compares against
(paper Sec. 6.1): optimise a dummy batch and its soft labels so that their gradients match the
observed batch-aggregated gradients. Dummies have no sample IDs, so the result is scored after
optimal one-to-one (Hungarian) matching to the true batch (:func:`metrics.hungarian_match`).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

from paperzoo.cafe.model import check_vertical_model
from paperzoo.cafe.protocol import ObservedRound

OPTIMIZERS = ("lbfgs", "adam")
COSTS = ("l2", "cosine")


@dataclass
class DLGResult:
    """Best restart (lowest gradient-matching cost, which the attacker can see)."""

    parts: list[torch.Tensor]
    label_logits: torch.Tensor
    cost: float
    restart_costs: list[float]


class DLGAttack:
    """Deep leakage from gradients on a single observed round.

    Args:
        observed: the round to invert (model, batch size and uploads).
        model: the federated model's architecture (parameters come from the round).
        restarts: independent random initialisations; the one with the lowest final matching
            cost is kept.
        optimizer: ``"lbfgs"`` (the DLG paper; strong-Wolfe line search, ``iters`` iterations)
            or ``"adam"`` (``iters`` steps at ``lr``).
        iters: iterations per restart.
        cost: ``"l2"`` (squared distance, normalised by ``||g||^2`` like CAFE's matching term)
            or ``"cosine"`` (one minus the cosine similarity of the stacked gradients).
        lr: step size (1 for L-BFGS, ~0.1 for Adam).
        init: uniform range of the dummy data (the same as CAFE's).
        data_range: the range the result is clipped to (default: ``init``).
        seed: seeds the initialisations.
    """

    def __init__(self, observed: ObservedRound, model: nn.Module, restarts: int = 2,
                 optimizer: str = "lbfgs", iters: int = 300, cost: str = "l2", lr: float | None = None,
                 init: tuple[float, float] = (0.0, 1.0), seed: int = 0, device: str = "cpu",
                 data_range: tuple[float, float] | None = None) -> None:
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown DLG optimizer {optimizer!r}; choose from {', '.join(OPTIMIZERS)}")
        if cost not in COSTS:
            raise ValueError(f"unknown DLG cost {cost!r}; choose from {', '.join(COSTS)}")
        if restarts < 1 or iters < 1:
            raise ValueError(f"restarts and iters must be >= 1, got {restarts} and {iters}")
        self.observed = observed
        self.device = torch.device(device)
        self.model = copy.deepcopy(model).to(self.device)
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        self.restarts, self.optimizer, self.iters, self.cost = restarts, optimizer, iters, cost
        self.lr = lr if lr is not None else (1.0 if optimizer == "lbfgs" else 0.1)
        self.init = init
        self.data_range = data_range or init
        self.generator = torch.Generator().manual_seed(int(seed))
        self.classes = check_vertical_model(self.model).classes
        self.true_grads = self._observed_grads()

    def _observed_grads(self) -> list[torch.Tensor]:
        grads = []
        for name, _ in self.model.named_parameters():
            if name.startswith("parties."):
                _, m, local = name.split(".", 2)
                grads.append(self.observed.party_grads[int(m)][local])
            else:
                grads.append(self.observed.server_grads[name.split(".", 1)[1]])
        return [g.to(self.device) for g in grads]

    def matching_cost(self, parts: list[torch.Tensor], label_logits: torch.Tensor) -> torch.Tensor:
        """The gradient-matching cost of a dummy batch (differentiable)."""
        params = {k: v.to(self.device).detach().requires_grad_(True)
                  for k, v in self.observed.model_state.items()}
        logits = functional_call(self.model, params, (parts,))
        loss = -(F.softmax(label_logits, 1) * F.log_softmax(logits, 1)).sum(1).mean()
        dummy = torch.autograd.grad(loss, list(params.values()), create_graph=True)
        if self.cost == "cosine":
            a = torch.cat([g.flatten() for g in dummy])
            b = torch.cat([g.flatten() for g in self.true_grads])
            return 1 - F.cosine_similarity(a, b, dim=0)
        diff = sum(((a - b) ** 2).sum() for a, b in zip(dummy, self.true_grads))
        return diff / sum((b**2).sum() for b in self.true_grads).clamp_min(1e-30)

    def _one_restart(self) -> tuple[list[torch.Tensor], torch.Tensor, float]:
        k = len(self.observed.batch_idx)
        low, high = self.init
        parts = [(low + (high - low) * torch.rand((k, *p.part_shape), generator=self.generator))
                 .to(self.device).requires_grad_(True) for p in self.model.parties]
        labels = torch.rand((k, self.classes), generator=self.generator).to(self.device).requires_grad_(True)
        variables = [*parts, labels]
        if self.optimizer == "lbfgs":
            opt = torch.optim.LBFGS(variables, lr=self.lr, max_iter=self.iters, history_size=100,
                                    tolerance_grad=0.0, tolerance_change=0.0,
                                    line_search_fn="strong_wolfe")

            def closure():
                opt.zero_grad()
                value = self.matching_cost(parts, labels)
                value.backward()
                return value

            opt.step(closure)
        else:
            opt = torch.optim.Adam(variables, lr=self.lr)
            for _ in range(self.iters):
                opt.zero_grad()
                self.matching_cost(parts, labels).backward()
                opt.step()
        final = float(self.matching_cost(parts, labels).detach())
        if not math.isfinite(final) or not all(torch.isfinite(p).all() for p in variables):
            final = math.inf
        return [p.detach().cpu() for p in parts], labels.detach().cpu(), final

    def run(self) -> DLGResult:
        """Run every restart; keep the one with the lowest matching cost."""
        best = None
        costs = []
        for _ in range(self.restarts):
            parts, labels, cost = self._one_restart()
            costs.append(cost)
            if best is None or cost < best[2]:
                best = (parts, labels, cost)
        parts, labels, cost = best
        low, high = self.data_range
        parts = [torch.nan_to_num(p, nan=(low + high) / 2).clamp(low, high) for p in parts]
        return DLGResult(parts, torch.nan_to_num(labels), cost, costs)
