"""Model size and cost (parameter counts, multiply-accumulates) and SVD low-rank compression of
dense layers (section 2, the light variant's low-rank factorisation)."""

from __future__ import annotations

import torch
from torch import nn

from paperzoo.rsknet.layers import LowRankConv1x1, LowRankLinear, check_rank_shrinks


def count_params(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (buffers such as BN running statistics excluded)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def macs(model: nn.Module, inputs: torch.Tensor) -> int:
    """Multiply-accumulates of one forward pass (torch's FLOP counter / 2), in eval mode."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(inputs)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


def lowrank_sources(model: nn.Module) -> dict[str, str]:
    """``{module name: factors_from}`` of every low-rank layer: ``"trained"`` (built low rank and
    trained so) or ``"svd"`` (compressed from a dense layer by :func:`lowrank_from_dense`)."""
    return {name: module.factors_from for name, module in model.named_modules()
            if isinstance(module, LowRankLinear | LowRankConv1x1)}


def _choose_rank(singular: torch.Tensor, rank: int | str) -> int:
    if isinstance(rank, str):
        if not rank.startswith("energy:"):
            raise ValueError(f"rank must be an integer or 'energy:<fraction>', got {rank!r}")
        try:
            fraction = float(rank.split(":", 1)[1])
        except ValueError:
            raise ValueError(f"rank {rank!r}: expected 'energy:<fraction>'") from None
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"rank energy fraction must be in (0, 1], got {fraction}")
        energy = (singular**2).cumsum(0) / (singular**2).sum()
        return int((energy < fraction - 1e-12).sum().item()) + 1
    return int(rank)


def lowrank_from_dense(module: nn.Linear | nn.Conv2d, rank: int | str,
                       check_shrink: bool = True) -> LowRankLinear | LowRankConv1x1:
    """Truncated SVD ``W = U S V^T``: ``A = U_r S_r^(1/2)``, ``B = S_r^(1/2) V_r^T``.

    ``module`` is an ``nn.Linear`` or a 1x1 ``nn.Conv2d``; ``rank`` an int or ``"energy:0.95"``
    (smallest rank keeping that share of the squared singular values). A rank that does not
    shrink the layer is refused unless ``check_shrink=False``. The result's ``factors_from`` is
    ``"svd"`` (trained factors say ``"trained"``).
    """
    if isinstance(module, nn.Linear):
        weight = module.weight.detach()
    elif isinstance(module, nn.Conv2d) and module.kernel_size == (1, 1) and module.groups == 1 \
            and module.stride == (1, 1):
        weight = module.weight.detach()[:, :, 0, 0]
    else:
        raise ValueError(f"lowrank_from_dense takes nn.Linear or a 1x1 nn.Conv2d, got {module}")
    out_f, in_f = weight.shape
    u, s, vh = torch.linalg.svd(weight.double(), full_matrices=False)
    r = _choose_rank(s, rank)
    if not 1 <= r <= min(out_f, in_f):
        raise ValueError(f"rank {r} must be between 1 and min(m, n) = {min(out_f, in_f)}")
    if check_shrink:
        check_rank_shrinks(in_f, out_f, r)
    root = s[:r].sqrt()
    a = (u[:, :r] * root).to(weight.dtype)
    b = (root[:, None] * vh[:r]).to(weight.dtype)
    has_bias = module.bias is not None
    if isinstance(module, nn.Linear):
        layer = LowRankLinear.__new__(LowRankLinear)
        nn.Module.__init__(layer)
        layer.in_features, layer.out_features, layer.rank = in_f, out_f, r
        layer.first = nn.Linear(in_f, r, bias=False)
        layer.second = nn.Linear(r, out_f, bias=has_bias)
        layer.first.weight.data.copy_(b)
        layer.second.weight.data.copy_(a)
    else:
        layer = LowRankConv1x1.__new__(LowRankConv1x1)
        nn.Module.__init__(layer)
        layer.in_channels, layer.out_channels, layer.rank = in_f, out_f, r
        layer.first = nn.Conv2d(in_f, r, 1, bias=False)
        layer.second = nn.Conv2d(r, out_f, 1, bias=has_bias)
        layer.first.weight.data.copy_(b[:, :, None, None])
        layer.second.weight.data.copy_(a[:, :, None, None])
    if has_bias:
        layer.second.bias.data.copy_(module.bias.detach())
    layer.factors_from = "svd"
    return layer.to(module.weight.device)
