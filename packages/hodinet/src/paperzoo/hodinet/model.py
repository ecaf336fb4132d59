"""HODINet as plain ``torch.nn`` modules (no Lightning), built from named presets.

Two different timm backbones (a Swin transformer for RGB, a ResNet for depth; four stages at
strides 4/8/16/32, ``pretrained=False``, an optional local weights file), a 1x1 alignment per
stage, high-order spatial fusion (HOSF) in stages 1-2 and high-order channel fusion (HOCF) in
stages 3-4, and the cascaded pyramid decoder with deep supervision (spec section 1).

Presets (``create_model(name, **overrides)``, ``list_models()``): ``tiny``, ``paper`` and the
baselines with the same encoders, alignment and decoder: ``add_fusion``, ``rgb_only``,
``depth_only`` (and their ``*_tiny`` forms). Explicit overrides beat the preset.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from paperzoo.core.registry import Registry
from paperzoo.hodinet.attention import (
    HOCF,
    HOSF,
    ConvBNReLU,
    HighOrderAttention,
    SingleBranchFusion,
)
from paperzoo.hodinet.decoder import CascadedPyramidDecoder, PyramidBlock
from paperzoo.hodinet.loss import hybrid_loss

__all__ = ["HODINet", "HighOrderAttention", "HOSF", "HOCF", "PyramidBlock", "CascadedPyramidDecoder",
           "TimmEncoder", "hybrid_loss", "create_model", "list_models", "MODELS", "FUSIONS",
           "RGB_BACKBONES", "DEPTH_BACKBONES", "valid_swin_sizes"]

# name -> (timm model name, overrides). The small ones are the spec's `tiny` encoders.
RGB_BACKBONES: dict[str, tuple[str, dict[str, Any]]] = {
    "swin_base": ("swin_base_patch4_window12_384", {}),
    "swin_tiny": ("swin_tiny_patch4_window7_224", {}),
    "swin_mini": ("swin_tiny_patch4_window7_224",
                  dict(embed_dim=24, depths=(1, 1, 1, 1), num_heads=(1, 2, 4, 8))),
}
DEPTH_BACKBONES: dict[str, tuple[str, dict[str, Any]]] = {
    "resnet50": ("resnet50", {}),
    "resnet18": ("resnet18", {}),
    # stem_width only takes effect with a deep stem in timm (3x3 convs 16-16-32 instead of a 7x7 to 64)
    "resnet_mini": ("resnet18", dict(layers=(1, 1, 1, 1), channels=(16, 32, 64, 128), stem_width=16,
                                     stem_type="deep")),
}
FUSIONS = ("hosf", "hocf", "add", "rgb", "depth")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _swin_grids(img_size: int) -> list[int]:
    return [img_size // 4 // 2**i for i in range(4)]


def _swin_size_ok(img_size: int, window: int) -> bool:
    return img_size % 32 == 0 and all(g % window == 0 or g <= window for g in _swin_grids(img_size))


def valid_swin_sizes(window: int, limit: int = 1024) -> list[int]:
    """Input sizes whose four Swin stage grids the window divides or covers (pitfall 2)."""
    return [s for s in range(32, limit + 1, 32) if _swin_size_ok(s, window)]


def _weights_file(path: str | None, what: str) -> str | None:
    if path is None or path == "":
        return None
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"{what} weights file not found: {file}")
    return str(file)


class TimmEncoder(nn.Module):
    """A timm backbone as a four-stage feature extractor returning NCHW maps, fine to coarse.

    ``weights`` is a local file (safetensors or a torch file loaded with ``weights_only=True``),
    read by timm through ``pretrained_cfg_overlay=dict(file=...)``; nothing is downloaded.
    Swin returns NHWC features, permuted here before any convolution sees them (pitfall 1).
    """

    def __init__(self, name: str, kind: str, in_chans: int, img_size: int | None = None,
                 window_size: int | None = None, weights: str | None = None) -> None:
        super().__init__()
        import timm

        table = RGB_BACKBONES if kind == "rgb" else DEPTH_BACKBONES
        if name not in table:
            raise ValueError(f"unknown {kind} backbone {name!r}; choose from {', '.join(table)}")
        timm_name, kwargs = table[name]
        kwargs = dict(kwargs, in_chans=in_chans)
        self.is_swin = timm_name.startswith("swin")
        if self.is_swin:
            window = window_size or int(timm_name.split("window")[1].split("_")[0])
            if img_size is None or not _swin_size_ok(img_size, window):
                raise ValueError(
                    f"img_size {img_size} does not fit Swin window {window}: each stage grid "
                    f"(img_size/4, /8, /16, /32) must be divisible by the window or no larger "
                    f"than it; valid sizes: {valid_swin_sizes(window)[:12]}")
            kwargs.update(img_size=img_size, window_size=window)
        file = _weights_file(weights, f"{kind} backbone")
        overlay = dict(file=file) if file else None
        if file and kwargs.get("stem_type") == "deep":
            # timm's ResNet config names the 7x7 stem's ``conv1`` as the first conv to convert to
            # ``in_chans``; a deep stem's first conv is ``conv1.0`` (timm < 1.0.31 failed on it).
            overlay["first_conv"] = "conv1.0"
        try:
            self.body = timm.create_model(
                timm_name, pretrained=file is not None, features_only=True, out_indices=(0, 1, 2, 3)
                if self.is_swin else (1, 2, 3, 4), pretrained_cfg_overlay=overlay, **kwargs)
        except Exception as error:  # timm, torch and safetensors raise many types for a bad file
            if file is None:
                raise
            raise ValueError(f"cannot load {kind} backbone weights {file} into {timm_name}: "
                             f"{str(error).splitlines()[0][:300]}") from error
        self.channels: list[int] = list(self.body.feature_info.channels())
        self.nhwc = str(getattr(self.body, "output_fmt", "NCHW")).endswith("NHWC")

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = self.body(x)
        if self.nhwc:
            features = [f.permute(0, 3, 1, 2).contiguous() for f in features]
        return features


def _parse_fusion(stage_fusion: str | Sequence[str]) -> tuple[str, ...]:
    entries = stage_fusion.split(",") if isinstance(stage_fusion, str) else list(stage_fusion)
    entries = tuple(e.strip().lower() for e in entries)
    if len(entries) != 4 or any(e not in FUSIONS for e in entries):
        raise ValueError(f"stage_fusion must name 4 entries from {', '.join(FUSIONS)} "
                         f"(e.g. 'hosf,hosf,hocf,hocf'), got {stage_fusion!r}")
    branches = {"rgb" if e == "rgb" else "depth" if e == "depth" else "both" for e in entries}
    if len(branches) > 1 and not branches <= {"both"}:
        raise ValueError(f"stage_fusion {stage_fusion!r} mixes single-modality stages with fused ones")
    return entries


class HODINet(nn.Module):
    """HODINet: RGB transformer + depth CNN, HOSF/HOCF fusion, cascaded pyramid decoder.

    ``forward(rgb, depth) -> {"logits": (B, 1, H, W), "side": [4 x (B, 1, h_i, w_i)]}`` with RGB in
    [0, 1] (normalised inside with ImageNet statistics) and depth ``(B, 1, H, W)`` in [0, 1],
    near = 1. ``side`` is fine to coarse; ``logits`` is the finest side output upsampled x4.
    ``stage_fusion`` entries: ``hosf``, ``hocf``, ``add`` or, for the single-modality baselines,
    all ``rgb`` or all ``depth`` (the unused encoder is not built).
    """

    def __init__(
        self,
        rgb_backbone: str = "swin_mini",
        depth_backbone: str = "resnet_mini",
        img_size: int = 64,
        window_size: int | None = 4,
        channels: int = 32,
        order: int = 3,
        stage_fusion: str | Sequence[str] = ("hosf", "hosf", "hocf", "hocf"),
        dilations: Sequence[int] = (1, 2, 3),
        dense: bool = True,
        joint: str = "add",
        rgb_weights: str | None = None,
        depth_weights: str | None = None,
    ) -> None:
        super().__init__()
        if order < 1:
            raise ValueError(f"order must be >= 1, got {order}")
        if channels < 4:
            raise ValueError(f"channels must be >= 4 (the attention reduces by 4), got {channels}")
        if img_size < 32 or img_size % 32:
            raise ValueError(f"img_size must be a positive multiple of 32, got {img_size}")
        self.stage_fusion = _parse_fusion(stage_fusion)
        self.img_size, self.channels, self.order = img_size, channels, order
        self.uses_rgb = self.stage_fusion[0] != "depth"
        self.uses_depth = self.stage_fusion[0] != "rgb"
        self.rgb_encoder = (TimmEncoder(rgb_backbone, "rgb", 3, img_size, window_size, rgb_weights)
                            if self.uses_rgb else None)
        self.depth_encoder = (TimmEncoder(depth_backbone, "depth", 1, img_size, None, depth_weights)
                              if self.uses_depth else None)
        self.rgb_align = (nn.ModuleList(ConvBNReLU(c, channels) for c in self.rgb_encoder.channels)
                          if self.rgb_encoder is not None else None)
        self.depth_align = (nn.ModuleList(ConvBNReLU(c, channels) for c in self.depth_encoder.channels)
                            if self.depth_encoder is not None else None)
        self.fusions = nn.ModuleList(self._fusion(kind, joint) for kind in self.stage_fusion)
        self.decoder = CascadedPyramidDecoder(channels, 4, dilations, dense)
        self.register_buffer("rgb_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("rgb_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def _fusion(self, kind: str, joint: str) -> nn.Module:
        if kind == "hosf":
            return HOSF(self.channels, self.order, joint)
        if kind == "hocf":
            return HOCF(self.channels, self.order, joint)
        return SingleBranchFusion(self.channels, kind)

    def check_inputs(self, rgb: torch.Tensor | None, depth: torch.Tensor | None) -> None:
        """Shapes the model accepts; a clear ValueError otherwise."""
        size = (self.img_size, self.img_size)
        if self.uses_rgb:
            if rgb is None or rgb.dim() != 4 or rgb.shape[1] != 3:
                raise ValueError(f"rgb must be (B, 3, H, W), got {None if rgb is None else tuple(rgb.shape)}")
            if tuple(rgb.shape[-2:]) != size:
                raise ValueError(f"rgb is {tuple(rgb.shape[-2:])}, the model was built for {size}")
        if self.uses_depth:
            if depth is None or depth.dim() != 4 or depth.shape[1] != 1:
                raise ValueError(f"depth must be (B, 1, H, W), got {None if depth is None else tuple(depth.shape)}")
            if tuple(depth.shape[-2:]) != size:
                raise ValueError(f"depth is {tuple(depth.shape[-2:])}, the model was built for {size}")
        if self.uses_rgb and self.uses_depth and rgb.shape[0] != depth.shape[0]:
            raise ValueError(f"rgb batch {rgb.shape[0]} != depth batch {depth.shape[0]}")

    def fused_features(self, rgb: torch.Tensor | None, depth: torch.Tensor | None) -> list[torch.Tensor]:
        """``F_1..F_4``: aligned, fused features at strides 4/8/16/32."""
        r_feats = d_feats = [None] * 4
        if self.rgb_encoder is not None:
            r_feats = [a(f) for a, f in zip(self.rgb_align, self.rgb_encoder((rgb - self.rgb_mean) / self.rgb_std))]
        if self.depth_encoder is not None:
            d_feats = [a(f) for a, f in zip(self.depth_align, self.depth_encoder(depth))]
        return [fusion(r, d) for fusion, r, d in zip(self.fusions, r_feats, d_feats)]

    def forward(self, rgb: torch.Tensor | None, depth: torch.Tensor | None = None) -> dict[str, Any]:
        self.check_inputs(rgb, depth)
        side = self.decoder(self.fused_features(rgb, depth))
        size = (rgb if rgb is not None else depth).shape[-2:]
        logits = F.interpolate(side[0], size=size, mode="bilinear", align_corners=False)
        return {"logits": logits, "side": side}


MODELS = Registry("model")
_TINY = dict(rgb_backbone="swin_mini", depth_backbone="resnet_mini", img_size=64, window_size=4,
             channels=32, order=3, dilations=(1, 2, 3), dense=True)
_PAPER = dict(rgb_backbone="swin_base", depth_backbone="resnet50", img_size=384, window_size=12,
              channels=64, order=3, dilations=(1, 2, 4, 8), dense=True)
_HODI = ("hosf", "hosf", "hocf", "hocf")
MODELS.add("tiny", HODINet, **_TINY, stage_fusion=_HODI)
MODELS.add("paper", HODINet, **_PAPER, stage_fusion=_HODI)
for _label, _fusion in (("add_fusion", ("add",) * 4), ("rgb_only", ("rgb",) * 4),
                        ("depth_only", ("depth",) * 4)):
    MODELS.add(f"{_label}_tiny", HODINet, **_TINY, stage_fusion=_fusion)
    MODELS.add(_label, HODINet, **_PAPER, stage_fusion=_fusion)
create_model = MODELS.create
list_models = MODELS.names
