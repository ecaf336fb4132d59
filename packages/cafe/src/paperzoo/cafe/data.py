"""Datasets of the CAFE experiments, read only from a root the user passes (nothing downloads).

- ``digits``: scikit-learn's 8 x 8 digits in [0, 1] (offline; the validation data).
- ``mnist``: IDX files (``train-images-idx3-ubyte[.gz]`` ...) in the root, or torchvision's
  ``MNIST/raw`` folder below it.
- ``cifar10``: the python pickle batches (``cifar-10-batches-py/data_batch_1`` ...), read with an
  unpickler that only admits the numpy types those files contain.
- ``linnaeus5``: class-folder JPEGs (``train/<class>/*.jpg``, ``test/<class>/*.jpg``), resized.

Every loader returns float images ``(N, C, H, W)`` in [0, 1] and int64 labels ``(N,)``.
"""

from __future__ import annotations

import gzip
import io
import pickle
import struct
from pathlib import Path

import numpy as np
import torch

DATASETS = ("digits", "mnist", "cifar10", "linnaeus5")
CIFAR_CLASSES = 10


def _idx_file(root: Path, stem: str) -> Path:
    for folder in (root, root / "MNIST" / "raw", root / "raw"):
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                return folder / name
    raise FileNotFoundError(f"MNIST root {root} has no {stem}[.gz] (looked in the root, MNIST/raw "
                            "and raw); expected the IDX files of the MNIST distribution")


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX array (the MNIST format: magic, dimension sizes, big-endian data)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        data = handle.read()
    if len(data) < 4:
        raise ValueError(f"{path} is too short to be an IDX file")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    dtypes = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if zero != 0 or dtype_code not in dtypes:
        raise ValueError(f"{path} is not an IDX file (bad magic number)")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=dtypes[dtype_code], offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header announces shape {shape} but holds {body.size} values")
    return body.reshape(shape)


def load_mnist(root: str | Path, split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST from IDX files: images ``(N, 1, 28, 28)``."""
    root = _root(root)
    prefix = {"train": "train", "test": "t10k"}[_split(split)]
    images = read_idx(_idx_file(root, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(_idx_file(root, f"{prefix}-labels-idx1-ubyte"))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(f"MNIST {split} files in {root} disagree: images {images.shape}, labels {labels.shape}")
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    return x, torch.from_numpy(labels.astype(np.int64))


class _CifarUnpickler(pickle.Unpickler):
    """Admit only what CIFAR-10 batches hold: dicts, lists, bytes and numpy arrays."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR batch")
        return super().find_class(module, name)


def _cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as handle:
            batch = _CifarUnpickler(io.BytesIO(handle.read()), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError) as error:
        raise ValueError(f"{path} is not a CIFAR-10 python batch: {error}") from error
    if not isinstance(batch, dict):
        raise ValueError(f"{path} is not a CIFAR-10 python batch (no dict inside)")
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    if data is None or labels is None:
        raise ValueError(f"{path} lacks the 'data' or 'labels' entry of a CIFAR-10 batch")
    data = np.asarray(data, dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(labels):
        raise ValueError(f"{path}: data {data.shape} with {len(labels)} labels is not CIFAR-10's (N, 3072)")
    return data, np.asarray(labels, dtype=np.int64)


def load_cifar10(root: str | Path, split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-10 python batches: images ``(N, 3, 32, 32)``."""
    root = _root(root)
    folder = root / "cifar-10-batches-py" if (root / "cifar-10-batches-py").is_dir() else root
    names = ["test_batch"] if _split(split) == "test" else [f"data_batch_{i}" for i in range(1, 6)]
    files = [folder / name for name in names if (folder / name).is_file()]
    if not files:
        raise FileNotFoundError(f"CIFAR-10 root {root} has no {' or '.join(names[:2])}... in "
                                f"{folder}; expected the python version (cifar-10-batches-py)")
    arrays = [_cifar_batch(path) for path in files]
    data = np.concatenate([a for a, _ in arrays]).reshape(-1, 3, 32, 32)
    labels = np.concatenate([b for _, b in arrays])
    return torch.from_numpy(data.astype(np.float32) / 255.0), torch.from_numpy(labels)


def load_linnaeus5(root: str | Path, split: str = "train", size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Linnaeus 5 (class-folder JPEGs), resized to ``size x size``; labels by sorted class name."""
    from paperzoo.core.data import IMAGE_EXTENSIONS, read_image

    root = _root(root)
    folder = root / _split(split) if (root / _split(split)).is_dir() else root
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    files = [(path, label) for label, name in enumerate(classes)
             for path in sorted((folder / name).iterdir()) if path.suffix.lower() in IMAGE_EXTENSIONS]
    if not files:
        raise FileNotFoundError(f"Linnaeus 5 root {root} has no class folders of images in {folder}; "
                                "expected train/<class>/*.jpg and test/<class>/*.jpg")
    images = []
    for path, _ in files:
        image = read_image(path, mode="RGB").unsqueeze(0)
        image = torch.nn.functional.interpolate(image, size=(size, size), mode="bilinear",
                                                antialias=True, align_corners=False)
        images.append(image.clamp(0, 1))
    return torch.cat(images), torch.tensor([label for _, label in files], dtype=torch.int64)


def _root(root: str | Path | None) -> Path:
    if root is None or str(root) == "":
        raise ValueError("this dataset is read from a local folder: pass --root DIR (nothing is downloaded)")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset root {root} is not a folder")
    return root


def _split(split: str) -> str:
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return split


def load_dataset(name: str = "digits", root: str | Path | None = None, split: str = "train",
                 size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """All images and labels of a dataset (``digits`` ignores ``root`` and ``split``)."""
    if name == "digits":
        from paperzoo.core.data import digits

        return digits()
    if name == "mnist":
        return load_mnist(root, split)
    if name == "cifar10":
        return load_cifar10(root, split)
    if name == "linnaeus5":
        return load_linnaeus5(root, split, size)
    raise ValueError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")


def attack_subset(images: torch.Tensor, labels: torch.Tensor, n_samples: int,
                  seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded random subset of ``n_samples`` training samples (the data the VFL run uses)."""
    if not 1 <= n_samples <= len(images):
        raise ValueError(f"n_samples must be between 1 and the dataset size {len(images)}, got {n_samples}")
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(int(seed)))[:n_samples]
    return images[order].contiguous(), labels[order].contiguous()
