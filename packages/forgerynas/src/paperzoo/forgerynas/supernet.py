"""The search supernet: partial-channel mixed ops with edge normalisation (PC-DARTS), the
operation importance and pruning (EoiNAS), and genotype derivation (spec section 1).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from paperzoo.forgerynas.ops import FactorizedReduce, ReLUConvBN, build_op, space_ops
from paperzoo.forgerynas.search_space import Genotype

__all__ = [
    "PCMixedOp",
    "SearchCell",
    "Supernet",
    "OperationImportance",
    "prune",
    "derive_genotype",
    "derive_from_arrays",
    "channel_shuffle",
    "normalise_edges",
    "CELL_TYPES",
]

CELL_TYPES = ("normal", "reduce")


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet channel shuffle: ``(B, g * c, H, W)`` -> interleave the ``g`` groups."""
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


def check_partial_channels(C: int, K: int, what: str = "C") -> None:
    """C divisible by K and at least two channels per op (pitfall 8)."""
    if not isinstance(K, int) or K < 1:
        raise ValueError(f"partial-channel K must be a positive integer, got {K!r}")
    if C % K:
        raise ValueError(f"{what}={C} is not divisible by partial-channel K={K}")
    if C // K < 2:
        raise ValueError(
            f"{what}/K = {C}/{K} leaves {C // K} channel per op; partial channels need >= 2"
        )


class _Pruned(nn.Module):
    """Placeholder of a pruned op: holds nothing and is skipped."""


