"""CAFE: catastrophic data leakage in vertical FL (paper Sec. 4, Algorithms 1-2).

The attacker is the honest-but-curious server. It receives :class:`ObservedRound` objects and
nothing else, and keeps one dummy per *training sample* (data index alignment, Sec. 4.2):
``V_hat_m[n]`` (``dL/du``, the first FC layer's output gradient), ``H_hat_m[n]`` (the extractor
output), ``x_hat_m[n]`` (the party's block) and ``y_hat[n]`` (label logits). Each round updates
only the rows of that round's batch, so constraints from many batches pile up on each sample.

- Step I (eq. 6): ``min || sum_{n in s} v_hat_n - grad_b ||^2`` with SGD.
- Step II (eq. 7): ``min || grad_W - V_hat(s)^T H_hat(s) ||_F^2`` with index-aligned Adam.
- Closed form [reconstructed from the paper's rank argument, Sec. 4.3]: stack the bias
  equations of ``T`` rounds as ``B V = G`` and solve by least squares once ``B`` has rank ``N``;
  then ``H(s) = pinv(V(s)^T) grad_W``.
- Step III (eq. 8): match the model gradients of the dummy batch, the representation and a
  thresholded TV prior, with index-aligned Adam on ``x_hat`` and ``y_hat``. The matching term is
  differentiated through ``torch.autograd.grad(..., create_graph=True)``.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from paperzoo.cafe.config import BIAS_CORRECTIONS, CafeConfig
from paperzoo.cafe.model import FIRST_FC_BIAS, FIRST_FC_WEIGHT, check_vertical_model
from paperzoo.cafe.protocol import ObservedRound

__all__ = ["CafeAttack", "CafeConfig", "IndexAlignedAdam", "total_variation"]

class IndexAlignedAdam:
    """Adam whose moment buffers (and step counts) are stored per sample row (Sec. 4.2).

    ``step(rows, grad)`` updates only ``param[rows]``; a sample's moments persist between the
    batches it is drawn in. ``bias_correction="global"`` uses one step count for all rows.
    """

    def __init__(self, param: torch.Tensor, lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-7, bias_correction: str = "per_sample") -> None:
        if bias_correction not in BIAS_CORRECTIONS:
            raise ValueError(f"unknown bias_correction {bias_correction!r}")
        self.param = param
        self.lr, self.betas, self.eps = lr, betas, eps
        self.bias_correction = bias_correction
        self.exp_avg = torch.zeros_like(param)
        self.exp_avg_sq = torch.zeros_like(param)
        self.counts = torch.zeros(param.shape[0], dtype=torch.long, device=param.device)
        self.global_count = 0

    @torch.no_grad()
    def step(self, rows: torch.Tensor, grad: torch.Tensor) -> None:
        beta1, beta2 = self.betas
        self.counts[rows] += 1
        self.global_count += 1
        m = self.exp_avg[rows].mul_(beta1).add_(grad, alpha=1 - beta1)
        v = self.exp_avg_sq[rows].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        self.exp_avg[rows] = m
        self.exp_avg_sq[rows] = v
        if self.bias_correction == "per_sample":
            steps = self.counts[rows].to(grad.dtype).view(-1, *([1] * (grad.dim() - 1)))
        else:
            steps = torch.full((1,) * grad.dim(), float(self.global_count), dtype=grad.dtype,
                               device=grad.device)
        m_hat = m / (1 - beta1**steps)
        v_hat = v / (1 - beta2**steps)
        self.param[rows] -= self.lr * m_hat / (v_hat.sqrt() + self.eps)

    def reset_rows(self, rows: torch.Tensor) -> None:
        self.exp_avg[rows] = 0
        self.exp_avg_sq[rows] = 0
        self.counts[rows] = 0


def _uniform(shape, bounds, generator) -> torch.Tensor:
    low, high = bounds
    return low + (high - low) * torch.rand(shape, generator=generator)


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Anisotropic TV of each image ``(N,)``: the sum of absolute neighbour differences."""
    dh = (images[..., 1:, :] - images[..., :-1, :]).abs().flatten(1).sum(1)
    dw = (images[..., :, 1:] - images[..., :, :-1]).abs().flatten(1).sum(1)
    return dh + dw


