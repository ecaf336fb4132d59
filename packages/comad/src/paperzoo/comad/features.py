"""Patch featurisers: ``(B, 3, S, S)`` RGB in [0, 1] -> ``(B, D, S/8, S/8)`` (spec section 2).

- :class:`ColourTexture` (default, no weights): per 8x8 patch the mean and std of CIE Lab and the
  mean absolute Sobel response, the same over the 3x3 patch neighbourhood, L2-normalised.
- :class:`DinoViTS8`: timm ``vit_small_patch8_224.dino`` built with ``pretrained=False`` and
  loaded from a local weights file only (or the teacher backbone of a DINO full training
  checkpoint); last-block patch tokens, prefix tokens dropped (paper section 3.1; errata: the
  **last** block, 21 M parameters).
- :class:`TimmCNN`: a timm CNN with ``features_only`` (PatchCore's WideResNet-50 layer2 + layer3).

No weights file means an error, never random weights posing as a pretrained backbone (pitfall 1).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FEATURISERS = ("colour_texture", "dino_vits8", "timm_vit", "timm_cnn")


@runtime_checkable
class Featuriser(Protocol):
    """A frozen map from RGB images in [0, 1] to a patch grid ``(B, D, S/stride, S/stride)``."""

    stride: int
    name: str

    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...


def rgb_to_lab(images: torch.Tensor) -> torch.Tensor:
    """sRGB in [0, 1] -> CIE Lab (D65), ``L`` in [0, 100], ``a``/``b`` roughly [-128, 127]."""
    linear = torch.where(images > 0.04045, ((images + 0.055) / 1.055) ** 2.4, images / 12.92)
    matrix = images.new_tensor(
        [
            [0.412453, 0.357580, 0.180423],
            [0.212671, 0.715160, 0.072169],
            [0.019334, 0.119193, 0.950227],
        ]
    )
    xyz = torch.einsum("ij,bjhw->bihw", matrix, linear)
    xyz = xyz / xyz.new_tensor([0.950456, 1.0, 1.088754]).view(1, 3, 1, 1)
    f = torch.where(xyz > 0.008856, xyz.clamp_min(1e-12) ** (1 / 3), 7.787 * xyz + 16 / 116)
    lightness = 116 * f[:, 1] - 16
    a = 500 * (f[:, 0] - f[:, 1])
    b = 200 * (f[:, 1] - f[:, 2])
    return torch.stack([lightness, a, b], dim=1)


def _check_images(images: torch.Tensor, stride: int) -> None:
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(
            f"featuriser input must be (batch, 3, height, width), got {tuple(images.shape)}"
        )
    if images.shape[-1] % stride or images.shape[-2] % stride:
        raise ValueError(
            f"image size {tuple(images.shape[-2:])} must be a multiple of the patch stride {stride}"
        )


class ColourTexture(nn.Module):
    """The offline featuriser: colour and texture statistics per patch (no learned weights).

    Per ``patch x patch`` cell: the mean CIE Lab colour, the std of Lab and the mean absolute
    Sobel response of ``L``; then the same averaged over the 3x3 cell neighbourhood;
    L2-normalised (spec section 2).

    [reconstructed] The mean colour enters through Gaussian radial basis functions on a fixed
    Lab grid (``sigma`` Lab units): cosine similarity of raw Lab vectors measures hue direction
    only (orange and brown point the same way), while the radial encoding makes the cosine
    similarity of two cells fall with their colour distance, as k-means on L2-normalised
    features (step 2) needs. Texture enters with weight ``texture_weight``.
    """

    name = "colour_texture"

    def __init__(
        self,
        patch: int = 8,
        sigma: float = 15.0,
        texture_weight: float = 0.5,
        neighbourhood: int = 3,
    ) -> None:
        super().__init__()
        if patch < 1:
            raise ValueError(f"patch must be >= 1, got {patch}")
        if sigma <= 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        if neighbourhood < 1 or neighbourhood % 2 == 0:
            raise ValueError(f"neighbourhood must be an odd number >= 1, got {neighbourhood}")
        self.stride = patch
        self.sigma, self.texture_weight, self.neighbourhood = sigma, texture_weight, neighbourhood
        grid = torch.cartesian_prod(
            torch.arange(0.0, 101.0, 25.0),
            torch.arange(-60.0, 61.0, 30.0),
            torch.arange(-60.0, 91.0, 30.0),
        )
        self.register_buffer("centres", grid, persistent=False)
        sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8
        self.register_buffer(
            "sobel", torch.stack([sobel, sobel.t()]).unsqueeze(1), persistent=False
        )

    @property
    def dim(self) -> int:
        return 2 * (self.centres.shape[0] + 4)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        _check_images(images, self.stride)
        lab = rgb_to_lab(images.float().clamp(0, 1))
        mean = F.avg_pool2d(lab, self.stride)
        std = (F.avg_pool2d(lab**2, self.stride) - mean**2).clamp_min(0).sqrt() / 50
        grad = F.conv2d(F.pad(lab[:, :1] / 50, (1, 1, 1, 1), mode="replicate"), self.sobel)
        edges = F.avg_pool2d(grad.abs().sum(1, keepdim=True), self.stride)
        dist2 = (mean.unsqueeze(1) - self.centres.view(1, -1, 3, 1, 1)).pow(2).sum(2)
        colour = torch.exp(-dist2 / (2 * self.sigma**2))
        colour = colour / colour.norm(dim=1, keepdim=True).clamp_min(1e-12)
        cell = torch.cat([colour, self.texture_weight * std, self.texture_weight * edges], dim=1)
        r = self.neighbourhood // 2
        around = F.avg_pool2d(
            F.pad(cell, (r, r, r, r), mode="replicate"), self.neighbourhood, stride=1
        )
        return F.normalize(torch.cat([cell, around], dim=1), dim=1)


DINO_RELEASE_HINT = (
    "use DINO's backbone-only release (e.g. dino_deitsmall8_pretrain.pth) or a .safetensors of it"
)


def _unpickling_reason(error: Exception) -> str:
    """The short cause of a refused ``torch.load``: the class it would not unpickle, if any."""
    text = str(error)
    refused = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if refused:
        return (
            f"it holds a pickled {refused.group(1)}; only tensors, plain containers and "
            "argparse.Namespace are loaded"
        )
    detail = text.split("WeightsUnpickler error:", 1)[-1].split("Check the documentation")[0]
    return " ".join(detail.split())


def _dino_teacher_backbone(loaded: object, path: Path) -> dict[str, torch.Tensor] | None:
    """The teacher's backbone of a DINO full training checkpoint (``{"teacher": {"backbone.*",
    "head.*"}, "student": ..., "args": Namespace, ...}``), prefix stripped, ``head.*`` dropped;
    ``None`` when ``loaded`` is not such a checkpoint."""
    teacher = loaded.get("teacher") if isinstance(loaded, Mapping) else None
    if not isinstance(teacher, Mapping):
        return None
    keys = [key for key in teacher if isinstance(key, str)]
    outer = next(
        (o for o in ("", "module.") if any(k.startswith(o + "backbone.") for k in keys)), None
    )
    if outer is None:
        return None
    state = {}
    for key, value in teacher.items():
        if isinstance(key, str) and key.startswith(outer + "head."):
            continue
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise ValueError(f"{path}: teacher entry {key!r} is not a tensor")
        state[key.removeprefix(outer + "backbone.")] = value
    return state


def _read_weights(path: Path, dino_checkpoint: bool) -> tuple[dict[str, torch.Tensor], str]:
    """Tensors of a weights file and the name to report it by; with ``dino_checkpoint`` a DINO
    full training checkpoint gives its teacher backbone (its pickled ``argparse.Namespace`` of
    training options is the one class allowed besides tensors)."""
    from paperzoo.core.checkpoint import PICKLE_SUFFIXES, load_state_dict

    try:
        return load_state_dict(path), str(path)
    except ValueError as error:
        if not dino_checkpoint or path.suffix not in PICKLE_SUFFIXES:
            raise
        refused = error
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for bad pickles
        raise ValueError(
            f"{path} cannot be read safely (torch.load with weights_only=True: "
            f"{_unpickling_reason(error)}); {DINO_RELEASE_HINT}"
        ) from error
    state = _dino_teacher_backbone(loaded, path)
    if state is None:
        raise ValueError(
            f"{path} holds neither a mapping of tensor names to tensors nor a DINO training "
            f"checkpoint with a 'teacher' backbone; {DINO_RELEASE_HINT}"
        ) from refused
    return state, f"{path} (teacher backbone of a DINO training checkpoint)"


def _load_checked(
    module: nn.Module,
    path: str | Path,
    ignore_prefixes: Sequence[str] = (),
    dino_checkpoint: bool = False,
) -> None:
    """Load a local weights file into ``module``; a file of another model names the file and
    the first mismatching key or shape (spec section 7), a NaN or infinite weight its key.
    With ``dino_checkpoint`` a DINO full training checkpoint gives its teacher backbone."""
    from paperzoo.core.checkpoint import check_compatible

    state, source = _read_weights(Path(path), dino_checkpoint)
    state = {k: v for k, v in state.items() if not any(k.startswith(p) for p in ignore_prefixes)}
    check_compatible(module.state_dict(), state, source)
    for key, value in state.items():
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise ValueError(f"{source}: weight {key!r} holds NaN or infinite values")
    module.load_state_dict(state, strict=True)


class TimmViT(nn.Module):
    """A timm ViT's last-block patch tokens as a grid, prefix tokens dropped (paper section 3.1).

    Built with ``pretrained=False``; ``weights`` must name a local file (``.safetensors``, a
    safe torch pickle, or a DINO full training checkpoint, whose teacher backbone is used) of the
    same architecture. ``model_kwargs`` go to ``timm.create_model``
    (tests build a tiny ViT this way).
    """

    name = "timm_vit"

    def __init__(
        self, model_name: str, weights: str | Path | None, img_size: int = 224, **model_kwargs
    ) -> None:
        super().__init__()
        import timm

        if weights is None:
            raise ValueError(
                f"featuriser {model_name!r} needs a local weights file (weights=FILE); "
                "random weights are never used in its place"
            )
        self.model = timm.create_model(
            model_name, pretrained=False, num_classes=0, img_size=img_size, **model_kwargs
        )
        _load_checked(self.model, weights, ignore_prefixes=("head.",), dino_checkpoint=True)
        self.model.eval().requires_grad_(False)
        self.stride = int(self.model.patch_embed.patch_size[0])
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def dim(self) -> int:
        return int(self.model.num_features)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        _check_images(images, self.stride)
        tokens = self.model.forward_features((images - self.mean) / self.std)
        tokens = tokens[:, self.model.num_prefix_tokens :]
        h, w = images.shape[-2] // self.stride, images.shape[-1] // self.stride
        return tokens.transpose(1, 2).reshape(tokens.shape[0], -1, h, w)


class DinoViTS8(TimmViT):
    """DINO ViT-S/8 (timm ``vit_small_patch8_224.dino``, 21 M parameters, D = 384) from a local file."""

    name = "dino_vits8"

    def __init__(self, weights: str | Path | None, img_size: int = 224) -> None:
        super().__init__("vit_small_patch8_224.dino", weights, img_size=img_size)


class TimmCNN(nn.Module):
    """A timm CNN's feature maps (``features_only``), upsampled to the first layer's grid and
    concatenated: PatchCore's backbone (WideResNet-50 layer2 + layer3, PatchCore section 3.1)."""

    name = "timm_cnn"

    def __init__(
        self,
        model_name: str = "wide_resnet50_2",
        layers: Sequence[int] = (2, 3),
        weights: str | Path | None = None,
        **model_kwargs,
    ) -> None:
        super().__init__()
        import timm

        if weights is None:
            raise ValueError(f"featuriser {model_name!r} needs a local weights file (weights=FILE)")
        full = timm.create_model(model_name, pretrained=False, **model_kwargs)
        _load_checked(full, weights)
        self.model = timm.create_model(
            model_name,
            pretrained=False,
            features_only=True,
            out_indices=tuple(layers),
            **model_kwargs,
        )
        self.model.load_state_dict(
            {k: v for k, v in full.state_dict().items() if k in self.model.state_dict()},
            strict=True,
        )
        self.model.eval().requires_grad_(False)
        self.stride = int(self.model.feature_info.reduction()[0])
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def dim(self) -> int:
        return int(sum(self.model.feature_info.channels()))

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        _check_images(images, self.stride)
        maps = self.model((images - self.mean) / self.std)
        size = maps[0].shape[-2:]
        return torch.cat(
            [maps[0]]
            + [F.interpolate(m, size=size, mode="bilinear", align_corners=False) for m in maps[1:]],
            dim=1,
        )


def create_featuriser(
    name: str, weights: str | Path | None = None, img_size: int = 224, **kwargs
) -> nn.Module:
    """Build a featuriser by name: ``colour_texture``, ``dino_vits8``, ``timm_vit``, ``timm_cnn``."""
    if name == "colour_texture":
        return ColourTexture(**kwargs)
    if name == "dino_vits8":
        return DinoViTS8(weights, img_size=img_size)
    if name == "timm_vit":
        return TimmViT(
            kwargs.pop("model_name", "vit_small_patch8_224.dino"),
            weights,
            img_size=img_size,
            **kwargs,
        )
    if name == "timm_cnn":
        return TimmCNN(weights=weights, **kwargs)
    raise ValueError(f"unknown featuriser {name!r}; choose from {', '.join(FEATURISERS)}")
