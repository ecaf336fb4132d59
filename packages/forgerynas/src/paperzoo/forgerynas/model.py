"""Detectors as plain ``torch.nn`` modules (no Lightning), built from named presets.

- :class:`CascadedPyramidNet`: the evaluation net of a genotype (spec "Evaluation net"): stem
  conv (stride 1) to 3C, ``layers`` cells with reductions at the end of each quarter, channels
  doubling, GAP, linear; drop-path in training only.
- :class:`HandCNN`: 4 conv-BN-ReLU blocks, the first at full resolution (baseline).
- :class:`TimmNet`: timm ``resnet10t`` without weights (baseline), inputs nearest-upsampled to
  64x64 because timm stems divide the resolution by 4.
- :class:`Supernet` presets ``supernet_tiny`` / ``supernet_paper``.

``create_model(name, **overrides)`` / ``list_models()``; explicit overrides beat the preset.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from paperzoo.core.registry import Registry
from paperzoo.forgerynas.ops import FactorizedReduce, ReLUConvBN, build_op
from paperzoo.forgerynas.search_space import Genotype, resolve_genotype
from paperzoo.forgerynas.supernet import Supernet

__all__ = [
    "EvalCell",
    "CascadedPyramidNet",
    "HandCNN",
    "TimmNet",
    "create_model",
    "list_models",
    "MODELS",
    "drop_path",
    "count_parameters",
]


def drop_path(x: torch.Tensor, prob: float, training: bool) -> torch.Tensor:
    """Drop a whole path per sample with probability ``prob`` (training only, pitfall 10)."""
    if not training or prob <= 0.0:
        return x
    keep = torch.empty(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype).bernoulli_(1.0 - prob)
    return x / (1.0 - prob) * keep


class EvalCell(nn.Module):
    """A derived cell: node ``i`` sums its two genotype edges."""

    def __init__(
        self,
        genotype: Genotype,
        C_pp: int,
        C_p: int,
        C: int,
        reduction: bool,
        reduction_prev: bool,
        paper_bug_compat: bool = False,
    ) -> None:
        super().__init__()
        self.reduction = reduction
        self.preprocess0 = (
            FactorizedReduce(C_pp, C) if reduction_prev else ReLUConvBN(C_pp, C, 1, 1, 0)
        )
        self.preprocess1 = ReLUConvBN(C_p, C, 1, 1, 0)
        edges = genotype.reduce if reduction else genotype.normal
        self.concat = genotype.reduce_concat if reduction else genotype.normal_concat
        self.steps = genotype.steps
        self.inputs = [index for _, index in edges]
        self.ops = nn.ModuleList(
            build_op(
                op,
                C,
                2 if reduction and index < 2 else 1,
                affine=True,
                space=genotype.space,
                paper_bug_compat=paper_bug_compat,
            )
            for op, index in edges
        )
        self.identity = [isinstance(op, nn.Identity) for op in self.ops]
        self.multiplier = len(self.concat)

    def forward(self, s0, s1, drop_prob: float = 0.0) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for node in range(self.steps):
            total = 0
            for k in (2 * node, 2 * node + 1):
                h = self.ops[k](states[self.inputs[k]])
                if not self.identity[k]:
                    h = drop_path(h, drop_prob, self.training)
                total = total + h
            states.append(total)
        return torch.cat([states[i] for i in self.concat], dim=1)


class CascadedPyramidNet(nn.Module):
    """The evaluation network: four-stage pyramid of a genotype's cells (spec "Evaluation net")."""

    def __init__(
        self,
        genotype: str | Genotype = "paper-cross",
        C: int = 12,
        layers: int = 8,
        drop_path: float = 0.0,
        num_classes: int = 2,
        stem_multiplier: int = 3,
        paper_bug_compat: bool = False,
    ) -> None:
        super().__init__()
        self.genotype = resolve_genotype(genotype)
        if not isinstance(layers, int) or layers < 4:
            raise ValueError(f"layers must be an integer >= 4 (four reductions), got {layers!r}")
        if not isinstance(C, int) or C < 2 or C % 2:
            raise ValueError(f"C must be an even integer >= 2, got {C!r}")
        if not 0.0 <= drop_path < 1.0:
            raise ValueError(f"drop_path must lie in [0, 1), got {drop_path}")
        # drop_path is the final probability; ``drop_prob`` is the one in use, ramped linearly
        # from 0 over the epochs by the retraining (``set_drop_path_progress``, as DARTS does)
        self.drop_path = float(drop_path)
        self.drop_prob = float(drop_path)
        self.reductions = tuple(sorted({layers * q // 4 - 1 for q in (1, 2, 3, 4)}))
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
            cell = EvalCell(
                self.genotype, C_pp, C_p, C_curr, reduction, reduction_prev, paper_bug_compat
            )
            self.cells.append(cell)
            reduction_prev = reduction
            C_pp, C_p = C_p, cell.multiplier * C_curr
        self.classifier = nn.Linear(C_p, num_classes)

    def set_drop_path_progress(self, fraction: float) -> float:
        """Use ``drop_path * fraction`` (DARTS ``train.py``: ``drop_path_prob * epoch / epochs``);
        returns the probability now in use."""
        self.drop_prob = self.drop_path * min(max(float(fraction), 0.0), 1.0)
        return self.drop_prob

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The stem output and every reduction cell's output (the pyramid)."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"the network takes (batch, 3, H, W) images, got {tuple(x.shape)}")
        if min(x.shape[-2:]) < 16 or x.shape[-2] % 16 or x.shape[-1] % 16:
            raise ValueError(
                f"input {tuple(x.shape[-2:])} too small for four reductions "
                "(height and width must be multiples of 16)"
            )
        s0 = s1 = self.stem(x)
        pyramid = [s1]
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, self.drop_prob)
            if cell.reduction:
                pyramid.append(s1)
        return pyramid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(F.adaptive_avg_pool2d(self.features(x)[-1], 1).flatten(1))


class HandCNN(nn.Module):
    """Hand-designed baseline: 4 conv-BN-ReLU blocks (the first at full resolution, then stride 2),
    GAP, linear."""

    def __init__(self, C: int = 16, num_classes: int = 2) -> None:
        super().__init__()
        if not isinstance(C, int) or C < 1:
            raise ValueError(f"C must be a positive integer, got {C!r}")
        widths = [C, 2 * C, 4 * C, 8 * C]
        blocks, c_in = [], 3
        for i, width in enumerate(widths):
            blocks += [
                nn.Conv2d(c_in, width, 3, 1 if i == 0 else 2, 1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            ]
            c_in = width
        self.body = nn.Sequential(*blocks)
        self.classifier = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(F.adaptive_avg_pool2d(self.body(x), 1).flatten(1))


class TimmNet(nn.Module):
    """A timm network without pretrained weights (``resnet10t``), optional local weights file."""

    def __init__(
        self,
        arch: str = "resnet10t",
        input_size: int = 64,
        num_classes: int = 2,
        weights: str | None = None,
    ) -> None:
        super().__init__()
        import timm

        self.input_size = int(input_size)
        self.net = timm.create_model(arch, pretrained=False, num_classes=num_classes)
        if weights:
            from paperzoo.core.checkpoint import load_state_dict

            if not Path(weights).is_file():
                raise FileNotFoundError(f"timm weights file not found: {weights}")
            state = {k: v for k, v in load_state_dict(weights).items() if not k.startswith("fc.")}
            expected = self.net.state_dict()
            for key, tensor in state.items():
                if key in expected and tuple(tensor.shape) != tuple(expected[key].shape):
                    raise ValueError(
                        f"{weights}: key {key!r} has shape {tuple(tensor.shape)}, timm {arch} "
                        f"expects {tuple(expected[key].shape)} (weights of another model?)"
                    )
            # strict=False: the classifier (fc.*) is new; but a file sharing no key with the
            # network would leave it random, silently (counted on the keys: load_state_dict does
            # not report a missing BatchNorm num_batches_tracked)
            if not set(state) & set(expected):
                missing = len(expected) - sum(k.startswith("fc.") for k in expected)
                raise ValueError(
                    f"{weights}: no key matches timm {arch} ({missing} of its keys missing from "
                    f"the file, classifier aside; {len(state)} unexpected keys in it; weights of "
                    "another model?)"
                )
            self.net.load_state_dict(state, strict=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="nearest")
        return self.net(x)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


MODELS = Registry("model")
MODELS.add("tiny", CascadedPyramidNet, genotype="paper-cross", C=12, layers=8, drop_path=0.0)
MODELS.add("paper", CascadedPyramidNet, genotype="paper-cross", C=36, layers=12, drop_path=0.2)
MODELS.add("hand_cnn", HandCNN, C=16)
MODELS.add("timm_resnet10t", TimmNet, arch="resnet10t", input_size=64)
MODELS.add("supernet_tiny", Supernet, C=8, layers=5, steps=3, K=2, space="forgery")
MODELS.add("supernet_paper", Supernet, C=16, layers=8, steps=4, K=4, space="forgery")
create_model = MODELS.create
list_models = MODELS.names
