"""The vertical FL model of CAFE (paper Sec. 3, Fig. 1): one ``LocalNet`` per party and a
``ServerHead`` on the concatenated party outputs. Plain torch, no Lightning.

Every ``LocalNet`` is split at its first fully connected layer (paper Sec. 4.1):
``H = features(x)`` (the extractor output, ``d1`` wide) and ``u = first_fc(H) = W H + b``
(``d2`` wide). CAFE's Steps I and II read exactly the gradients of ``first_fc``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from paperzoo.core.registry import Registry

FIRST_FC_WEIGHT = "first_fc.weight"
FIRST_FC_BIAS = "first_fc.bias"


class LocalNet(nn.Module):
    """A party's local model: convolutional extractor ``g_m``, first FC layer, then an MLP.

    Args:
        part_shape: ``(C, H, W)`` of the party's block of each sample; any shape (``(D,)`` for
            tabular columns) when there are no conv blocks.
        conv_channels: output channels of each conv block (conv, ReLU, optional max-pool); empty:
            ``H`` is the flattened block itself.
        kernel_size: conv kernel (padding keeps the spatial size).
        pool: 2 x 2 max-pool (ceil mode, as TF's ``same``) after each conv block.
        fc_dims: widths of the FC layers; the first is ``d2`` (the ``first_fc`` layer), the last
            is the party's output width sent to the server.
        first_fc_bias: CAFE needs the bias (Sec. 4.1); ``False`` exists to test that it says so.
    """

    def __init__(
        self,
        part_shape: Sequence[int],
        conv_channels: Sequence[int] = (8,),
        kernel_size: int = 3,
        pool: bool = False,
        fc_dims: Sequence[int] = (64, 10),
        first_fc_bias: bool = True,
    ) -> None:
        super().__init__()
        if conv_channels and len(part_shape) != 3:
            raise ValueError(f"part_shape must be (C, H, W) for a convolutional party, got {tuple(part_shape)}")
        if not part_shape:
            raise ValueError("part_shape must name the shape of one sample's block")
        if len(fc_dims) < 1:
            raise ValueError("fc_dims needs at least the first FC layer's width")
        self.part_shape = tuple(int(s) for s in part_shape)
        layers: list[nn.Module] = []
        channels = self.part_shape[0]
        for out_channels in conv_channels:
            layers += [nn.Conv2d(channels, out_channels, kernel_size, padding=kernel_size // 2), nn.ReLU()]
            if pool:
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            channels = out_channels
        layers.append(nn.Flatten())
        self.features_net = nn.Sequential(*layers)
        with torch.no_grad():
            self.d1 = int(self.features_net(torch.zeros(1, *self.part_shape)).shape[1])
        self.d2 = int(fc_dims[0])
        self.first_fc = nn.Linear(self.d1, self.d2, bias=first_fc_bias)
        rest: list[nn.Module] = []
        width = self.d2
        for dim in fc_dims[1:]:
            rest += [nn.ReLU(), nn.Linear(width, int(dim))]
            width = int(dim)
        self.rest = nn.Sequential(*rest)
        self.out_dim = width

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``H = g_m(x_m)``: the flattened extractor output, ``(batch, d1)``."""
        return self.features_net(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rest(self.first_fc(self.features(x)))


class ServerHead(nn.Module):
    """The server's layer on the concatenated party outputs; returns logits.

    ``double_softmax=True`` reproduces the official code's defect (a softmax here, then softmax
    cross-entropy in the loss), which shrinks every gradient; off by default.
    """

    def __init__(self, in_dim: int, classes: int, double_softmax: bool = False) -> None:
        super().__init__()
        self.linear = nn.Linear(in_dim, classes)
        self.double_softmax = double_softmax

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out = self.linear(z)
        return F.softmax(out, dim=1) if self.double_softmax else out


class VFLModel(nn.Module):
    """All parties' local models plus the server head: ``parts -> logits``."""

    def __init__(self, parties: Sequence[LocalNet], head: ServerHead) -> None:
        super().__init__()
        self.parties = nn.ModuleList(parties)
        self.head = head

    @property
    def num_parties(self) -> int:
        return len(self.parties)

    def forward(self, parts: Sequence[torch.Tensor], return_features: bool = False) -> Any:
        if len(parts) != len(self.parties):
            raise ValueError(f"got {len(parts)} feature blocks for {len(self.parties)} parties")
        features = [party.features(x) for party, x in zip(self.parties, parts)]
        outputs = [party.rest(party.first_fc(h)) for party, h in zip(self.parties, features)]
        logits = self.head(torch.cat(outputs, dim=1))
        return (logits, features) if return_features else logits

    def party_parameter_names(self, m: int) -> list[str]:
        return [name for name, _ in self.parties[m].named_parameters()]


def build_vfl_model(
    num_parties: int = 4,
    classes: int = 10,
    part_shape: Sequence[int] = (1, 4, 4),
    part_shapes: Sequence[Sequence[int]] | None = None,
    conv_channels: Sequence[int] = (8,),
    kernel_size: int = 3,
    pool: bool = False,
    fc_dims: Sequence[int] = (64, 10),
    first_fc_bias: bool = True,
    double_softmax: bool = False,
    seed: int | None = None,
) -> VFLModel:
    """One :class:`LocalNet` per party and a :class:`ServerHead`. ``part_shapes`` gives each
    party its own block shape (tabular columns rarely split evenly); otherwise every party
    holds a ``part_shape`` block. ``seed`` fixes the initial weights without touching torch's
    global generator."""
    if num_parties < 1:
        raise ValueError(f"num_parties must be >= 1, got {num_parties}")
    shapes = [tuple(s) for s in part_shapes] if part_shapes is not None else [tuple(part_shape)] * num_parties
    if len(shapes) != num_parties:
        raise ValueError(f"got {len(shapes)} part shapes for {num_parties} parties")
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        parties = [LocalNet(shape, conv_channels=conv_channels, kernel_size=kernel_size, pool=pool,
                            fc_dims=fc_dims, first_fc_bias=first_fc_bias) for shape in shapes]
        head = ServerHead(sum(p.out_dim for p in parties), classes, double_softmax=double_softmax)
    return VFLModel(parties, head)


# Presets as data (timm-style), through the core's registry: explicit arguments override them.
# ``part_shape`` is the default block of one party.
MODELS = Registry("model")
MODELS.add("tiny_digits", build_vfl_model, part_shape=(1, 4, 4), conv_channels=(8,), kernel_size=3,
           pool=False, fc_dims=(64, 10))
MODELS.add("tiny", build_vfl_model, **MODELS.preset("tiny_digits"))
MODELS.add("paper_mnist", build_vfl_model, part_shape=(1, 14, 14), conv_channels=(64, 128),
           kernel_size=5, pool=True, fc_dims=(256, 64, 10))
MODELS.add("paper", build_vfl_model, **MODELS.preset("paper_mnist"))
MODELS.add("paper_cifar", build_vfl_model, part_shape=(3, 16, 16), conv_channels=(64, 128),
           kernel_size=5, pool=True, fc_dims=(256, 64, 10))
# Tabular parties: no extractor (``H`` is the party's raw columns), so ``first_fc`` is the
# first layer on the features, as in most tabular VFL models.
MODELS.add("tiny_tabular", build_vfl_model, part_shape=(8,), conv_channels=(), fc_dims=(64, 10))

create_model = MODELS.create
list_models = MODELS.names
PRESETS = {name: MODELS.preset(name) for name in MODELS.names()}


# ---------------------------------------------------------------- the party/server protocol
PROTOCOL = """\
CAFE attacks a vertical model through this party/server protocol (paper Sec. 3-4.1):
  model.parties              a sequence (nn.ModuleList) of party modules, one per party
  party.features(x)          the party's extractor: block (batch, *part_shape) -> H (batch, d1)
  party.first_fc             nn.Linear(d1, d2, bias=True): u = W H + b, the layer Steps I-II read
  party.rest(u)              the rest of the party's model, u -> the party's output
  party.part_shape           the shape of one sample's block held by the party
  model.head(z)              the server's module on the concatenated party outputs -> logits
  model(parts, return_features=True) -> (logits, [H_m])   (VFLModel provides it)
Wrap any extractor with PartyNet(extractor, first_fc, rest, part_shape) and VFLModel(parties, head)."""


class PartyNet(nn.Module):
    """A party of the protocol around the user's own modules: ``extractor`` gives ``H``,
    ``first_fc`` (``nn.Linear`` with bias) gives ``u``, ``rest`` maps ``u`` to the party output."""

    def __init__(self, extractor: nn.Module, first_fc: nn.Linear, rest: nn.Module | None = None,
                 part_shape: Sequence[int] = ()) -> None:
        super().__init__()
        if not isinstance(first_fc, nn.Linear):
            raise ValueError(f"first_fc must be an nn.Linear (CAFE reads its weight and bias gradients), "
                             f"got {type(first_fc).__name__}")
        self.extractor = extractor
        self.first_fc = first_fc
        self.rest = rest if rest is not None else nn.Identity()
        self.part_shape = tuple(int(s) for s in part_shape)
        if not self.part_shape:
            raise ValueError("PartyNet needs part_shape, the shape of one sample's block")

    @property
    def d1(self) -> int:
        return self.first_fc.in_features

    @property
    def d2(self) -> int:
        return self.first_fc.out_features

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.extractor(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rest(self.first_fc(self.features(x)))


@dataclass(frozen=True)
class VerticalSpec:
    """What the attacker knows of a vertical model's structure (all public in VFL)."""

    num_parties: int
    part_shapes: tuple[tuple[int, ...], ...]
    d1: tuple[int, ...]
    d2: tuple[int, ...]
    classes: int


def check_vertical_model(model: nn.Module) -> VerticalSpec:
    """Check ``model`` follows :data:`PROTOCOL`; raise ``ValueError`` naming what is missing."""
    missing = []
    parties = getattr(model, "parties", None)
    if parties is None or not isinstance(parties, nn.ModuleList | list | tuple) or len(parties) == 0:
        missing.append("model.parties (a non-empty nn.ModuleList of party modules)")
        parties = []
    if not isinstance(getattr(model, "head", None), nn.Module):
        missing.append("model.head (the server's nn.Module)")
    for m, party in enumerate(parties):
        for name, what in (("features", "features(x) -> H"), ("rest", "rest(u)"),
                           ("part_shape", "part_shape")):
            if not hasattr(party, name):
                missing.append(f"party {m}: {what}")
        first_fc = getattr(party, "first_fc", None)
        if not isinstance(first_fc, nn.Linear):
            missing.append(f"party {m}: first_fc (an nn.Linear)")
        elif first_fc.bias is None:
            missing.append(f"party {m}: a bias on first_fc (CAFE's Step I reads the bias gradient, "
                           "so the attack needs first_fc with bias=True)")
    if missing:
        raise ValueError("the model does not follow CAFE's party/server protocol; missing: "
                         + "; ".join(missing) + "\n" + PROTOCOL)
    shapes = tuple(tuple(int(s) for s in p.part_shape) for p in parties)
    training = model.training
    try:
        model.eval()  # the probe must not move batch-norm statistics
        with torch.no_grad():
            probe = [torch.zeros(2, *shape, device=next(model.parameters()).device) for shape in shapes]
            logits, features = model(probe, return_features=True)
    except Exception as error:  # noqa: BLE001 - report any failure of the probe as a protocol error
        raise ValueError(f"model(parts, return_features=True) failed on zero blocks of shapes {shapes}: "
                         f"{error}\n{PROTOCOL}") from error
    finally:
        model.train(training)
    for m, (party, h) in enumerate(zip(parties, features)):
        if h.dim() != 2 or h.shape[1] != party.first_fc.in_features:
            raise ValueError(f"party {m}: features(x) gives shape {tuple(h.shape)}, but first_fc takes "
                             f"{party.first_fc.in_features} inputs (H must be (batch, d1))")
    return VerticalSpec(len(parties), shapes, tuple(p.first_fc.in_features for p in parties),
                        tuple(p.first_fc.out_features for p in parties), int(logits.shape[1]))
