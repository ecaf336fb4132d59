"""Offline data sources bundled with scikit-learn and scikit-image: nothing is downloaded."""

from __future__ import annotations

from collections.abc import Sequence

import torch

# scikit-image's photographs that ship inside its wheel (no download through pooch).
PHOTO_NAMES = (
    "astronaut",
    "camera",
    "coffee",
    "chelsea",
    "rocket",
    "coins",
    "moon",
    "page",
    "text",
    "horse",
    "hubble_deep_field",
    "immunohistochemistry",
    "logo",
    "retina",
    "brick",
    "grass",
    "gravel",
    "colorwheel",
    "clock",
    "microaneurysms",
    "cell",
)


def digits() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 1,797 handwritten digits: images ``(N, 1, 8, 8)`` in [0, 1], labels ``(N,)``."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.as_tensor(bunch.target, dtype=torch.int64)
    return images, labels


def _to_chw(array) -> torch.Tensor:
    import numpy as np

    image = np.asarray(array)
    if image.dtype == np.bool_:
        image = image.astype(np.float32)
    elif np.issubdtype(image.dtype, np.integer):
        image = image.astype(np.float32) / float(np.iinfo(image.dtype).max)
    tensor = torch.as_tensor(image, dtype=torch.float32)
    if tensor.dim() == 2:
        tensor = tensor.unsqueeze(0)
    else:
        tensor = tensor[..., :3].permute(2, 0, 1)
    return tensor.clamp_(0.0, 1.0).contiguous()


def photos(
    names: Sequence[str] | None = None, size: int | tuple[int, int] | None = None
) -> dict[str, torch.Tensor]:
    """scikit-image's bundled photographs as float ``(C, H, W)`` tensors in [0, 1], by name.

    Grey images have one channel, colour images three (alpha dropped). ``size`` resizes
    (antialiased bilinear) to ``(size, size)`` or ``(H, W)``.
    """
    from skimage import data as skdata

    chosen = tuple(PHOTO_NAMES if names is None else names)
    unknown = [name for name in chosen if name not in PHOTO_NAMES]
    if unknown:
        raise ValueError(f"unknown photo(s) {unknown}; bundled offline: {', '.join(PHOTO_NAMES)}")
    out: dict[str, torch.Tensor] = {}
    for name in chosen:
        image = _to_chw(getattr(skdata, name)())
        if size is not None:
            hw = (size, size) if isinstance(size, int) else tuple(size)
            image = torch.nn.functional.interpolate(
                image.unsqueeze(0), size=hw, mode="bilinear", antialias=True, align_corners=False
            )[0].clamp_(0.0, 1.0)
        out[name] = image
    return out


def faces() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-image's LFW subset: 100 faces (label 1) then 100 non-faces (label 0), ``(200, 1, 25, 25)``."""
    from skimage import data as skdata

    images = torch.as_tensor(skdata.lfw_subset(), dtype=torch.float32).unsqueeze(1)
    labels = torch.cat([torch.ones(100, dtype=torch.int64), torch.zeros(100, dtype=torch.int64)])
    return images.clamp_(0.0, 1.0), labels
