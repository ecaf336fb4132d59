"""Data for every method: seeded splits, in-memory datamodules, offline sources, readers of the
MNIST/CIFAR distribution formats, vertical partitions for federated learning, image/mask I/O
for folder datasets, and the hidden entries and UTF-8 text and JSON files of a user's folders.

Names are loaded lazily so that ``from paperzoo.core.data import VerticalPartition`` does not
import Lightning; only :class:`TensorDataModule` does.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "split_indices": "splits",
    "TensorDataModule": "datamodule",
    "RankShareOfBatches": "datamodule",
    "digits": "sources",
    "photos": "sources",
    "faces": "sources",
    "PHOTO_NAMES": "sources",
    "VerticalPartition": "vertical",
    "read_image": "images",
    "read_mask": "images",
    "unit_array": "images",
    "unit_bytes": "images",
    "exif_orientation": "images",
    "image_header": "images",
    "check_opaque": "images",
    "open_image": "images",
    "WIDE_MODES": "images",
    "paired_files": "images",
    "IMAGE_EXTENSIONS": "images",
    "is_hidden": "files",
    "HIDDEN_FOLDERS": "files",
    "read_text": "files",
    "read_json": "files",
    "read_idx": "archives",
    "read_cifar_pickle": "archives",
    "read_npz": "archives",
    "mnist": "archives",
    "cifar10": "archives",
    "cifar100": "archives",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        module = importlib.import_module(f"{__name__}.{_EXPORTS[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
