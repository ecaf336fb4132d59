"""Readers for the distribution formats of the classic image datasets, from a folder the user
gives: MNIST's IDX files and the CIFAR-10/100 python pickles. Nothing is downloaded. Also
:func:`read_npz`, the one reader of a user's ``.npz`` arrays that every method uses.

The CIFAR pickles are read with an unpickler that admits only the NumPy types those files hold,
so a tampered file cannot run code. Every loader returns images ``(N, C, H, W)`` (float in [0, 1],
or uint8 with ``as_float=False``) and int64 labels ``(N,)``.
"""

from __future__ import annotations

import gzip
import io
import pickle
import struct
from pathlib import Path
from typing import Any

import numpy as np
import torch

SPLITS = ("train", "test")
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_MNIST_PREFIX = {"train": "train", "test": "t10k"}


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    return split


def _images(array: np.ndarray, as_float: bool) -> torch.Tensor:
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    return tensor.float().div_(255.0) if as_float else tensor


def read_idx(path: str | Path) -> np.ndarray:
    """One IDX array (MNIST's format: magic, big-endian dimension sizes, data); ``.gz`` accepted."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file not found: {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as error:
        raise ValueError(f"cannot read {path}: {error}") from error
    if len(raw) < 4:
        raise ValueError(f"{path} is too short to be an IDX file")
    zero, code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or code not in _IDX_DTYPES or len(raw) < 4 + 4 * ndim:
        raise ValueError(f"{path} is not an IDX file (bad magic number)")
    shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    body = np.frombuffer(raw, dtype=_IDX_DTYPES[code], offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header announces shape {tuple(shape)} but the file holds {body.size} values")
    return body.reshape(shape)


def _mnist_file(root: Path, stem: str) -> Path:
    for folder in (root, root / "raw", root / "MNIST" / "raw"):
        for name in (stem, f"{stem}.gz"):
            if (folder / name).is_file():
                return folder / name
    raise FileNotFoundError(f"MNIST root {root} has no {stem}[.gz] (looked in the root, raw/ and "
                            "MNIST/raw/); expected the four IDX files of the MNIST distribution")


def mnist(root: str | Path, split: str = "train", as_float: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST (or Fashion-MNIST, same layout) from its IDX files: images ``(N, 1, 28, 28)``."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"MNIST root {root} is not a folder")
    prefix = _MNIST_PREFIX[_check_split(split)]
    images = read_idx(_mnist_file(root, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(_mnist_file(root, f"{prefix}-labels-idx1-ubyte"))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(f"MNIST {split} files in {root} disagree: images {images.shape}, labels {labels.shape}")
    return _images(images.astype(np.uint8)[:, None], as_float), torch.from_numpy(labels.astype(np.int64))


class _ArrayUnpickler(pickle.Unpickler):
    """Admits only what the CIFAR pickles contain: containers, bytes and NumPy arrays."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")
        return super().find_class(module, name)


def read_cifar_pickle(path: str | Path) -> dict[str, Any]:
    """One CIFAR python pickle (a batch, ``train``/``test`` or ``meta``) as a dict with str keys."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CIFAR pickle not found: {path}")
    try:
        content = _ArrayUnpickler(io.BytesIO(path.read_bytes()), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as error:
        raise ValueError(f"{path} is not a CIFAR python pickle: {error}") from error
    if not isinstance(content, dict):
        raise ValueError(f"{path} is not a CIFAR python pickle (it holds no dict)")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in content.items()}


def _cifar_arrays(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    content = read_cifar_pickle(path)
    for key in ("data", label_key):
        if key not in content:
            raise ValueError(f"{path} has no {key!r} entry")
    data = np.asarray(content["data"], dtype=np.uint8)
    labels = np.asarray(content[label_key], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise ValueError(f"{path}: data {data.shape} with {len(labels)} labels is not CIFAR's (N, 3072)")
    return data.reshape(-1, 3, 32, 32), labels


def _cifar_folder(root: Path, name: str) -> Path:
    if not root.is_dir():
        raise FileNotFoundError(f"CIFAR root {root} is not a folder")
    return root / name if (root / name).is_dir() else root


def cifar10(root: str | Path, split: str = "train", as_float: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-10's python batches (``data_batch_1..5``, ``test_batch``) under ``root`` or
    ``root/cifar-10-batches-py``: images ``(N, 3, 32, 32)``."""
    folder = _cifar_folder(Path(root), "cifar-10-batches-py")
    names = ["test_batch"] if _check_split(split) == "test" else [f"data_batch_{k}" for k in range(1, 6)]
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder} lacks the CIFAR-10 batch file(s) {missing}; expected the "
                                "python version (cifar-10-batches-py/data_batch_1..5, test_batch)")
    arrays = [_cifar_arrays(folder / n, "labels") for n in names]
    images = np.concatenate([a for a, _ in arrays])
    return _images(images, as_float), torch.from_numpy(np.concatenate([b for _, b in arrays]))


def cifar100(root: str | Path, split: str = "train", as_float: bool = True,
             labels: str = "fine") -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-100's python pickles (``train``, ``test``) under ``root`` or ``root/cifar-100-python``:
    images ``(N, 3, 32, 32)`` and the ``fine`` (100) or ``coarse`` (20) labels."""
    if labels not in ("fine", "coarse"):
        raise ValueError(f"labels must be 'fine' or 'coarse', got {labels!r}")
    folder = _cifar_folder(Path(root), "cifar-100-python")
    path = folder / _check_split(split)
    if not path.is_file():
        raise FileNotFoundError(f"missing {path}; expected layout cifar-100-python/{{train,test,meta}}")
    images, targets = _cifar_arrays(path, f"{labels}_labels")
    return _images(images, as_float), torch.from_numpy(targets)


def _native(array: np.ndarray) -> np.ndarray:
    return array if array.dtype.isnative else array.astype(array.dtype.newbyteorder("="))


def read_npz(path: str | Path, required: tuple[str, ...] | list[str] = (),
             what: str = "npz file") -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file (``numpy.savez``), read without unpickling.

    Refuses, with an error naming ``path``: a missing file, a file that is not an ``.npz``
    archive (a bare ``.npy`` array, a pickle, text, a truncated zip), an array stored as Python
    objects, and an archive that lacks any of ``required`` (the error lists what it holds).
    Arrays come back in native byte order (a big-endian ``'>f4'`` array, as other machines and
    tools write, has the same values; torch cannot wrap it as stored). ``what`` names the file's role in the messages (e.g. ``"cohort embeddings"``).
    """
    import zipfile

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{what} {path} is not an .npz archive (numpy.savez); a single .npy array "
                         "or a pickle is not accepted")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: _native(archive[key]) for key in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"{what} {path} cannot be read as an .npz archive: {error}") from error
    missing = [key for key in required if key not in arrays]
    if missing:
        raise ValueError(f"{what} {path} lacks array(s) {missing}; it holds {sorted(arrays)}")
    return arrays
