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


def read_image(path: str | Path, mode: str = "RGB") -> torch.Tensor:
    """Read an image as float ``(C, H, W)`` in [0, 1]; ``mode`` is a PIL mode (``RGB``, ``L``)."""
    import numpy as np

    array = np.asarray(_open(path).convert(mode), dtype=np.float32) / 255.0
    tensor = torch.from_numpy(array.copy())
    return tensor.unsqueeze(0) if tensor.dim() == 2 else tensor.permute(2, 0, 1).contiguous()


def read_mask(path: str | Path, threshold: float = 0.5) -> torch.Tensor:
    """Read a mask as a binary float ``(1, H, W)`` tensor (1 = foreground).

    Accepted encodings, after conversion to 8-bit grey:

    - 0/255 (the usual black and white PNG) and any grey mask: grey level / 255 > ``threshold``
      (half by default) is 1;
    - 0/1 (a label map saved as is, which looks black): a mask whose values are only 0 and 1,
      with at least one 1, is read with 1 as foreground, whatever ``threshold``.

    An all-zero mask is empty in both readings.
    """
    import numpy as np

    grey = np.asarray(_open(path).convert("L"), dtype=np.uint8)
    if grey.max(initial=0) == 1:  # only 0 and 1: a 0/1 mask, 1 = foreground
        binary = grey == 1
    else:
        binary = grey.astype(np.float32) / 255.0 > threshold
    return torch.from_numpy(binary.astype(np.float32)).unsqueeze(0)


def _by_stem(directory: Path, exts: Sequence[str]) -> dict[str, Path]:
    if not directory.is_dir():
        raise FileNotFoundError(f"folder not found: {directory}")
    wanted = {e.lower() if e.startswith(".") else f".{e.lower()}" for e in exts}
    found: dict[str, Path] = {}
    for path in sorted(directory.iterdir()):
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
