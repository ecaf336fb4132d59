"""Speaker-embedding networks as plain ``nn.Module``s, built from named presets (section 2).

Every model maps log-mel features ``(B, F, T)`` to embeddings ``(B, E)`` and exposes
``feat_dim``, ``emb_dim`` and ``min_frames`` (the shortest input whose pooled stages still see
8 frames). Names are ``<arch>_<tiny|paper>``:

- ``rsknet_mtsp``: RSKBlocks + MTSP over stages 1-3 (the method);
- ``rsknet_mtsp_l``: the light variant: depthwise separable convs, low-rank pointwise convs;
- ``resnet_tstp``: thin ResNet-34 with plain statistics pooling of the last stage (baseline);
- ``xvector``: the TDNN x-vector (baseline);
- ``rsknet_tstp``, ``resnet_mtsp``: the ablations (one of the two ideas each).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from paperzoo.core.registry import Registry
from paperzoo.rsknet.layers import MTSP, BasicBlock, LowRankLinear, RSKBlock


class EmbeddingHead(nn.Module):
    """``Linear(D, E)`` (or low-rank with ``fc_rank``) -> ``BatchNorm1d(E, affine=False)``."""

    def __init__(self, in_dim: int, emb_dim: int, fc_rank: int | None = None) -> None:
        super().__init__()
        self.fc = nn.Linear(in_dim, emb_dim) if fc_rank is None else LowRankLinear(in_dim, emb_dim, fc_rank)
        self.bn = nn.BatchNorm1d(emb_dim, affine=False)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.bn(self.fc(pooled))


def _check_input(x: torch.Tensor, feat_dim: int, min_frames: int) -> None:
    if x.dim() != 3:
        raise ValueError(f"speaker models take (batch, features, frames) input, got rank {x.dim()} "
                         f"shape {tuple(x.shape)}")
    if x.shape[1] != feat_dim:
        raise ValueError(f"input has {x.shape[1]} feature bins, the model expects feat_dim={feat_dim}")
    if x.shape[2] < min_frames:
        raise ValueError(f"input has {x.shape[2]} frames, fewer than the model's min_frames={min_frames}")


class SpeakerResNet(nn.Module):
    """2-D residual speaker network: stem -> 4 stages -> statistics pooling -> embedding.

    ``block="rsk"`` uses :class:`RSKBlock` (RSKNet), ``"basic"`` the thin ResNet's basic block.
    ``pool_stages=(1, 2, 3)`` is MTSP, ``(3,)`` is TSTP. ``separable`` and ``pw_rank`` give the
    light variant; ``fc_rank`` factorises the embedding layer.
    """

    def __init__(self, feat_dim: int = 80, widths: Sequence[int] = (32, 64, 128, 256),
                 blocks: Sequence[int] = (3, 4, 6, 3), emb_dim: int = 256, block: str = "rsk",
                 pool_stages: Sequence[int] = (1, 2, 3), pool_mode: str = "stages",
                 stage_proj_dim: int | None = None, sk_on: str = "second",
                 dilations: Sequence[Sequence[int]] = ((1, 1), (2, 2)), reduction: int = 16,
                 min_dim: int = 32, separable: bool = False, pw_rank: int | str | None = None,
                 fc_rank: int | None = None) -> None:
        super().__init__()
        widths, blocks = [int(w) for w in widths], [int(b) for b in blocks]
        if feat_dim < 8:
            raise ValueError(f"feat_dim must be >= 8, got {feat_dim}")
        if len(widths) != len(blocks) or not widths:
            raise ValueError(f"widths {widths} and blocks {blocks} must be non-empty and equally long")
        if min(widths) < 1 or min(blocks) < 1:
            raise ValueError(f"widths and blocks must be positive, got {widths}, {blocks}")
        if emb_dim < 1:
            raise ValueError(f"emb_dim must be positive, got {emb_dim}")
        if block not in ("rsk", "basic"):
            raise ValueError(f"block must be 'rsk' or 'basic', got {block!r}")
        self.feat_dim, self.emb_dim = feat_dim, emb_dim
        self.stem = nn.Sequential(nn.Conv2d(1, widths[0], 3, padding=1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))
        self.stages = nn.ModuleList()
        in_ch, freq, shapes = widths[0], feat_dim, []
        for index, (width, count) in enumerate(zip(widths, blocks)):
            stage = []
            for j in range(count):
                stride = 2 if (index > 0 and j == 0) else 1
                if block == "rsk":
                    stage.append(RSKBlock(in_ch, width, stride, sk_on=sk_on, separable=separable,
                                          pw_rank=pw_rank, dilations=dilations, reduction=reduction,
                                          min_dim=min_dim))
                else:
                    stage.append(BasicBlock(in_ch, width, stride, separable=separable, pw_rank=pw_rank))
                in_ch = width
            freq = freq if index == 0 else (freq + 1) // 2
            shapes.append((width, freq))
            self.stages.append(nn.Sequential(*stage))
        self.stage_shapes = shapes
        self.pool = MTSP(shapes, pool_stages, mode=pool_mode, stage_proj_dim=stage_proj_dim)
        self.head = EmbeddingHead(self.pool.out_dim, emb_dim, fc_rank)
        segments = 4 if pool_mode == "pyramid" else 1
        self.min_frames = 8 * segments * 2 ** max(self.pool.stages)

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        _check_input(x, self.feat_dim, self.min_frames)
        out = self.stem(x.unsqueeze(1))
        maps = []
        for stage in self.stages:
            out = stage(out)
            maps.append(out)
        return maps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.forward_stages(x)))


class XVector(nn.Module):
    """The x-vector TDNN (Snyder et al. 2018): five Conv1d layers (kernels 5,3,3,1,1, dilations
    1,2,3,1,1) with ReLU + BN, mean/std pooling, embedding layer (baseline of section 2)."""

    def __init__(self, feat_dim: int = 80, channels: int = 512, pool_channels: int = 1500,
                 emb_dim: int = 512) -> None:
        super().__init__()
        if min(feat_dim, channels, pool_channels, emb_dim) < 1:
            raise ValueError(f"xvector sizes must be positive: feat_dim={feat_dim}, channels={channels}, "
                             f"pool_channels={pool_channels}, emb_dim={emb_dim}")
        self.feat_dim, self.emb_dim = feat_dim, emb_dim
        kernels, dilations = (5, 3, 3, 1, 1), (1, 2, 3, 1, 1)
        sizes = [feat_dim, channels, channels, channels, channels, pool_channels]
        layers: list[nn.Module] = []
        for i, (k, d) in enumerate(zip(kernels, dilations)):
            layers += [nn.Conv1d(sizes[i], sizes[i + 1], k, dilation=d), nn.ReLU(inplace=True),
                       nn.BatchNorm1d(sizes[i + 1])]
        self.frames = nn.Sequential(*layers)
        context = sum((k - 1) * d for k, d in zip(kernels, dilations))
        self.min_frames = context + 8
        self.head = EmbeddingHead(2 * pool_channels, emb_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from paperzoo.rsknet.layers import _stats

        _check_input(x, self.feat_dim, self.min_frames)
        return self.head(_stats(self.frames(x), 1e-5))


MODELS = Registry("model")
create_model = MODELS.create
list_models = MODELS.names

ARCHS = ("rsknet_mtsp", "rsknet_mtsp_l", "resnet_tstp", "xvector", "rsknet_tstp", "resnet_mtsp")
_PAPER = dict(feat_dim=80, widths=(32, 64, 128, 256), blocks=(3, 4, 6, 3), emb_dim=256)
_TINY = dict(feat_dim=40, widths=(8, 16, 32, 64), blocks=(1, 1, 1, 1), emb_dim=64)
# the spec names 12-24-48-96 "within 10 % of tiny rsknet_mtsp"; that is -10.2 %, 13-26-52-104 is +3.2 %
_TINY_RESNET = dict(_TINY, widths=(13, 26, 52, 104))
_MTSP, _TSTP = dict(pool_stages=(1, 2, 3)), dict(pool_stages=(3,))
_LIGHT = dict(block="rsk", separable=True, pw_rank="auto")

for _size, _base, _resnet in (("paper", _PAPER, _PAPER), ("tiny", _TINY, _TINY_RESNET)):
    MODELS.add(f"rsknet_mtsp_{_size}", SpeakerResNet, **_base, block="rsk", **_MTSP)
    MODELS.add(f"rsknet_mtsp_l_{_size}", SpeakerResNet, **_base, **_LIGHT, **_MTSP)
    MODELS.add(f"resnet_tstp_{_size}", SpeakerResNet, **_resnet, block="basic", **_TSTP)
    MODELS.add(f"rsknet_tstp_{_size}", SpeakerResNet, **_base, block="rsk", **_TSTP)
    MODELS.add(f"resnet_mtsp_{_size}", SpeakerResNet, **_base, block="basic", **_MTSP)
MODELS.add("xvector_paper", XVector, feat_dim=80, channels=512, pool_channels=1500, emb_dim=512)
MODELS.add("xvector_tiny", XVector, feat_dim=40, channels=128, pool_channels=192, emb_dim=64)


def arch_of(name: str) -> str:
    """``rsknet_mtsp_l_tiny`` -> ``rsknet_mtsp_l``."""
    return name.rsplit("_", 1)[0]