@dataclass
class _ClosedForm:
    """Bookkeeping of the least-squares variant: membership rows, bias and weight gradients."""

    memberships: list[torch.Tensor] = field(default_factory=list)
    bias_grads: list[list[torch.Tensor]] = field(default_factory=list)
    weight_grads: list[list[torch.Tensor]] = field(default_factory=list)
    solved: bool = False
    # per party: rounds whose V(s) was numerically rank-deficient and so left out of H
    rank_deficient_rounds: list[int] = field(default_factory=list)
    # samples with no usable round in some party (their H is not determined)
    unrecovered: list[int] = field(default_factory=list)


# A round's V(s) (K x d2) with smallest singular value at or below this fraction of its largest
# is treated as rank-deficient: pinv(V(s)^T) grad_W then does not determine H(s) (measured: such
# rounds sit at 1e-7 relative, full-rank ones well above 1e-4).
RANK_RTOL = 1e-6


class CafeAttack:
    """The CAFE attacker (paper Algorithm 2) over the rounds of one VFL run.

    Args:
        n_samples: ``N``, the number of training samples (the server knows the ID range).
        model: the federated model's architecture (public), any model that follows the
            party/server protocol (:data:`paperzoo.cafe.model.PROTOCOL`; checked, with an error
            naming what is missing); only its structure is used, the parameters of each round
            come from ``ObservedRound.model_state``.
        config: :class:`CafeConfig`.
        labels: the server's labels, used only with ``label_mode="known"``.
        batch_size: optional ``K`` for an early check of ``K <= d2`` with the closed form.
        image_merge: optional function assembling party blocks into images, used by the TV term
            (default: TV of each party block; no TV term for blocks without two spatial axes,
            such as tabular columns).
        device: where the dummies live.
    """

    def __init__(
        self,
        n_samples: int,
        model: nn.Module,
        config: CafeConfig | None = None,
        labels: torch.Tensor | None = None,
        batch_size: int | None = None,
        image_merge: Callable[[list[torch.Tensor]], torch.Tensor] | None = None,
        device: str = "cpu",
    ) -> None:
        self.config = config = config or CafeConfig()
        if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
            raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
        spec = check_vertical_model(model)
        if config.label_mode == "known" and labels is None:
            raise ValueError("label_mode='known' needs the server's labels (labels=...)")
        if labels is not None and len(labels) != n_samples:
            raise ValueError(f"got {len(labels)} labels for {n_samples} samples")
        self.n_samples = n_samples
        self.device = torch.device(device)
        # the attacker's private replica; each round's parameters are copied in (see _load_state)
        self.model = copy.deepcopy(model).to(self.device)
        self._params = dict(self.model.named_parameters())
        self._loaded_state: dict[str, torch.Tensor] | None = None
        self.num_parties = spec.num_parties
        self.d1 = list(spec.d1)
        self.d2 = list(spec.d2)
        self.part_shapes = list(spec.part_shapes)
        if batch_size is not None:
            self._check_batch(batch_size)
        self.classes = spec.classes
        self.labels = None if labels is None else labels.long().to(self.device)
        self.image_merge = image_merge
        gen = torch.Generator().manual_seed(int(config.seed))
        n = n_samples
        self.V = [_uniform((n, d2), config.init_v, gen).to(self.device) for d2 in self.d2]
        self.H = [_uniform((n, d1), config.init_h, gen).to(self.device) for d1 in self.d1]
        self.X = [_uniform((n, *shape), config.x_init_range, gen).to(self.device) for shape in self.part_shapes]
        self.Y = _uniform((n, self.classes), config.init_y, gen).to(self.device)
        self._generator = gen
        adam = dict(betas=config.betas, eps=config.eps, bias_correction=config.bias_correction)
        self.opt_h = [IndexAlignedAdam(h, config.lr_h, **adam) for h in self.H]
        self.opt_x = [IndexAlignedAdam(x, config.lr_x, **adam) for x in self.X]
        self.opt_y = IndexAlignedAdam(self.Y, config.lr_y, **adam)
        self.h_ready = torch.full((n,), config.solver == "gd", dtype=torch.bool, device=self.device)
        self.row_of_sample = torch.arange(n, device=self.device)
        self.closed_form = _ClosedForm()
        self.rounds_seen = torch.zeros(n, dtype=torch.long)
        self._counted_rounds: set[int] = set()
        self.iteration = 0
        self.history: list[dict[str, float]] = []
        self._current: ObservedRound | None = None

    # ------------------------------------------------------------------ bookkeeping
    def _check_batch(self, k: int) -> None:
        if k > self.n_samples:
            raise ValueError(f"batch size {k} is larger than the number of samples {self.n_samples}")
        if self.config.solver == "lstsq" and k > min(self.d2):
            raise ValueError(f"batch size K = {k} exceeds the first FC width d2 = {min(self.d2)}: "
                             "H(s) = pinv(V(s)^T) grad_W is not unique, so the closed-form solver "
                             "cannot recover the representation; use K <= d2 or solver='gd'")

    def _rows(self, observed: ObservedRound) -> torch.Tensor:
        idx = observed.batch_idx.to(self.device)
        if self.config.index_aligned:
            return idx
        rows = torch.arange(len(idx), device=self.device)
        self.row_of_sample[idx] = rows
        return rows

    def observe(self, observed: ObservedRound) -> None:
        """Receive one round (the only input of the attack)."""
        idx = observed.batch_idx.cpu()  # the bookkeeping (rounds_seen, memberships) is on the CPU
        if idx.dim() != 1 or len(idx) == 0 or int(idx.max()) >= self.n_samples or int(idx.min()) < 0:
            raise ValueError(f"round {observed.t}: batch indices must be a 1-D list of IDs in "
                             f"[0, {self.n_samples}); got {idx.tolist()[:8]}...")
        if len(observed.party_grads) != self.num_parties:
            raise ValueError(f"round {observed.t} carries {len(observed.party_grads)} party uploads, "
                             f"the model has {self.num_parties} parties")
        self._check_batch(len(idx))
        if observed.t not in self._counted_rounds:  # the nested loop shows a round many times
            self._counted_rounds.add(observed.t)
            self.rounds_seen[idx] += 1
        self._current = observed
        if self.config.solver == "lstsq" and not self.closed_form.solved:
            self._record_closed_form(observed)

    # ------------------------------------------------------------------ Step I / II (GD)
    @torch.no_grad()
    def step_v(self, observed: ObservedRound, rows: torch.Tensor) -> float:
        """Step I (eq. 6): one SGD step on ``V_hat(s)`` for every party."""
        total = 0.0
        for m in range(self.num_parties):
            grad_b = observed.party_grads[m][FIRST_FC_BIAS].to(self.device)
            residual = self.V[m][rows].sum(0) - grad_b
            total += float((residual**2).sum())
            self.V[m][rows] -= self.config.lr_v * 2 * residual
        return total

    @torch.no_grad()
    def step_h(self, observed: ObservedRound, rows: torch.Tensor) -> float:
        """Step II (eq. 7): one index-aligned Adam step on ``H_hat(s)`` for every party."""
        total = 0.0
        for m in range(self.num_parties):
            grad_w = observed.party_grads[m][FIRST_FC_WEIGHT].to(self.device)  # (d2, d1), torch's (out, in)
            v_s, h_s = self.V[m][rows], self.H[m][rows]
            residual = v_s.T @ h_s - grad_w
            total += float((residual**2).sum())
            self.opt_h[m].step(rows, 2 * v_s @ residual)
        return total

    # ------------------------------------------------------------------ closed form
    def _record_closed_form(self, observed: ObservedRound) -> None:
        state = self.closed_form
        membership = torch.zeros(self.n_samples, dtype=torch.float64)
        membership[observed.batch_idx.cpu()] = 1.0
        state.memberships.append(membership)
        state.bias_grads.append([g[FIRST_FC_BIAS].double().cpu() for g in observed.party_grads])
        state.weight_grads.append([g[FIRST_FC_WEIGHT].double().cpu() for g in observed.party_grads])
        covered = torch.stack(state.memberships).sum(0) > 0
        if len(state.memberships) >= self.n_samples and bool(covered.all()):
            B = torch.stack(state.memberships)
            if int(torch.linalg.matrix_rank(B)) == self.n_samples:
                self._solve_closed_form(B)

    def _solve_closed_form(self, B: torch.Tensor) -> None:
        """``V = argmin ||B V - G||`` per party, then ``H(s) = pinv(V(s)^T) grad_W`` averaged over
        the recorded rounds of each sample.

        ``grad_W = V(s)^T H(s)`` determines ``H(s)`` only where ``V(s)`` has full row rank K. With
        a narrow party output (``dL/du`` of a party lies in the span of its few output directions,
        masked by the ReLU pattern) some batches' ``V(s)`` are rank-deficient, and their
        pseudo-inverse returns a wrong ``H(s)`` for the whole batch; such rounds
        (``RANK_RTOL``) are left out of the average and counted. A sample with no usable round in
        some party is not recovered: Step III runs without its representation term and
        ``warnings`` names it."""
        state = self.closed_form
        recovered = torch.ones(self.n_samples, dtype=torch.bool)
        state.rank_deficient_rounds = []
        for m in range(self.num_parties):
            G = torch.stack([b[m] for b in state.bias_grads])  # (T, d2)
            V = torch.linalg.lstsq(B, G).solution  # (N, d2)
            H_sum = torch.zeros(self.n_samples, self.d1[m], dtype=torch.float64)
            counts = torch.zeros(self.n_samples, dtype=torch.float64)
            deficient = 0
            for membership, grads in zip(state.memberships, state.weight_grads):
                idx = membership.nonzero().squeeze(1)
                singular = torch.linalg.svdvals(V[idx])
                if not singular.min() > RANK_RTOL * singular.max():
                    deficient += 1
                    continue
                H_sum[idx] += torch.linalg.pinv(V[idx].T) @ grads[m]
                counts[idx] += 1
            state.rank_deficient_rounds.append(deficient)
            recovered &= counts > 0
            self.V[m].copy_(V.to(self.V[m]))
            self.H[m].copy_((H_sum / counts.clamp_min(1).unsqueeze(1)).to(self.H[m]))
        self.h_ready[:] = recovered.to(self.h_ready.device)
        state.unrecovered = (~recovered).nonzero().squeeze(1).tolist()
        state.solved = True
        state.weight_grads.clear()

    def solve_closed_form(self) -> bool:
        """Whether Steps I and II have been solved in closed form (B reached rank N)."""
        return self.closed_form.solved

    def coverage(self) -> dict[str, float]:
        """How much the attack has seen: rounds per sample (min and mean), the share of samples
        never drawn, and (closed form only) ``closed_form_solved``, the rounds left out of it as
        rank-deficient (``closed_form_rank_deficient_rounds``, summed over parties) and the share
        of samples it could not recover (``share_unrecovered``). Until the closed form is
        solved, Step III runs without its representation term (Sec. 4.3): the closed form needs
        at least ``N`` rounds whose membership matrix has rank ``N``."""
        seen = self.rounds_seen.float()
        out = {"rounds_observed": float(len(self._counted_rounds)),
               "rounds_per_sample_min": float(seen.min()), "rounds_per_sample_mean": float(seen.mean()),
               "share_never_drawn": float((seen == 0).float().mean())}
        if self.config.solver == "lstsq":
            out["closed_form_solved"] = float(self.closed_form.solved)
            out["closed_form_rank_deficient_rounds"] = float(
                sum(self.closed_form.rank_deficient_rounds)
            )
            out["share_unrecovered"] = len(self.closed_form.unrecovered) / self.n_samples
        return out

    def warnings(self) -> list[str]:
        """Plain-language reasons why the current reconstruction may be meaningless."""
        found = []
        if self.config.solver == "lstsq" and not self.closed_form.solved:
            found.append(f"the closed form was never solved ({len(self._counted_rounds)} rounds seen for "
                         f"N = {self.n_samples} samples; it needs rank N, so at least N rounds that "
                         "cover every sample): Step III ran without its representation term and the "
                         "reconstruction is not CAFE's; observe more rounds or use solver='gd'")
        if self.closed_form.unrecovered:
            found.append(f"{len(self.closed_form.unrecovered)} of {self.n_samples} samples (first "
                         f"{self.closed_form.unrecovered[:8]}) have no round whose V(s) has full rank "
                         "in some party: the closed form does not determine their representation, "
                         "and Step III reconstructs them from the gradient matching alone; features "
                         "on a large scale (raw, unstandardised values) make this more likely: "
                         "standardise each feature (zero mean, unit variance) before the run")
        never = int((self.rounds_seen == 0).sum())
        if never:
            found.append(f"{never} of {self.n_samples} samples were never drawn in the observed rounds: "
                         "their reconstruction is the random start")
        return found

    # ------------------------------------------------------------------ Step III
    def _observed_grads(self, observed: ObservedRound) -> list[torch.Tensor]:
        grads = []
        for name, _ in self.model.named_parameters():
            if name.startswith("parties."):
                _, m, local = name.split(".", 2)
                grads.append(observed.party_grads[int(m)][local])
            else:
                grads.append(observed.server_grads[name.split(".", 1)[1]])
        return [g.to(self.device) for g in grads]

    @torch.no_grad()
    def _load_state(self, state: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """Copy a round's model into the replica (skipped when the round reuses the snapshot of
        a frozen model); returns the parameters in ``named_parameters`` order."""
        if state is not self._loaded_state:
            missing = set(self._params) - set(state)
            if missing:
                raise ValueError(f"the round's model_state lacks {sorted(missing)[:3]}")
            for name, parameter in self._params.items():
                parameter.copy_(state[name])
            self._loaded_state = state
        return list(self._params.values())

    def data_loss(self, observed: ObservedRound, rows: torch.Tensor, x_sel: list[torch.Tensor],
                  y_sel: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """``D`` of eq. 8 for the dummy batch ``x_sel, y_sel`` (differentiable in both)."""
        config = self.config
        params = self._load_state(observed.model_state)
        logits, features = self.model(x_sel, return_features=True)
        if config.label_mode == "known":
            target = F.one_hot(self.labels[observed.batch_idx.to(self.device)], self.classes).to(logits)
        else:
            target = F.softmax(y_sel, dim=1)
        loss = -(target * F.log_softmax(logits, dim=1)).sum(1).mean()
        dummy_grads = torch.autograd.grad(loss, params, create_graph=True)
        true_grads = self._observed_grads(observed)
        grad_term = sum(((a - b) ** 2).sum() for a, b in zip(dummy_grads, true_grads))
        if config.normalize_grad_loss:
            grad_term = grad_term / sum((b**2).sum() for b in true_grads).clamp_min(1e-30)
        total = config.alpha_grad * grad_term
        parts = {"grad": float(grad_term.detach())}
        if config.gamma_repr > 0:
            ready = self.h_ready[rows].to(logits.dtype).unsqueeze(1)
            repr_term = sum((((self.H[m][rows] - features[m]) ** 2) * ready).sum()
                            for m in range(self.num_parties))
            total = total + config.gamma_repr * repr_term
            parts["repr"] = float(repr_term.detach())
        if config.beta_tv > 0 and (self.image_merge is not None or x_sel[0].dim() >= 3):
            if self.image_merge is not None:
                tv = total_variation(self.image_merge(x_sel)).mean()
            else:
                tv = sum(total_variation(x).mean() for x in x_sel)
            total = total + config.beta_tv * F.relu(tv - config.tv_threshold)
            parts["tv"] = float(tv.detach())
        return total, parts

    def step_x(self, observed: ObservedRound, rows: torch.Tensor) -> dict[str, float]:
        """Step III (eq. 8): one index-aligned Adam step on ``x_hat(s)`` and ``y_hat(s)``."""
        x_sel = [x[rows].clone().requires_grad_(True) for x in self.X]
        y_sel = self.Y[rows].clone().requires_grad_(self.config.label_mode == "optimize")
        loss, parts = self.data_loss(observed, rows, x_sel, y_sel)
        inputs = x_sel + ([y_sel] if self.config.label_mode == "optimize" else [])
        grads = torch.autograd.grad(loss, inputs)
        for m in range(self.num_parties):
            self.opt_x[m].step(rows, grads[m])
            if self.config.clamp_range is not None:
                low, high = self.config.clamp_range
                self.X[m][rows] = self.X[m][rows].clamp(low, high)
        if self.config.label_mode == "optimize":
            self.opt_y.step(rows, grads[-1])
        parts["total"] = float(loss.detach())
        return parts

    # ------------------------------------------------------------------ drivers
    def step(self, steps: tuple[str, ...] = ("v", "h", "x")) -> dict[str, float]:
        """One iteration on the latest observed round: Steps I, II (GD solver) and III."""
        if self._current is None:
            raise ValueError("no round observed yet; call observe(round) first")
        observed = self._current
        rows = self._rows(observed)
        record: dict[str, float] = {"iteration": float(self.iteration)}
        if self.config.solver == "gd":
            if "v" in steps:
                record["step1"] = self.step_v(observed, rows)
            if "h" in steps:
                record["step2"] = self.step_h(observed, rows)
        if "x" in steps:
            record.update(self.step_x(observed, rows))
            self.iteration += 1
        return record

    def run(self, rounds: Iterable[ObservedRound], iterations: int | None = None,
            callback: Callable[[CafeAttack], None] | None = None, progress_desc: str = "") -> CafeAttack:
        """Drive the attack.

        ``loop="single"``: every round is observed and followed by one step of I, II and III
        (the attack runs alongside training). ``loop="nested"``: the rounds are kept; Steps I
        and II run ``nested_passes`` passes over them, then Step III runs ``iterations`` steps
        cycling through the rounds (default: one per round). ``callback(attack)`` runs after
        each Step III.
        """
        from paperzoo.core.runtime import progress

        if self.config.loop == "single":
            for observed in progress(rounds, desc=progress_desc or "CAFE", total=iterations):
                self.observe(observed)
                self._log(self.step())
                if callback is not None:
                    callback(self)
            self._warn()
            return self
        kept = list(rounds)
        if not kept:
            raise ValueError("the nested loop needs at least one round")
        for _ in range(self.config.nested_passes if self.config.solver == "gd" else 1):
            for observed in kept:
                self.observe(observed)
                if self.config.solver == "gd":
                    self.step(steps=("v", "h"))
        total = iterations or len(kept)
        for i in progress(range(total), desc=progress_desc or "CAFE Step III", total=total):
            self._current = kept[i % len(kept)]
            self._log(self.step(steps=("x",)))
            if callback is not None:
                callback(self)
        self._warn()
        return self

    def _warn(self) -> None:
        for message in self.warnings():
            warnings.warn(f"CAFE: {message}", RuntimeWarning, stacklevel=3)

    def _log(self, record: dict[str, float]) -> None:
        if self.iteration % 50 == 0 or self.iteration == 1:
            self.history.append(record)

    # ------------------------------------------------------------------ results
    def reconstruction(self) -> tuple[list[torch.Tensor], torch.Tensor]:
        """``(x_hat per party, y_hat logits)`` for every sample ID ``0..N-1``."""
        rows = self.row_of_sample
        return [x[rows].detach().cpu().clone() for x in self.X], self.Y[rows].detach().cpu().clone()

    def representation(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The recovered ``(V_hat, H_hat)`` per party, by sample ID."""
        rows = self.row_of_sample
        return ([v[rows].detach().cpu().clone() for v in self.V],
                [h[rows].detach().cpu().clone() for h in self.H])
