"""Image and mask I/O for folder datasets, and pairing of files by stem."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def _open(path: str | Path):
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        image = Image.open(path)
        image.load()
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"cannot read image {path}: {error}") from error
    return image


# PIL modes whose samples exceed 8 bits: convert("L"/"RGB") clips them at 255 (a 16-bit PNG
# would read as nearly all white), so they are scaled here instead.
_WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


def unit_array(path: str | Path, mode: str = "RGB"):
    """The image at ``path`` as a float32 NumPy array in [0, 1]: ``(H, W)`` for ``mode="L"``,
    ``(H, W, 3)`` for ``"RGB"`` (other PIL modes as converted by PIL, over 255).

    8-bit images and everything PIL converts (palette, grey with alpha, CMYK, 1-bit, ...) are
    divided by 255; the alpha channel of RGBA/LA is dropped. 16-bit images (``I;16*``, and
    32-bit integer ``I`` with samples in [0, 65535]) are divided by 65535; 32-bit float (``F``)
    is taken as is and must lie in [0, 1]. A wider integer or float range is refused, naming
    the file, rather than clipped. EXIF orientation is not applied (as in torchvision's
    ``decode_image``): masks and maps of the real layouts are drawn on the stored pixels."""
    return _unit(_open(path), mode, path)


def _unit(image, mode: str, path: str | Path):
    import numpy as np

    if image.mode not in _WIDE_MODES:
        return np.asarray(image.convert(mode), dtype=np.float32) / np.float32(255.0)
    values = np.asarray(image).astype(np.float64)
    if image.mode == "F":
        if not np.isfinite(values).all() or values.min(initial=0.0) < 0 or values.max(initial=0.0) > 1:
            raise ValueError(f"image {path}: 32-bit float samples must lie in [0, 1] (found "
                             f"{np.nanmin(values):.4g} to {np.nanmax(values):.4g}); save it as 8- or "
                             "16-bit, or scale it to [0, 1]")
        grey = values
    else:
        if values.min(initial=0) < 0 or values.max(initial=0) > 65535:
            raise ValueError(f"image {path}: 32-bit integer samples outside the 16-bit range "
                             f"[0, 65535] (found {int(values.min())} to {int(values.max())})")
        grey = values / 65535.0
    grey = grey.astype(np.float32)
    if mode == "L":
        return grey
    if mode == "RGB":
        return np.repeat(grey[..., None], 3, axis=-1)
    raise ValueError(f"image {path}: a {image.mode} image cannot be read as mode {mode!r} (use L or RGB)")


def read_image(path: str | Path, mode: str = "RGB") -> torch.Tensor:
    """Read an image as float ``(C, H, W)`` in [0, 1]; ``mode`` is a PIL mode (``RGB``, ``L``).
    Bit depths and modes as :func:`unit_array` (16-bit over 65535, not clipped)."""
    tensor = torch.from_numpy(unit_array(path, mode).copy())
    return tensor.unsqueeze(0) if tensor.dim() == 2 else tensor.permute(2, 0, 1).contiguous()


def read_mask(path: str | Path, threshold: float = 0.5) -> torch.Tensor:
    """Read a mask as a binary float ``(1, H, W)`` tensor (1 = foreground).

    Accepted encodings, after conversion to grey in [0, 1] (:func:`unit_array`: 8-bit over 255,
    16-bit over 65535):

    - 0/255 (the usual black and white PNG; 0/65535 at 16 bits) and any grey mask: grey level
      > ``threshold`` (half by default) is 1;
    - 0/1 (a label map saved as is, which looks black): a mask whose values are only 0 and 1,
      with at least one 1, is read with 1 as foreground, whatever ``threshold``.

    An all-zero mask is empty in both readings.
    """
    import numpy as np

    image = _open(path)
    raw = np.asarray(image) if image.mode in _WIDE_MODES else np.asarray(image.convert("L"))
    if image.mode != "F" and raw.max(initial=0) == 1 and raw.min(initial=0) == 0:
        binary = raw == 1  # only 0 and 1: a 0/1 mask, 1 = foreground
    else:
        binary = _unit(image, "L", path) > threshold
    return torch.from_numpy(binary.astype(np.float32)).unsqueeze(0)


def _by_stem(directory: Path, exts: Sequence[str]) -> dict[str, Path]:
    if not directory.is_dir():
        raise FileNotFoundError(f"folder not found: {directory}")
    wanted = {e.lower() if e.startswith(".") else f".{e.lower()}" for e in exts}
    found: dict[str, Path] = {}
    for path in sorted(directory.iterdir()):
        if path.name.startswith("."):
            continue  # hidden: .DS_Store, the "._a.png" AppleDouble files of archives made on macOS
        if path.is_file() and path.suffix.lower() in wanted:
            if path.stem in found:
                raise ValueError(f"two files share the stem {path.stem!r} in {directory}: {found[path.stem].name}, {path.name}")
            found[path.stem] = path
    return found


def paired_files(
    dir_a: str | Path,
    dir_b: str | Path,
    exts: Sequence[str] = IMAGE_EXTENSIONS,
    strict: bool = True,
) -> list[tuple[Path, Path]]:
    """Pairs ``(a, b)`` of files with the same stem in two folders (image and its mask, say).

    With ``strict`` (default) any file without a partner raises an error that names it;
    otherwise unmatched files are skipped.
    """
    a, b = _by_stem(Path(dir_a), exts), _by_stem(Path(dir_b), exts)
    only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
    if strict and (only_a or only_b):
        parts = []
        if only_a:
            parts.append(f"{len(only_a)} in {dir_a} without a partner (e.g. {', '.join(only_a[:5])})")
        if only_b:
            parts.append(f"{len(only_b)} in {dir_b} without a partner (e.g. {', '.join(only_b[:5])})")
        raise ValueError("unmatched files: " + "; ".join(parts))
    pairs = [(a[stem], b[stem]) for stem in sorted(set(a) & set(b))]
    if not pairs:
        raise ValueError(f"no files with matching stems in {dir_a} and {dir_b} (extensions {list(exts)})")
    return pairs
