"""Stage 2a: structural pruning of the channels most responsible for the backdoor (spec 1.3).

Dependency groups: the inner channels of every diffusers ``ResnetBlock2D`` (``conv1`` outputs,
``time_emb_proj`` outputs, ``norm2`` affine, ``conv2`` inputs) form one group whose channels can
be removed without touching any other layer; pruning shrinks the four tensors (genuinely smaller
weights, saved with ``pruning.json``). The residual stream and skip concatenations, attention and
``conv_out`` are kept (a reduced set of the paper's torch-pruning groups; see the README).

Importance (Taylor, spec 1.3): gradients are summed over every t in ``[t_start, T-1]`` for one
clean batch and one fixed noise, ``I(c) = sum_{w in c} |w * dL/dw|`` averaged over the group's
layers and divided by the group mean. The clean loss is the DDPM loss; the backdoor loss feeds
``x_t = sqrt(ab) x0 + sqrt(1 - ab)(eps + tau)`` and asks for ``eps``. ``combine`` chooses what is
removed: ``bd_minus_clean`` (largest ``I_bd - I_clean``), ``sum`` (the authors' code) or ``bd_only``.
Baselines with the same per-group counts: ``RandomPruner``, ``MagnitudePruner``, ``CleanTaylorPruner``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from diffusers.models.resnet import ResnetBlock2D
from torch import nn

from paperzoo.diffcleanse.data import check_range
from paperzoo.diffcleanse.model import make_scheduler, unet_shape
from paperzoo.diffcleanse.triggers import check_trigger

__all__ = [
    "DiffCleansePruner",
    "RandomPruner",
    "MagnitudePruner",
    "CleanTaylorPruner",
    "PruneReport",
    "taylor_importance",
    "resnet_groups",
    "shrink_resnet",
    "pruning_plan",
    "apply_pruning_plan",
    "removal_counts",
    "COMBINES",
    "check_ratio",
]

COMBINES = ("bd_minus_clean", "sum", "bd_only")


def check_ratio(ratio: float, name: str = "ratio") -> float:
    if not isinstance(ratio, int | float) or not 0.0 < float(ratio) < 1.0:
        raise ValueError(f"{name} must be in (0, 1), got {ratio}")
    return float(ratio)


def resnet_groups(unet: nn.Module) -> dict[str, ResnetBlock2D]:
    """Every ResNet block by module name; each holds one prunable dependency group."""
    return {
        name: module for name, module in unet.named_modules() if isinstance(module, ResnetBlock2D)
    }


def _largest_divisor(width: int, at_most: int) -> int:
    return max(d for d in range(1, min(width, at_most) + 1) if width % d == 0)


def shrink_resnet(block: ResnetBlock2D, keep: torch.Tensor, groups: int | None = None) -> None:
    """Keep inner channels ``keep`` of ``block`` (weights copied); GroupNorm ``norm2`` gets the largest
    divisor of the new width not above its old group count (or ``groups``)."""
    keep = torch.as_tensor(keep, dtype=torch.long).sort().values
    width = len(keep)
    if width < 1:
        raise ValueError("a ResNet block must keep at least one inner channel")
    conv1, conv2, norm2 = block.conv1, block.conv2, block.norm2
    new_conv1 = nn.Conv2d(
        conv1.in_channels,
        width,
        conv1.kernel_size,
        conv1.stride,
        conv1.padding,
        bias=conv1.bias is not None,
    )
    new_conv2 = nn.Conv2d(
        width,
        conv2.out_channels,
        conv2.kernel_size,
        conv2.stride,
        conv2.padding,
        bias=conv2.bias is not None,
    )
    groups = groups or _largest_divisor(width, norm2.num_groups)
    if width % groups:
        raise ValueError(f"GroupNorm groups {groups} do not divide the pruned width {width}")
    new_norm2 = nn.GroupNorm(groups, width, eps=norm2.eps, affine=norm2.affine)
    with torch.no_grad():
        new_conv1.weight.copy_(conv1.weight[keep])
        if conv1.bias is not None:
            new_conv1.bias.copy_(conv1.bias[keep])
        new_conv2.weight.copy_(conv2.weight[:, keep])
        if conv2.bias is not None:
            new_conv2.bias.copy_(conv2.bias)
        if norm2.affine:
            new_norm2.weight.copy_(norm2.weight[keep])
            new_norm2.bias.copy_(norm2.bias[keep])
    block.conv1, block.conv2, block.norm2 = new_conv1, new_conv2, new_norm2
    if block.time_emb_proj is not None:
        proj = block.time_emb_proj
        if proj.out_features != conv1.out_channels:
            raise ValueError("time_emb_proj with scale-shift norm is not supported by the pruner")
        new_proj = nn.Linear(proj.in_features, width, bias=proj.bias is not None)
        with torch.no_grad():
            new_proj.weight.copy_(proj.weight[keep])
            if proj.bias is not None:
                new_proj.bias.copy_(proj.bias[keep])
        block.time_emb_proj = new_proj
    block.to(conv2.weight.device, conv2.weight.dtype)


def pruning_plan(unet: nn.Module) -> dict[str, Any]:
    """The shrunk blocks of ``unet`` (what ``pruning.json`` holds)."""
    blocks = [
        {
            "name": name,
            "inner": block.conv1.out_channels,
            "groups": block.norm2.num_groups,
            "original": block.out_channels,
        }
        for name, block in resnet_groups(unet).items()
        if block.conv1.out_channels != block.out_channels
    ]
    return {"format": "paperzoo-diffcleanse/resnet-inner/1", "blocks": blocks}


def apply_pruning_plan(unet: nn.Module, plan: dict[str, Any], source: str = "pruning plan") -> None:
    """Shrink a freshly built ``unet`` to the widths of ``plan`` (weights to be loaded after)."""
    groups = resnet_groups(unet)
    if not isinstance(plan, dict) or not isinstance(plan.get("blocks"), list):
        raise ValueError(f"{source}: expected an object with a 'blocks' list")
    for entry in plan["blocks"]:
        name = entry.get("name")
        if name not in groups:
            raise ValueError(f"{source}: block {name!r} is not a ResNet block of this UNet")
        inner, width = int(entry.get("inner", 0)), groups[name].conv1.out_channels
        if not 1 <= inner <= width:
            raise ValueError(f"{source}: block {name} inner width {inner} outside 1..{width}")
        shrink_resnet(groups[name], torch.arange(inner), int(entry.get("groups", 0)) or None)


def _group_scores(block: ResnetBlock2D, value) -> torch.Tensor:
    """Per inner channel: ``sum |value(w)|`` of each layer of the group, averaged over the layers."""
    parts = [
        value(block.conv1.weight).flatten(1).sum(1),
        value(block.conv2.weight).transpose(0, 1).flatten(1).sum(1),
    ]
    if block.conv1.bias is not None:
        parts.append(value(block.conv1.bias))
    if block.norm2.affine:
        parts += [value(block.norm2.weight), value(block.norm2.bias)]
    if block.time_emb_proj is not None:
        parts += [value(block.time_emb_proj.weight).sum(1), value(block.time_emb_proj.bias)]
    return torch.stack(parts).mean(0)


def _normalised(scores: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v / v.mean().clamp_min(1e-30) for k, v in scores.items()}


def taylor_importance(
    unet: nn.Module,
    x0: torch.Tensor,
    trigger: torch.Tensor | None = None,
    t_start: int = 900,
    seed: int = 0,
    chunk: int = 4,
) -> dict[str, torch.Tensor]:
    """``I(c)`` per ResNet group (spec 1.3): clean loss when ``trigger`` is None, else the backdoor
    loss with ``tau = trigger``; gradients summed over all t in ``[t_start, T-1]`` (``chunk`` timesteps
    per forward pass, the same sum), one fixed noise, weights unchanged."""
    sched = make_scheduler("ddpm")
    total = sched.config.num_train_timesteps
    if not isinstance(t_start, int) or not 0 <= t_start < total:
        raise ValueError(f"t_start must be in [0, {total}), got {t_start}")
    if x0.dim() != 4 or tuple(x0.shape[1:]) != unet_shape(unet):
        raise ValueError(
            f"clean batch x0 has shape {tuple(x0.shape)}, the model needs (B, {unet_shape(unet)})"
        )
    if len(x0) < 2:
        raise ValueError(f"the clean batch needs at least 2 images, got {len(x0)}")
    x0 = check_range(x0, -1.0, 1.0, "clean batch x0", "(model space)")
    device = next(unet.parameters()).device
    x0 = x0.to(device)
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed)).to(device)
    shift = (
        torch.zeros(unet_shape(unet), device=device)
        if trigger is None
        else check_trigger(trigger.cpu(), unet_shape(unet)).to(device)
    )
    ab_all = sched.alphas_cumprod.to(device)
    was_training = unet.training
    unet.eval()
    unet.zero_grad(set_to_none=True)
    steps = torch.arange(t_start, total)
    for ts in steps.split(chunk):
        t = ts.repeat_interleave(len(x0)).to(device)
        ab = ab_all[t].view(-1, 1, 1, 1)
        noise = eps.repeat(len(ts), 1, 1, 1)
        x_t = ab.sqrt() * x0.repeat(len(ts), 1, 1, 1) + (1 - ab).sqrt() * (noise + shift)
        per_t = F.mse_loss(unet(x_t, t).sample, noise, reduction="none").flatten(1).mean(1)
        per_t.view(len(ts), len(x0)).mean(1).sum().backward()
    scores = {
        name: _group_scores(block, lambda w: (w * w.grad).abs()).detach().cpu()
        for name, block in resnet_groups(unet).items()
    }
    unet.zero_grad(set_to_none=True)
    unet.train(was_training)
    return _normalised(scores)


def removal_counts(widths: dict[str, int], ratio: float) -> dict[str, int]:
    """Per group remove ``C - int(C (1 - r))`` channels (spec 1.3)."""
    check_ratio(ratio)
    return {name: c - int(c * (1 - ratio)) for name, c in widths.items()}


@dataclass
class PruneReport:
    """What a pruner removed: per group the removed channel indices, and the size change."""

    method: str
    ratio: float
    removed: dict[str, list[int]] = field(default_factory=dict)
    params_before: int = 0
    params_after: int = 0

    @property
    def channels_removed(self) -> int:
        return sum(len(v) for v in self.removed.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "ratio": self.ratio,
            "channels_removed": self.channels_removed,
            "params_before": self.params_before,
            "params_after": self.params_after,
            "removed": self.removed,
        }


class _ChannelPruner:
    """Shared ``prune``: score each group, remove the top ``removal_counts`` channels, shrink a copy."""

    method = "base"

    def __init__(self, ratio: float = 0.1, ratio_start: float = 0.0) -> None:
        self.ratio = check_ratio(ratio)
        if not 0.0 <= ratio_start < 1.0 or ratio_start + ratio > 1.0:
            raise ValueError(f"ratio_start must be in [0, 1 - ratio], got {ratio_start}")
        self.ratio_start = ratio_start

    def scores(
        self, unet: nn.Module, x0: torch.Tensor | None, trigger: torch.Tensor | None
    ) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def select(self, scores: dict[str, torch.Tensor]) -> dict[str, list[int]]:
        """The channels to remove: per group the highest scores after sparing ``ratio_start``."""
        counts = removal_counts({k: len(v) for k, v in scores.items()}, self.ratio)
        chosen = {}
        for name, score in scores.items():
            order = torch.argsort(score, descending=True, stable=True)
            skip = int(len(score) * self.ratio_start)
            chosen[name] = sorted(order[skip : skip + counts[name]].tolist())
        return chosen

    def prune(
        self, unet: nn.Module, x0: torch.Tensor | None = None, trigger: torch.Tensor | None = None
    ) -> tuple[nn.Module, PruneReport]:
        """A pruned copy of ``unet`` and the report; ``unet`` itself is unchanged."""
        scores = self.scores(unet, x0, trigger)
        removed = self.select(scores)
        pruned = copy.deepcopy(unet)
        groups = resnet_groups(pruned)
        for name, drop in removed.items():
            width = groups[name].conv1.out_channels
            keep = torch.tensor(sorted(set(range(width)) - set(drop)))
            shrink_resnet(groups[name], keep)
        report = PruneReport(
            self.method,
            self.ratio,
            removed,
            sum(p.numel() for p in unet.parameters()),
            sum(p.numel() for p in pruned.parameters()),
        )
        return pruned, report


class DiffCleansePruner(_ChannelPruner):
    """Diff-Cleanse pruning (spec 1.3) with the inverted trigger: Taylor importance of the backdoor
    loss against the clean loss, combined by ``combine``."""

    method = "diffcleanse"

    def __init__(
        self,
        ratio: float = 0.1,
        t_start: int = 900,
        batch: int = 64,
        combine: str = "bd_minus_clean",
        ratio_start: float = 0.0,
        prune_attention: str = "none",
        seed: int = 0,
    ) -> None:
        super().__init__(ratio, ratio_start)
        if combine not in COMBINES:
            raise ValueError(f"unknown combine {combine!r}; choose from {', '.join(COMBINES)}")
        if prune_attention != "none":
            raise ValueError(
                "prune_attention must be 'none' (attention widths are kept; whole-head pruning is not built)"
            )
        if batch < 2:
            raise ValueError(f"batch must be >= 2, got {batch}")
        if not isinstance(t_start, int) or not 0 <= t_start < 1000:
            raise ValueError(
                f"t_start must be in [0, 1000) (the training timesteps), got {t_start}"
            )
        self.t_start, self.batch, self.combine, self.seed = t_start, batch, combine, seed

    def scores(self, unet, x0, trigger):
        if trigger is None:
            raise ValueError("DiffCleansePruner needs the inverted trigger")
        if x0 is None:
            raise ValueError("DiffCleansePruner needs a clean batch x0")
        x0 = x0[: self.batch]
        backdoor = taylor_importance(unet, x0, trigger, self.t_start, self.seed)
        if self.combine == "bd_only":
            return backdoor
        clean = taylor_importance(unet, x0, None, self.t_start, self.seed)
        sign = -1.0 if self.combine == "bd_minus_clean" else 1.0
        return {k: backdoor[k] + sign * clean[k] for k in backdoor}


class CleanTaylorPruner(DiffCleansePruner):
    """Baseline: Taylor pruning from the clean loss alone, removing the least important channels
    (Diff-Pruning's criterion), same counts."""

    method = "clean_taylor"

    def __init__(
        self, ratio: float = 0.1, t_start: int = 900, batch: int = 64, seed: int = 0
    ) -> None:
        super().__init__(ratio, t_start, batch, "bd_only", 0.0, "none", seed)

    def scores(self, unet, x0, trigger):
        if x0 is None:
            raise ValueError("CleanTaylorPruner needs a clean batch x0")
        clean = taylor_importance(unet, x0[: self.batch], None, self.t_start, self.seed)
        return {k: -v for k, v in clean.items()}


class MagnitudePruner(_ChannelPruner):
    """Baseline: remove the channels of smallest weight magnitude (sum |w| over the group)."""

    method = "magnitude"

    def scores(self, unet, x0, trigger):
        return {
            name: -_group_scores(block, lambda w: w.detach().abs()).cpu()
            for name, block in resnet_groups(unet).items()
        }


class RandomPruner(_ChannelPruner):
    """Baseline: remove seeded random channels, same counts."""

    method = "random"

    def __init__(self, ratio: float = 0.1, seed: int = 0) -> None:
        super().__init__(ratio)
        self.seed = seed

    def scores(self, unet, x0, trigger):
        generator = torch.Generator().manual_seed(self.seed)
        return {
            name: torch.rand(block.conv1.out_channels, generator=generator)
            for name, block in resnet_groups(unet).items()
        }
