"""Image and mask I/O for folder datasets, and pairing of files by stem."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from .files import is_hidden

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def open_image(path: str | Path, what: str = "image", *, upright: bool = False):
    """The loaded PIL image at ``path``, as stored or, with ``upright``, with its EXIF
    orientation applied; a missing, empty, truncated or non-image file is an error naming
    ``what`` and the path. Packages that read the samples themselves (depth maps, masks) check
    :data:`WIDE_MODES` before PIL's ``convert`` clips them."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {path}")
    try:
        with Image.open(path) as image:
            image.load()
            if upright:  # in place: no copy of an image without a tag
                ImageOps.exif_transpose(image, in_place=True)
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ValueError(f"cannot read {what} {path}: {error}") from error
    return image


WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
"""PIL modes whose samples exceed 8 bits: ``convert("L"/"RGB")`` clips them at 255 (a 16-bit
PNG would read as nearly all white), so the readers scale them instead."""
_ALPHA_MODES = ("LA", "La", "PA", "RGBA", "RGBa")
COLOUR_SPREAD = 32  # a mask pixel whose RGB channels differ by more is coloured, not grey
ORIENTATION_TAG = 0x0112  # EXIF orientation: 1 as stored, 2-8 mirrored or turned when shown


def image_header(path: str | Path, what: str = "image") -> tuple[tuple[int, int], int]:
    """``((width, height), EXIF orientation)`` of an image file as stored, from its header in one
    open (no pixel is decoded; a PNG's tag from the chunks before the pixels). The orientation is
    1 when absent; 2-8: a viewer shows the image mirrored or turned (5-8 by 90 degrees, so the
    displayed size is ``(height, width)``), which :func:`unit_array` applies only with
    ``upright=True``. A missing or unreadable file is an error naming ``what`` and the path."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {path}")
    try:
        with Image.open(path) as image:
            size = image.size
            if image.format == "PNG" and "exif" not in image.info:
                return size, 1
            return size, int(image.getexif().get(ORIENTATION_TAG, 1) or 1)
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ValueError(f"cannot read {what} {path}: {error}") from error


def exif_orientation(path: str | Path) -> int:
    """The EXIF orientation tag of an image file, 1 when absent (:func:`image_header`)."""
    return image_header(path)[1]


def unit_array(path: str | Path, mode: str = "RGB", *, upright: bool = False):
    """The image at ``path`` as a float32 NumPy array in [0, 1]: ``(H, W)`` for ``mode="L"``,
    ``(H, W, 3)`` for ``"RGB"``.

    - 8-bit images and what PIL converts (palette, grey, CMYK, 1-bit, ...): over 255.
    - 16-bit (``I;16*``, and 32-bit integer ``I`` with samples in [0, 65535]): over 65535;
      32-bit float (``F``) as is, in [0, 1]. A wider range or NaN is refused, not clipped.
    - An alpha band (RGBA, LA, a palette's transparent colour) is dropped when every pixel is
      opaque; transparent pixels, whose colour is hidden, are refused.
    - ``upright``: apply the EXIF orientation (a phone photo as it is shown). Off by default,
      as in torchvision's ``decode_image``: a mask or map drawn on the stored pixels of its image
      must be read the same way as the image.

    Every refusal is a ``ValueError`` naming the file."""
    return _unit(open_image(path, upright=upright), mode, path)


def _unit(image, mode: str, path: str | Path):
    import numpy as np

    if mode not in ("L", "RGB"):
        raise ValueError(f"image mode must be 'L' or 'RGB', got {mode!r}")
    check_opaque(image, path)
    if image.mode not in WIDE_MODES:
        try:
            converted = image.convert(mode)
        except ValueError as error:  # a mode PIL cannot convert (LAB, HSV)
            raise ValueError(f"cannot read image {path} ({image.mode}) as {mode}: {error}") from error
        return np.asarray(converted, dtype=np.float32) / np.float32(255.0)
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
    return grey if mode == "L" else np.repeat(grey[..., None], 3, axis=-1)


def check_opaque(image, path: str | Path) -> None:
    """Refuse, naming ``path``, a loaded PIL ``image`` with transparent pixels (an alpha band or
    a palette's transparent colour): their colour is hidden, and a mask kept in the alpha band
    would read as empty. An opaque alpha band passes."""
    import numpy as np

    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        alpha = np.asarray(image.convert("RGBA"))[..., 3]
        if alpha.min(initial=255) < 255:
            raise ValueError(f"image {path} has transparent pixels (alpha down to {int(alpha.min())}), "
                             "whose colour is hidden (a mask kept in the alpha band reads as empty); "
                             "flatten it onto a background first")


def unit_bytes(path: str | Path, mode: str = "RGB", *, upright: bool = False):
    """:func:`unit_array` as uint8 (``round(255 x)``: 8-bit images unchanged, 16-bit samples
    ``round(v / 257)``), for code that works on 8-bit pixels (PIL resizing, uint8 batches).
    8-bit images skip the float round trip (the same values, read per item in data loaders)."""
    import numpy as np

    image = open_image(path, upright=upright)
    if image.mode in WIDE_MODES:
        return np.round(_unit(image, mode, path) * np.float32(255.0)).astype(np.uint8)
    if mode not in ("L", "RGB"):
        raise ValueError(f"image mode must be 'L' or 'RGB', got {mode!r}")
    check_opaque(image, path)
    try:
        return np.array(image.convert(mode), dtype=np.uint8)
    except ValueError as error:  # a mode PIL cannot convert (LAB, HSV)
        raise ValueError(f"cannot read image {path} ({image.mode}) as {mode}: {error}") from error


def read_image(path: str | Path, mode: str = "RGB", *, upright: bool = False) -> torch.Tensor:
    """Read an image as float ``(C, H, W)`` in [0, 1] (``mode``: ``RGB`` or ``L``). Bit depths,
    alpha and ``upright`` as :func:`unit_array` (16-bit over 65535, not clipped)."""
    tensor = torch.from_numpy(unit_array(path, mode, upright=upright).copy())
    return tensor.unsqueeze(0) if tensor.dim() == 2 else tensor.permute(2, 0, 1).contiguous()


def read_mask(path: str | Path, threshold: float = 0.5) -> torch.Tensor:
    """Read a mask as a binary float ``(1, H, W)`` tensor (1 = foreground).

    Accepted encodings (grey: L, 1-bit, a grey palette, RGB with equal channels, 16-bit, float):

    - 0/255 (the usual black and white PNG) and any grey mask: level / 255 > ``threshold``
      (half by default) is 1. A 16-bit mask is over 65535, unless its samples are all <= 255
      (8-bit levels saved in a 16-bit file, 0/255 say), which are over 255; a float mask is
      taken as is (in [0, 1]);
    - 0/1 (a label map saved as is, which looks black): a mask whose values are only 0 and 1,
      with at least one 1, is read with 1 as foreground, whatever ``threshold``.

    An all-zero mask is empty in both readings. A colour mask (a colour palette, RGB channels
    that differ by more than ``COLOUR_SPREAD`` anywhere; JPEG noise of a grey mask stays far
    below) and transparent pixels are refused, naming the file: read by luminance or with the
    alpha band dropped they would give a silently wrong region.
    """
    import numpy as np

    image = open_image(path)
    check_opaque(image, path)
    if image.mode == "F":
        return torch.from_numpy((_unit(image, "L", path) > threshold).astype(np.float32)).unsqueeze(0)
    if image.mode in WIDE_MODES:
        _unit(image, "L", path)  # refuses samples outside [0, 65535]
        raw = np.asarray(image).astype(np.int64)
        scale = 255.0 if raw.max(initial=0) <= 255 else 65535.0
    else:
        if image.mode not in ("1", "L"):
            rgb = np.asarray(image.convert("RGB")).astype(np.int16)
            spread = rgb.max(axis=-1) - rgb.min(axis=-1)
            if (spread > COLOUR_SPREAD).any():
                raise ValueError(f"mask {path} is in colour ({image.mode}: channels differ by up to "
                                 f"{int(spread.max())}); save it as grey levels (foreground white, "
                                 "or 1 on 0)")
        raw = np.asarray(image.convert("L")).astype(np.int64)
        scale = 255.0
    if raw.max(initial=0) == 1:  # only 0 and 1 (all 1: the whole image): 1 = foreground
        binary = raw == 1
    else:
        binary = raw.astype(np.float32) / np.float32(scale) > threshold
    return torch.from_numpy(binary.astype(np.float32)).unsqueeze(0)


def _by_stem(directory: Path, exts: Sequence[str]) -> dict[str, Path]:
    if not directory.is_dir():
        raise FileNotFoundError(f"folder not found: {directory}")
    wanted = {e.lower() if e.startswith(".") else f".{e.lower()}" for e in exts}
    found: dict[str, Path] = {}
    for path in sorted(directory.iterdir()):
        if is_hidden(path):
            continue  # .DS_Store, the "._a.png" AppleDouble files of archives made on macOS
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