class PCMixedOp(nn.Module):
    """Edge (i, j): ``sum_o w_o o(x[:, :C/K])`` on a 1/K channel slice, the rest bypassing (2x2 max
    pool on stride-2 edges), then concat and a channel shuffle with K groups (spec "Partial channels")."""

    def __init__(
        self,
        C: int,
        stride: int,
        space: str = "forgery",
        K: int = 4,
        paper_bug_compat: bool = False,
    ) -> None:
        super().__init__()
        check_partial_channels(C, K)
        self.C, self.stride, self.K = C, stride, K
        self.op_names = space_ops(space)
        self.ops = nn.ModuleList(
            build_op(
                name, C // K, stride, affine=False, space=space, paper_bug_compat=paper_bug_compat
            )
            for name in self.op_names
        )
        self.bypass = nn.MaxPool2d(2, 2) if stride == 2 else nn.Identity()

    def prune(self, index: int) -> None:
        self.ops[index] = _Pruned()

    def mixed(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        out = None
        for w, op in zip(weights, self.ops):
            if isinstance(op, _Pruned):
                continue
            term = w * op(x)
            out = term if out is None else out + term
        return out

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.C:
            raise ValueError(f"PCMixedOp expects {self.C} channels, got {tuple(x.shape)}")
        part = self.C // self.K
        mixed = self.mixed(x[:, :part], weights)
        if self.K == 1:
            return mixed
        out = torch.cat([mixed, self.bypass(x[:, part:])], dim=1)
        return channel_shuffle(out, self.K)


def normalise_edges(betas: torch.Tensor, steps: int) -> torch.Tensor:
    """Edge normalisation: per node, softmax of beta over its ``2 + i`` incoming edges."""
    parts, start = [], 0
    for node in range(steps):
        end = start + node + 2
        parts.append(F.softmax(betas[start:end], dim=-1))
        start = end
    return torch.cat(parts)


def edge_count(steps: int) -> int:
    return sum(node + 2 for node in range(steps))


class SearchCell(nn.Module):
    """DARTS cell of the supernet: node ``i`` = ``sum_j beta_ij * mixed_ij(x_j)`` over both inputs
    and earlier nodes; output the concat of the last ``multiplier`` nodes."""

    def __init__(
        self,
        steps: int,
        multiplier: int,
        C_pp: int,
        C_p: int,
        C: int,
        reduction: bool,
        reduction_prev: bool,
        space: str,
        K: int,
        paper_bug_compat: bool = False,
    ) -> None:
        super().__init__()
        self.reduction, self.steps, self.multiplier = reduction, steps, multiplier
        self.preprocess0 = (
            FactorizedReduce(C_pp, C, affine=False)
            if reduction_prev
            else ReLUConvBN(C_pp, C, 1, 1, 0, affine=False)
        )
        self.preprocess1 = ReLUConvBN(C_p, C, 1, 1, 0, affine=False)
        self.edges = nn.ModuleList(
            PCMixedOp(C, 2 if reduction and j < 2 else 1, space, K, paper_bug_compat)
            for node in range(steps)
            for j in range(node + 2)
        )

    def forward(self, s0, s1, weights: torch.Tensor, edge_weights: torch.Tensor) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        offset = 0
        for _ in range(self.steps):
            node = sum(
                edge_weights[offset + j] * self.edges[offset + j](h, weights[offset + j])
                for j, h in enumerate(states)
            )
            offset += len(states)
            states.append(node)
        return torch.cat(states[-self.multiplier :], dim=1)


class Supernet(nn.Module):
    """The search network (spec "Partial channels"): stem conv to 3C, ``layers`` search cells with
    reductions at ``layers//2 - 1`` and ``layers - 1``, GAP, linear to ``num_classes``.

    Architecture parameters: ``alphas_<type>`` (edges x ops) and ``betas_<type>`` (edges), drawn
    as ``1e-3 N(0, 1)`` from ``seed``. Pruned ops are masked (``mask_<type>``, -inf logits).
    """

    def __init__(
        self,
        C: int = 8,
        layers: int = 5,
        steps: int = 3,
        K: int = 2,
        space: str = "forgery",
        num_classes: int = 2,
        stem_multiplier: int = 3,
        paper_bug_compat: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__()
        for name, value, low in (
            ("C", C, 2),
            ("layers", layers, 2),
            ("steps", steps, 1),
            ("num_classes", num_classes, 2),
        ):
            if not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        check_partial_channels(C, K)
        self.C, self.layers, self.steps, self.K, self.space = C, layers, steps, K, space
        self.op_names = space_ops(space)
        self.multiplier = steps
        self.reductions = (layers // 2 - 1, layers - 1)
        C_curr = stem_multiplier * C
        self.stem = nn.Sequential(
            nn.Conv2d(3, C_curr, 3, padding=1, bias=False), nn.BatchNorm2d(C_curr)
        )
        C_pp, C_p, C_curr = C_curr, C_curr, C
        self.cells = nn.ModuleList()
        reduction_prev = False
        for i in range(layers):
            reduction = i in self.reductions
            if reduction:
                C_curr *= 2
            self.cells.append(
                SearchCell(
                    steps,
                    self.multiplier,
                    C_pp,
                    C_p,
                    C_curr,
                    reduction,
                    reduction_prev,
                    space,
                    K,
                    paper_bug_compat,
                )
            )
            reduction_prev = reduction
            C_pp, C_p = C_p, self.multiplier * C_curr
        self.classifier = nn.Linear(C_p, num_classes)
        generator = torch.Generator().manual_seed(int(seed))
        n_edges, n_ops = edge_count(steps), len(self.op_names)
        for kind in CELL_TYPES:
            self.register_parameter(
                f"alphas_{kind}",
                nn.Parameter(1e-3 * torch.randn(n_edges, n_ops, generator=generator)),
            )
            self.register_parameter(
                f"betas_{kind}", nn.Parameter(1e-3 * torch.randn(n_edges, generator=generator))
            )
            self.register_buffer(f"mask_{kind}", torch.ones(n_edges, n_ops, dtype=torch.bool))

    # -- architecture parameters -------------------------------------------------------------
    def arch_parameters(self) -> list[nn.Parameter]:
        return [getattr(self, f"{p}_{k}") for k in CELL_TYPES for p in ("alphas", "betas")]

    def weight_parameters(self) -> list[nn.Parameter]:
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]

    def mask(self, kind: str) -> torch.Tensor:
        return getattr(self, f"mask_{kind}")

    def arch_weights(self, kind: str) -> torch.Tensor:
        """``softmax(alpha)`` per edge over the enabled ops (pruned ops get -inf logits)."""
        alphas = getattr(self, f"alphas_{kind}")
        return F.softmax(alphas.masked_fill(~self.mask(kind), float("-inf")), dim=-1)

    def edge_weights(self, kind: str) -> torch.Tensor:
        return normalise_edges(getattr(self, f"betas_{kind}"), self.steps)

    def argmax_edges(self) -> dict[str, list[str]]:
        """The arg-max op of every edge of both cell types."""
        return {
            kind: [self.op_names[i] for i in self.arch_weights(kind).argmax(-1).tolist()]
            for kind in CELL_TYPES
        }

    def prune_op(self, kind: str, edge: int, op: int) -> None:
        """Disable op ``op`` on edge ``edge`` of every ``kind`` cell and free its module."""
        self.mask(kind)[edge, op] = False
        for cell in self.cells:
            if (kind == "reduce") == cell.reduction:
                cell.edges[edge].prune(op)

    def check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"the supernet takes (batch, 3, H, W) images, got {tuple(x.shape)}")
        if min(x.shape[-2:]) < 8 or x.shape[-2] % 4 or x.shape[-1] % 4:
            raise ValueError(
                f"input {tuple(x.shape[-2:])} too small or not divisible by 4 for two reductions"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        weights = {kind: self.arch_weights(kind) for kind in CELL_TYPES}
        edges = {kind: self.edge_weights(kind) for kind in CELL_TYPES}
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            kind = "reduce" if cell.reduction else "normal"
            s0, s1 = s1, cell(s0, s1, weights[kind], edges[kind])
        return self.classifier(F.adaptive_avg_pool2d(s1, 1).flatten(1))


class OperationImportance:
    """``I(e, o) = softmax(alpha_e)_o + lambda_perf * Pbar(e, o)`` (spec "Importance", EoiNAS).

    ``Pbar`` is a true running mean of the performance P over the architecture steps in which
    ``o`` was edge ``e``'s arg-max (pitfall 9), cleared when ``o`` is pruned.
    """

    def __init__(self, n_edges: int, n_ops: int, lambda_perf: float = 0.5) -> None:
        if lambda_perf < 0:
            raise ValueError(f"lambda_perf must be >= 0, got {lambda_perf}")
        self.lambda_perf = float(lambda_perf)
        self.mean = {k: torch.zeros(n_edges, n_ops, dtype=torch.float64) for k in CELL_TYPES}
        self.count = {k: torch.zeros(n_edges, n_ops, dtype=torch.int64) for k in CELL_TYPES}

    def update(self, kind: str, weights: torch.Tensor, perf: float) -> None:
        """Record ``perf`` for each edge's arg-max op under ``weights`` (edges x ops)."""
        best = weights.detach().argmax(-1).cpu()
        rows = torch.arange(best.numel())
        self.count[kind][rows, best] += 1
        n = self.count[kind][rows, best].to(torch.float64)
        self.mean[kind][rows, best] += (float(perf) - self.mean[kind][rows, best]) / n

    def clear(self, kind: str, edge: int, op: int) -> None:
        self.mean[kind][edge, op] = 0.0
        self.count[kind][edge, op] = 0

    def scores(self, kind: str, weights: torch.Tensor) -> torch.Tensor:
        return weights.detach().cpu().to(torch.float64) + self.lambda_perf * self.mean[kind]

    def state(self) -> dict[str, list]:
        return {
            f"{k}_{n}": getattr(self, n)[k].tolist() for k in CELL_TYPES for n in ("mean", "count")
        }


def prune(supernet: Supernet, importance: OperationImportance) -> list[tuple[str, int, str]]:
    """Every edge loses its enabled op of lowest importance, never leaving only ``none``; the
    pruned op's statistics are cleared. Returns ``(cell type, edge, op)`` per pruned op."""
    none = supernet.op_names.index("none") if "none" in supernet.op_names else -1
    pruned = []
    for kind in CELL_TYPES:
        mask = supernet.mask(kind).cpu()
        scores = importance.scores(kind, supernet.arch_weights(kind))
        for edge in range(mask.shape[0]):
            candidates = mask[edge].clone()
            real = candidates.clone()
            if none >= 0:
                real[none] = False
            if int(real.sum()) <= 1:  # the last real op stays; only `none` may still go
                candidates &= ~real
            if int(candidates.sum()) == 0 or int(mask[edge].sum()) <= 1:
                continue
            op = int(scores[edge].masked_fill(~candidates, float("inf")).argmin())
            supernet.prune_op(kind, edge, op)
            importance.clear(kind, edge, op)
            pruned.append((kind, edge, supernet.op_names[op]))
    return pruned


def derive_from_arrays(
    space: str,
    steps: int,
    scores: Mapping[str, torch.Tensor],
    edge_weights: Mapping[str, torch.Tensor],
    masks: Mapping[str, torch.Tensor],
    op_names: Sequence[str],
) -> Genotype:
    """Per node the two incoming edges with the largest ``max_{o != none} s_o * softmax(beta)_edge``,
    each with its best enabled non-``none`` op (spec "Derivation")."""
    cells = {}
    for kind in CELL_TYPES:
        s = torch.as_tensor(scores[kind], dtype=torch.float64).clone()
        allowed = torch.as_tensor(masks[kind], dtype=torch.bool).clone()
        if "none" in op_names:
            allowed[:, list(op_names).index("none")] = False
        s = s.masked_fill(~allowed, float("-inf"))
        best_score, best_op = s.max(-1)
        strength = best_score * torch.as_tensor(edge_weights[kind], dtype=torch.float64)
        edges, start = [], 0
        for node in range(steps):
            end = start + node + 2
            top = torch.topk(strength[start:end], 2).indices.sort().values
            edges += [(op_names[int(best_op[start + j])], int(j)) for j in top]
            start = end
        cells[kind] = tuple(edges)
    return Genotype(cells["normal"], cells["reduce"], space=space, steps=steps)


def derive_genotype(
    supernet: Supernet, importance: OperationImportance | None = None, by: str = "importance"
) -> Genotype:
    """The genotype of a searched supernet; ``by`` = ``importance`` (default) or ``alpha``."""
    if by not in ("importance", "alpha"):
        raise ValueError(f"derive by must be 'importance' or 'alpha', got {by!r}")
    if by == "importance" and importance is None:
        raise ValueError("derive by importance needs the OperationImportance of the search")
    with torch.no_grad():
        weights = {k: supernet.arch_weights(k) for k in CELL_TYPES}
        scores = {
            k: importance.scores(k, weights[k]) if by == "importance" else weights[k]
            for k in CELL_TYPES
        }
        edges = {k: supernet.edge_weights(k).cpu() for k in CELL_TYPES}
    masks = {k: supernet.mask(k).cpu() for k in CELL_TYPES}
    return derive_from_arrays(
        supernet.space, supernet.steps, scores, edges, masks, supernet.op_names
    )


def saved_activation_bytes(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> int:
    """Bytes autograd saves for backward in one forward/backward of ``model`` (spec V5), counted
    with ``saved_tensors_hooks`` (each storage once)."""
    seen: dict[int, int] = {}

    def pack(tensor: torch.Tensor):
        storage = tensor.untyped_storage()
        seen.setdefault(storage.data_ptr(), storage.nbytes())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = F.cross_entropy(model(images), labels)
    loss.backward()
    model.zero_grad(set_to_none=True)
    return int(sum(seen.values()))
