"""Triggers ``g`` (added to the sampler's start noise) and targets ``y`` of BadDiffusion-style
backdoors (spec 1.1), at any sample shape ``(C, H, W)``.

Triggers (model space, 0 off their mask): ``box`` (a square outline in the bottom-right corner,
a quarter of the side; BadDiffusion's box), ``stop`` (a filled disc top-left), ``glasses`` (two
rings across the upper middle), ``file:PATH`` (``.npy``/``.safetensors``/image, resized; a
pickled or non-numeric ``.npy`` or an unreadable file is a ValueError naming it).
Targets (model space [-1, 1]): ``cat`` (the core's bundled cat photo, grey when C = 1), ``hat``
(a drawn top hat), ``digit:K`` (the first digit K of the core's digits).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

__all__ = ["make_trigger", "make_target", "check_trigger", "TRIGGERS", "TARGETS"]

TRIGGERS = ("box", "stop", "glasses", "file:PATH")
TARGETS = ("cat", "hat", "digit:K", "file:PATH")
TRIGGER_AMPLITUDE = 2.0


def _grid(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij"
    )
    return ys, xs


def _resize(image: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    c, h, w = shape
    if image.dim() == 2:
        image = image[None]
    if image.shape[0] != c:
        image = (
            image.mean(0, keepdim=True).expand(c, -1, -1)
            if c in (1, 3)
            else image[:1].expand(c, -1, -1)
        )
    return F.interpolate(
        image[None].float(), size=(h, w), mode="bilinear", antialias=True, align_corners=False
    )[0]


def _read_npy(path: Path) -> torch.Tensor:
    """One ``.npy`` array of numbers, read without unpickling; anything else is a ValueError
    naming ``path``."""
    import numpy as np

    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise ValueError(
            f"{path} cannot be read as a .npy array of numbers (pickled data is refused): {error}"
        ) from error
    if not isinstance(array, np.ndarray):  # an .npz archive under a .npy name
        array.close()
        raise ValueError(f"{path} is an .npz archive, not a single .npy array (numpy.save)")
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{path} holds an array of dtype {array.dtype}, not numbers")
    # float32 in native byte order (a big-endian '>f4' array is a valid .npy torch cannot wrap)
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def _read_tensor_file(path: Path) -> torch.Tensor:
    if not path.is_file():
        raise FileNotFoundError(f"file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from paperzoo.core.checkpoint import load_state_dict

        tensors = load_state_dict(path)
        if len(tensors) != 1:
            raise ValueError(f"{path} must hold exactly one tensor, found {sorted(tensors)}")
        tensor = next(iter(tensors.values())).float()
    elif suffix == ".npy":
        tensor = _read_npy(path)
    else:
        from paperzoo.diffcleanse.data import read_user_image

        return read_user_image(path) * 2 - 1  # refuses a file that is not an image, naming it
    if tensor.dim() not in (2, 3):
        raise ValueError(f"{path} holds shape {tuple(tensor.shape)}; expected (H, W) or (C, H, W)")
    return tensor


def check_trigger(
    trigger: torch.Tensor, shape: tuple[int, int, int], name: str = "trigger"
) -> torch.Tensor:
    """Refuse a trigger not of the model's ``(C, H, W)`` or with non-finite values (spec 6)."""
    if not isinstance(trigger, torch.Tensor):
        raise ValueError(f"{name} must be a tensor, got {type(trigger).__name__}")
    if tuple(trigger.shape) != tuple(shape):
        raise ValueError(
            f"{name} has shape {tuple(trigger.shape)}, the model's samples are {tuple(shape)} (C, H, W)"
        )
    if not torch.isfinite(trigger).all():
        raise ValueError(f"{name} has non-finite values")
    return trigger.float()


def make_trigger(name: str, shape: tuple[int, int, int]) -> torch.Tensor:
    """The trigger ``g`` of ``shape`` (spec 1.1: additive, 0 off its mask)."""
    c, h, w = shape
    ys, xs = _grid(h, w)
    side = max(4, h // 4)
    if name == "box":
        top, left = h - side, w - side
        inside = (ys >= top) & (xs >= left)
        border = inside & ((ys == top) | (ys == h - 1) | (xs == left) | (xs == w - 1))
        mask = border.float()
    elif name == "stop":
        r = max(1.0, h / 6)
        mask = (((ys - r) ** 2 + (xs - r) ** 2) <= r * r + 0.5).float()
    elif name == "glasses":
        r = max(1.0, w / 8)
        cy = h / 4
        d1 = ((ys - cy) ** 2 + (xs - w * 0.3) ** 2).sqrt()
        d2 = ((ys - cy) ** 2 + (xs - w * 0.7) ** 2).sqrt()
        mask = (((d1 - r).abs() <= 0.6) | ((d2 - r).abs() <= 0.6)).float()
    elif name.startswith("file:"):
        return check_trigger(_resize(_read_tensor_file(Path(name[5:])), shape), shape, name)
    else:
        raise ValueError(f"unknown trigger {name!r}; choose from {', '.join(TRIGGERS)}")
    return (TRIGGER_AMPLITUDE * mask).expand(c, h, w).clone()


def _hat(h: int, w: int) -> torch.Tensor:
    ys, xs = _grid(h, w)
    brim = (ys >= 0.62 * h) & (ys < 0.75 * h) & (xs >= 0.1 * w) & (xs < 0.9 * w)
    crown = (ys >= 0.2 * h) & (ys < 0.62 * h) & (xs >= 0.3 * w) & (xs < 0.7 * w)
    band = (ys >= 0.5 * h) & (ys < 0.6 * h) & (xs >= 0.3 * w) & (xs < 0.7 * w)
    return (brim | crown).float() - 0.5 * band.float()


def make_target(name: str, shape: tuple[int, int, int]) -> torch.Tensor:
    """The target image ``y`` of ``shape`` in [-1, 1] (spec 1.1)."""
    c, h, w = shape
    if name == "cat":
        from paperzoo.core.data import photos

        image = _resize(photos(["chelsea"])["chelsea"], shape)
    elif name == "hat":
        image = _resize(_hat(4 * h, 4 * w)[None].clamp(0, 1), shape)
    elif name.startswith("digit:"):
        from paperzoo.core.data import digits

        try:
            k = int(name[6:])
        except ValueError as error:
            raise ValueError(f"target {name!r}: K must be an integer 0..9") from error
        if not 0 <= k <= 9:
            raise ValueError(f"target {name!r}: K must be 0..9")
        images, labels = digits()
        image = _resize(images[int((labels == k).nonzero()[0])], shape)
    elif name.startswith("file:"):
        from paperzoo.diffcleanse.data import check_range

        raw = check_range(_read_tensor_file(Path(name[5:])), -1.0, 1.0, name, "(model space)")
        target = _resize(raw, shape)  # resampling may overshoot by rounding: clamped
        return check_trigger(target.clamp(-1, 1), shape, name)
    else:
        raise ValueError(f"unknown target {name!r}; choose from {', '.join(TARGETS)}")
    return (image.clamp(0, 1) * 2 - 1).contiguous()
