"""Plain torch models of VAFL (no Lightning): the clients' local embedding networks and the
server's head (Chen et al. 2020, section 2: ``h_m(theta_m; x_{n,m})`` and ``theta_0``).

Presets are data, timm-style: :func:`create_model` builds the whole vertical model (one
:class:`LocalEmbedding` per party plus a head) from a named preset, :func:`list_models` lists them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from paperzoo.core.registry import Registry
from paperzoo.vafl.config import MODEL_PRESETS

EMBEDDING_KINDS = ("mlp", "linear", "cnn")


class LocalEmbedding(nn.Module):
    """Client m's local model ``h_m(theta_m; x)``: a low-dimensional local embedding (section 2).

    ``kind="mlp"``: flatten, one hidden layer of ``hidden`` units (ReLU), linear to ``embed_dim``.
    ``kind="linear"``: flatten, one linear map (the convex case uses ``embed_dim=1, bias=False``).
    ``kind="cnn"``: for image blocks ``(batch, channels, height, width)``; ``in_dim`` is the
    channel count; two 3x3 convolutions, global average pooling, linear to ``embed_dim``.
    """

    def __init__(self, in_dim: int, embed_dim: int, hidden: int = 16, kind: str = "mlp",
                 bias: bool = True) -> None:
        super().__init__()
        if kind not in EMBEDDING_KINDS:
            raise ValueError(f"unknown embedding kind {kind!r}; choose from {', '.join(EMBEDDING_KINDS)}")
        if in_dim < 1 or embed_dim < 1 or hidden < 1:
            raise ValueError(f"in_dim, embed_dim and hidden must be positive, got {in_dim}, {embed_dim}, {hidden}")
        self.in_dim, self.embed_dim, self.kind = in_dim, embed_dim, kind
        if kind == "mlp":
            self.net = nn.Sequential(nn.Flatten(), nn.Linear(in_dim, hidden), nn.ReLU(),
                                     nn.Linear(hidden, embed_dim))
        elif kind == "linear":
            self.net = nn.Sequential(nn.Flatten(), nn.Linear(in_dim, embed_dim, bias=bias))
        else:
            self.net = nn.Sequential(
                nn.Conv2d(in_dim, hidden, 3, padding=1), nn.ReLU(),
                nn.Conv2d(hidden, hidden, 3, padding=1), nn.ReLU(),
                nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(hidden, embed_dim),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "cnn" and x.dim() != 4:
            raise ValueError(f"cnn embedding needs (batch, channels, height, width), got {tuple(x.shape)}")
        return self.net(x)


class ServerHead(nn.Module):
    """The server model ``theta_0``: the concatenated embeddings ``(batch, parties * embed_dim)``
    to class logits, through one hidden layer (``hidden=0``: a linear head)."""

    def __init__(self, in_dim: int, classes: int, hidden: int = 16) -> None:
        super().__init__()
        if in_dim < 1 or classes < 2:
            raise ValueError(f"ServerHead needs in_dim >= 1 and classes >= 2, got {in_dim}, {classes}")
        if hidden > 0:
            self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, classes))
        else:
            self.net = nn.Linear(in_dim, classes)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.net(embeddings)


class SumHead(nn.Module):
    """The linear (convex) case: the sum of the parties' scalar embeddings plus a bias.

    Input ``(batch, parties)``; output one logit per sample ``(batch,)``.
    """

    def __init__(self, parties: int) -> None:
        super().__init__()
        self.parties = parties
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return embeddings.sum(dim=-1) + self.bias


@dataclass(frozen=True)
class VerticalModelConfig:
    """Sizes of one vertical model: every party's embedding network and the server head."""

    embed_dim: int = 8
    hidden: int = 16
    head_hidden: int = 16
    kind: str = "mlp"


class VerticalModel(nn.Module):
    """Every party's :class:`LocalEmbedding` plus the server head, as one module.

    Used as the centralised reference ("one model of the same total size") and as the factory of
    the parts a VAFL run distributes to clients and server. ``forward`` takes the parties' blocks.
    """

    def __init__(self, in_dims: Sequence[int], classes: int, config: VerticalModelConfig) -> None:
        super().__init__()
        self.config = config
        self.in_dims = [int(d) for d in in_dims]
        bias = config.kind != "linear"
        self.locals = nn.ModuleList(
            LocalEmbedding(d, config.embed_dim, config.hidden, config.kind, bias=bias) for d in self.in_dims
        )
        if config.kind == "linear":
            if config.embed_dim != 1:
                raise ValueError("the linear preset needs embed_dim=1 (scalar embeddings summed)")
            self.head: nn.Module = SumHead(len(self.in_dims))
        else:
            self.head = ServerHead(len(self.in_dims) * config.embed_dim, classes, config.head_hidden)

    def forward(self, parts: Sequence[torch.Tensor]) -> torch.Tensor:
        if len(parts) != len(self.locals):
            raise ValueError(f"expected {len(self.locals)} party blocks, got {len(parts)}")
        return self.head(torch.cat([net(x) for net, x in zip(self.locals, parts)], dim=-1))


def _vertical_model(in_dims: Sequence[int], classes: int, embed_dim: int = 8, hidden: int = 16,
                    head_hidden: int = 16, kind: str = "mlp") -> VerticalModel:
    return VerticalModel(in_dims, classes, VerticalModelConfig(embed_dim, hidden, head_hidden, kind))


MODELS = Registry("model")
for _name, _sizes in MODEL_PRESETS.items():
    MODELS.add(_name, _vertical_model, **_sizes)

#: ``create_model(name, in_dims=[...], classes=K, **overrides)``: the vertical model of preset
#: ``name`` for parties with blocks of ``in_dims`` features; ``overrides`` (``embed_dim``,
#: ``hidden``, ``head_hidden``, ``kind``) replace the preset's sizes.
create_model = MODELS.create
list_models = MODELS.names
