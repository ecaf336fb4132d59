"""TriPINet (Liang, Xu, Jin, arXiv:2212.12841): three encoders (RGB, noise, frequency), gCMDA
fusion per level and a PI-SE decoder; plain ``nn.Module``s, presets through the core registry.

The abstract fixes the three streams, gCMDA and PI-SE; their wiring is reconstructed (spec
section 1). Baselines are the same class: ``streams=("rgb",)`` or ``fusion="plain"``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from paperzoo.core.registry import Registry
from paperzoo.tripinet.traces import FREQS, BayarConv2d, SRMFilter, make_freq

STREAMS = ("rgb", "noise", "freq")
FUSIONS = ("gcmda", "plain")
GCMDA_MODES = ("joint", "pair")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The paper preset's ResNet stem (7x7 stride-2 conv, 64 channels, max-pool) with one narrow
# BasicBlock per stage. A deep stem of width 8 was tried first: its 8-channel stride-2 entry
# conv starves the noise stream (an SRM-only encoder reached pixel F1 0.07 in 150 steps with
# it, 0.24 with this stem; README "Why the learned arms stayed low").
TINY_BACKBONE = {"layers": (1, 1, 1, 1), "channels": (16, 32, 48, 64)}


def cbr(in_channels: int, out_channels: int, kernel_size: int = 1) -> nn.Sequential:
    """Conv, BatchNorm, ReLU (the spec's CBR)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def make_encoder(
    backbone: str,
    in_chans: int,
    backbone_args: dict[str, Any] | None = None,
    weights: str | Path | None = None,
    stem_width: int | None = None,
) -> nn.Module:
    """A timm ResNet with ``features_only=True``, ``out_indices=(1, 2, 3, 4)`` (strides 4-32),
    never downloaded; ``weights`` is an optional local file (safetensors or a safe torch file).

    ``stem_width`` narrows the ResNet stem (one 7x7 stride-2 conv, BatchNorm, ReLU, max-pool) from
    timm's fixed 64 channels: timm sizes ``bn1`` and the first stage from its deep-stem width, so
    the encoder is built with a deep stem of ``stem_width / 2`` and its conv replaced by the 7x7
    one (timm's initialisation)."""
    import timm

    if not backbone.startswith("resnet"):
        raise ValueError(
            f"backbone must be a timm ResNet (resnet18, resnet50, ...), got {backbone!r}"
        )
    args = dict(backbone_args or {})
    if stem_width is not None:
        if stem_width < 2 or stem_width % 2:
            raise ValueError(f"stem_width must be an even number >= 2 or None, got {stem_width}")
        args.update(stem_type="deep", stem_width=stem_width // 2)
    try:
        encoder = timm.create_model(
            backbone,
            pretrained=False,
            features_only=True,
            out_indices=(1, 2, 3, 4),
            in_chans=in_chans,
            **args,
        )
    except RuntimeError as error:
        raise ValueError(f"unknown timm backbone {backbone!r}: {error}") from error
    if stem_width is not None:
        encoder.conv1 = nn.Conv2d(in_chans, stem_width, 7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(encoder.conv1.weight, mode="fan_out", nonlinearity="relu")
    if weights is not None:
        from paperzoo.core.checkpoint import load_state_dict

        state = load_state_dict(weights)
        expected = encoder.state_dict()
        for key, tensor in state.items():  # keys the encoder lacks (fc.*) are ignored
            if key in expected and tuple(tensor.shape) != tuple(expected[key].shape):
                raise ValueError(
                    f"{weights}: key {key!r} has shape {tuple(tensor.shape)}, the {backbone} "
                    f"encoder expects {tuple(expected[key].shape)} (weights of another model?)"
                )
        if not set(state) & set(expected):  # (missing keys omit BatchNorm's counters: compare sets)
            raise ValueError(
                f"{weights}: no key matches the {backbone} encoder ({len(state)} keys in the "
                f"file, {len(expected)} in the encoder; weights of another model?)"
            )
        encoder.load_state_dict(state, strict=False)
    return encoder


class GCMDA(nn.Module):
    """Guided cross-modality dual attention (reconstructed, spec section 1).

    g = CBR1x1(guide), a = CBR1x1(aux). Position branch: queries from g, keys and values from a
    (average-pooled to at most ``pool_kv`` x ``pool_kv`` positions), ``out_p = gamma_p * att + a``.
    Channel branch: ``C x C`` affinity softmax(g a^T), ``out_c = gamma_c * (affinity a) + a``.
    Output ``CBR3x3([g; out_p + out_c]) + g``. Both gammas start at 0 (concatenation fusion).
    """

    def __init__(
        self, guide_channels: int, aux_channels: int, channels: int, pool_kv: int = 8
    ) -> None:
        super().__init__()
        if channels < 8:
            raise ValueError(
                f"gCMDA channels must be >= 8 (queries have channels / 8), got {channels}"
            )
        if pool_kv < 1:
            raise ValueError(f"pool_kv must be >= 1, got {pool_kv}")
        self.guide = cbr(guide_channels, channels)
        self.aux = cbr(aux_channels, channels)
        self.query = nn.Conv2d(channels, channels // 8, 1)
        self.key = nn.Conv2d(channels, channels // 8, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gamma_p = nn.Parameter(torch.zeros(1))
        self.gamma_c = nn.Parameter(torch.zeros(1))
        self.out = cbr(2 * channels, channels, 3)
        self.pool_kv = pool_kv

    def position_attention(self, g: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        b, c, h, w = a.shape
        kv_size = (min(h, self.pool_kv), min(w, self.pool_kv))
        pooled = F.adaptive_avg_pool2d(a, kv_size)
        q = self.query(g).flatten(2)  # (B, C/8, N)
        k = self.key(pooled).flatten(2)  # (B, C/8, M)
        v = self.value(pooled).flatten(2)  # (B, C, M)
        weights = torch.softmax(q.transpose(1, 2) @ k / math.sqrt(q.shape[1]), dim=-1)  # (B, N, M)
        return (v @ weights.transpose(1, 2)).view(b, c, h, w)

    def channel_attention(self, g: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        b, c, h, w = a.shape
        affinity = torch.softmax(g.flatten(2) @ a.flatten(2).transpose(1, 2), dim=-1)  # (B, C, C)
        return (affinity @ a.flatten(2)).view(b, c, h, w)

    def forward(self, guide: torch.Tensor, aux: torch.Tensor) -> torch.Tensor:
        g, a = self.guide(guide), self.aux(aux)
        out_p = self.gamma_p * self.position_attention(g, a) + a
        out_c = self.gamma_c * self.channel_attention(g, a) + a
        return self.out(torch.cat([g, out_p + out_c], dim=1)) + g


class SqueezeExcite(nn.Module):
    """``x * sigmoid(W2 ReLU(W1 GAP(x)))`` with reduction 16 and at least 4 hidden units."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(4, channels // reduction)
        self.fc = nn.Sequential(
            nn.Linear(channels, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, channels),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc(x.mean(dim=(2, 3)))[:, :, None, None]


class PISE(nn.Module):
    """One progressive-integration SE level (reconstructed): ``X = [F_i; up(D_{i+1}); ...]``,
    channel gating by SE, then ``CBR3x3(CBR1x1(.))``. The deepest level is ``SE(CBR3x3(F4))``."""

    def __init__(self, in_channels: int, out_channels: int, deepest: bool = False) -> None:
        super().__init__()
        self.deepest = deepest
        if deepest:
            self.body = nn.Sequential(
                cbr(in_channels, out_channels, 3), SqueezeExcite(out_channels)
            )
        else:
            self.body = nn.Sequential(
                SqueezeExcite(in_channels),
                cbr(in_channels, out_channels, 1),
                cbr(out_channels, out_channels, 3),
            )

    def forward(self, fused: torch.Tensor, deeper: Sequence[torch.Tensor] = ()) -> torch.Tensor:
        size = fused.shape[-2:]
        parts = [
            fused,
            *(F.interpolate(d, size=size, mode="bilinear", align_corners=False) for d in deeper),
        ]
        return self.body(torch.cat(parts, dim=1))


class TriPINet(nn.Module):
    """The three-stream manipulation localiser; ``forward(x)`` with RGB ``x`` in [0, 1]
    ``(B, 3, H, W)``, sides multiples of 32, returns ``mask_logits`` ``(B, 1, H, W)``,
    ``side_logits`` (levels 2-4, their own resolution) and ``image_logit`` ``(B,)`` (global max)."""

    def __init__(
        self,
        rgb_backbone: str = "resnet18",
        noise_backbone: str = "resnet18",
        freq_backbone: str = "resnet18",
        backbone_args: dict[str, Any] | None = None,
        rgb_weights: str | None = None,
        freq: str = "block_dct",
        srm: str = "per_channel",
        streams: Sequence[str] = STREAMS,
        fusion: str = "gcmda",
        gcmda_stages: Sequence[int] = (3, 4),
        gcmda_mode: str = "joint",
        reverse_guide: bool = False,
        channels: int = 32,
        decoder_channels: int = 32,
        pool_kv: int = 8,
        residual_clip: float | None = 10.0,
        stem_width: int | None = None,
    ) -> None:
        super().__init__()
        streams = tuple(streams)
        unknown = [s for s in streams if s not in STREAMS]
        if unknown or not streams or len(set(streams)) != len(streams):
            raise ValueError(
                f"streams must be distinct names from {', '.join(STREAMS)}, got {list(streams)}"
            )
        if "rgb" not in streams:
            raise ValueError(
                f"streams must include rgb (the guide of the fusion), got {list(streams)}"
            )
        if fusion not in FUSIONS:
            raise ValueError(f"unknown fusion {fusion!r}; choose from {', '.join(FUSIONS)}")
        if gcmda_mode not in GCMDA_MODES:
            raise ValueError(
                f"unknown gcmda_mode {gcmda_mode!r}; choose from {', '.join(GCMDA_MODES)}"
            )
        if freq not in FREQS:
            raise ValueError(f"unknown freq {freq!r}; choose from {', '.join(FREQS)}")
        bad_stages = [s for s in gcmda_stages if s not in (1, 2, 3, 4)]
        if bad_stages:
            raise ValueError(f"gcmda_stages must be levels 1-4, got {list(gcmda_stages)}")
        if residual_clip is not None and not residual_clip > 0:
            raise ValueError(f"residual_clip must be > 0 or None, got {residual_clip}")
        for name, value in (("channels", channels), ("decoder_channels", decoder_channels)):
            if value < 8:
                raise ValueError(f"{name} must be >= 8, got {value}")
        self.streams = streams
        self.residual_clip = residual_clip
        self.fusion = fusion
        self.gcmda_stages = tuple(gcmda_stages)
        self.gcmda_mode = gcmda_mode
        self.reverse_guide = reverse_guide
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

        self.rgb_encoder = make_encoder(rgb_backbone, 3, backbone_args, rgb_weights, stem_width)
        widths = {"rgb": self.rgb_encoder.feature_info.channels()}
        if "noise" in streams:
            self.srm = SRMFilter(srm)
            self.bayar = BayarConv2d(3, 3, 5)
            self.noise_encoder = make_encoder(
                noise_backbone, self.srm.out_channels + 3, backbone_args, stem_width=stem_width
            )
            widths["noise"] = self.noise_encoder.feature_info.channels()
        if "freq" in streams:
            self.freq_filter = make_freq(freq)
            self.freq_encoder = make_encoder(
                freq_backbone, self.freq_filter.out_channels, backbone_args, stem_width=stem_width
            )
            widths["freq"] = self.freq_encoder.feature_info.channels()
        aux = [s for s in STREAMS if s in streams and s != "rgb"]
        self.fusers = nn.ModuleList()
        for level in range(4):
            rgb_w, aux_w = widths["rgb"][level], [widths[s][level] for s in aux]
            if fusion == "gcmda" and aux and level + 1 in self.gcmda_stages:
                if gcmda_mode == "joint":
                    pairs = [(rgb_w, sum(aux_w))]
                else:
                    pairs = [(rgb_w, w) for w in aux_w]
                blocks = [
                    GCMDA(*(p[::-1] if reverse_guide else p), channels, pool_kv) for p in pairs
                ]
                self.fusers.append(nn.ModuleList(blocks))
            else:
                self.fusers.append(cbr(rgb_w + sum(aux_w), channels, 1))
        self.decoder = nn.ModuleList(
            [
                PISE(
                    channels + (3 - level) * decoder_channels, decoder_channels, deepest=level == 3
                )
                for level in range(4)
            ]
        )
        self.heads = nn.ModuleList([nn.Conv2d(decoder_channels, 1, 3, padding=1) for _ in range(4)])

    def noise_residuals(self, x: torch.Tensor) -> torch.Tensor:
        """SRM and Bayar residuals of the 0-255 image, truncated to ``+-residual_clip`` (the
        truncation of rich-model steganalysis: edges give residuals in the hundreds, which would
        otherwise set the scale the first BatchNorm divides the weak traces by)."""
        residuals = torch.cat([self.srm(x), self.bayar(x)], dim=1)
        if self.residual_clip is None:
            return residuals
        return residuals.clamp(-self.residual_clip, self.residual_clip)

    def features(self, x: torch.Tensor) -> dict[str, list[torch.Tensor]]:
        """Each stream's four feature maps (strides 4, 8, 16, 32)."""
        out = {"rgb": self.rgb_encoder((x - self.mean) / self.std)}
        if "noise" in self.streams:
            out["noise"] = self.noise_encoder(self.noise_residuals(x))
        if "freq" in self.streams:
            out["freq"] = self.freq_encoder(self.freq_filter(x))
        return out

    def fuse(self, level: int, rgb: torch.Tensor, aux: list[torch.Tensor]) -> torch.Tensor:
        fuser = self.fusers[level]
        if not isinstance(fuser, nn.ModuleList):
            return fuser(torch.cat([rgb, *aux], dim=1))
        inputs = [torch.cat(aux, dim=1)] if self.gcmda_mode == "joint" else aux
        total = 0
        for block, other in zip(fuser, inputs):
            total = total + (block(other, rgb) if self.reverse_guide else block(rgb, other))
        return total

    def forward(self, x: torch.Tensor) -> dict[str, Any]:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(
                f"TriPINet takes RGB images (batch, 3, height, width), got {tuple(x.shape)}"
            )
        h, w = x.shape[-2:]
        if h % 32 or w % 32:
            raise ValueError(f"image sides must be multiples of 32 (pad first), got {h} x {w}")
        feats = self.features(x)
        aux_names = [s for s in STREAMS if s in feats and s != "rgb"]
        fused = [self.fuse(i, feats["rgb"][i], [feats[s][i] for s in aux_names]) for i in range(4)]
        decoded: list[torch.Tensor] = []
        for level in (3, 2, 1, 0):
            decoded.insert(0, self.decoder[level](fused[level], decoded))
        logits = [head(d) for head, d in zip(self.heads, decoded)]
        mask_logits = F.interpolate(logits[0], size=(h, w), mode="bilinear", align_corners=False)
        return {
            "mask_logits": mask_logits,
            "side_logits": logits[1:],
            "image_logit": mask_logits.amax(dim=(1, 2, 3)),
        }


MODELS = Registry("model")
MODELS.add(
    "tiny",
    TriPINet,
    rgb_backbone="resnet18",
    noise_backbone="resnet18",
    freq_backbone="resnet18",
    backbone_args=TINY_BACKBONE,
    channels=32,
    decoder_channels=32,
    gcmda_stages=(3, 4),
    pool_kv=8,
)
MODELS.add(
    "paper",
    TriPINet,
    rgb_backbone="resnet50",
    noise_backbone="resnet18",
    freq_backbone="resnet18",
    backbone_args=None,
    channels=256,
    decoder_channels=128,
    gcmda_stages=(2, 3, 4),
    pool_kv=32,
)
create_model = MODELS.create
list_models = MODELS.names

# Training recipe of each preset (spec section 1's table): crop, optimiser, batch.
RECIPES = {
    "tiny": {"crop": 64, "lr": 2e-3, "batch_size": 16},
    "paper": {"crop": 512, "lr": 1e-4, "batch_size": 8},
}
