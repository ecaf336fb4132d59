"""Data loaders on fixture trees that copy the real layouts, and their errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from paperzoo.diffcleanse.data import (
    CelebAData,
    Cifar10Data,
    ImageFolderData,
    NpzData,
    SyntheticData,
    digits_images,
    load_images,
)

from .conftest import write_celeba, write_cifar, write_folder


def test_digits_sizes_and_range():
    for size in (8, 16):
        images = digits_images(size)
        assert images.shape == (1797, 1, size, size) and images.min() >= -1 and images.max() <= 1


def test_cifar_layout(tmp_path):
    root = write_cifar(tmp_path / "c")
    data = Cifar10Data(root)
    assert data.images.shape == (20, 3, 32, 32) and data.images.min() >= -1
    small = Cifar10Data(root, train=False, size=16, channels=1, resize=True)
    assert small.images.shape == (4, 1, 16, 16)
    (root / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_3"):
        Cifar10Data(root)


def test_folder_celeba_npz(tmp_path):
    folder = write_folder(tmp_path / "imgs")
    assert ImageFolderData(folder, size=16, channels=1, resize=True).images.shape == (3, 1, 16, 16)
    with pytest.raises(ValueError, match="--resize"):
        ImageFolderData(folder, size=16, resize=False)
    with pytest.raises(FileNotFoundError, match="no images"):
        ImageFolderData(write_folder(tmp_path / "none", n=0))
    root = write_celeba(tmp_path / "celeba")
    assert CelebAData(root, size=16).images.shape == (2, 3, 16, 16)
    (root / "list_eval_partition.txt").unlink()
    with pytest.raises(FileNotFoundError, match="list_eval_partition"):
        CelebAData(root)
    np.savez(
        tmp_path / "a.npz", images=np.random.default_rng(0).random((5, 8, 8)).astype(np.float32)
    )
    assert NpzData(tmp_path / "a.npz", size=8, channels=1).images.shape == (5, 1, 8, 8)
    with pytest.raises(ValueError, match="--resize"):
        load_images(f"npz:{tmp_path / 'a.npz'}", 16, 1, resize=False)
    np.savez(tmp_path / "b.npz", x=np.zeros((2, 8, 8)))
    with pytest.raises(ValueError, match=r"b\.npz lacks array\(s\) \['images'\]"):
        NpzData(tmp_path / "b.npz")
    with pytest.raises(ValueError, match="unknown data source"):
        load_images("imagenet:/x", 8)


def test_synthetic_data_from_a_model(micro):
    data = SyntheticData(micro, n=4, steps=2)
    assert data.images.shape == (4, 1, 8, 8) and data.images.abs().max() <= 1
    assert torch.equal(data.images, SyntheticData(micro, n=4, steps=2).images)


class _OpensAFile:
    """A pickle payload that creates ``marker`` when unpickled (what a tampered batch could do)."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_cifar_batches_are_read_by_the_restricted_core_reader(tmp_path):
    """Spec 6: a tampered, corrupt or wrongly shaped batch is refused naming the file; the payload
    of a tampered one never runs (raw ``pickle.load`` would create the marker)."""
    import pickle

    root = write_cifar(tmp_path / "c")
    batch = root / "cifar-10-batches-py" / "data_batch_2"
    marker = tmp_path / "payload_ran"
    batch.write_bytes(pickle.dumps({b"data": _OpensAFile(marker), b"labels": [0]}))
    with pytest.raises(ValueError, match="data_batch_2"):
        Cifar10Data(root)
    assert not marker.exists()
    batch.write_bytes(b"not a pickle at all")
    with pytest.raises(ValueError, match="data_batch_2"):
        Cifar10Data(root)
    with batch.open("wb") as handle:
        pickle.dump({b"data": np.zeros((4, 100), dtype=np.uint8), b"labels": [0] * 4}, handle)
    with pytest.raises(ValueError, match=r"data_batch_2.*\(4, 100\)"):
        Cifar10Data(root)


def test_load_images_refuses_other_sizes_unless_resize(tmp_path):
    """Spec 6: images of another size are refused without --resize (the default)."""
    folder = write_folder(tmp_path / "imgs")  # 20x20
    root = write_cifar(tmp_path / "c")  # 32x32
    for source in (f"folder:{folder}", f"cifar10:{root}"):
        with pytest.raises(ValueError, match="--resize"):
            load_images(source, 16, 1)
        assert load_images(source, 16, 1, resize=True).shape[-2:] == (16, 16)
    assert load_images(f"cifar10:{root}", 32, 3).shape == (20, 3, 32, 32)
    assert load_images("digits", 16, 1).shape == (1797, 1, 16, 16)  # rendered at the model's size


def test_npz_source_refuses_other_formats_naming_the_file(tmp_path):
    """npz:FILE is read by the core's read_npz: a bare .npy, a pickle, object arrays, a missing
    file are refused with an error naming the file (never unpickled)."""
    import pickle
    import re

    images = np.random.default_rng(0).random((3, 8, 8)).astype(np.float32)
    np.save(tmp_path / "a.npy", images)
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "a.npy"))):
        NpzData(tmp_path / "a.npy")
    with pytest.raises(ValueError, match="not an .npz archive"):
        load_images(f"npz:{tmp_path / 'a.npy'}", 8)
    (tmp_path / "p.npz").write_bytes(pickle.dumps({"images": images}))
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "p.npz"))):
        NpzData(tmp_path / "p.npz")
    np.savez(tmp_path / "o.npz", images=np.array([images, "x"], dtype=object))
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "o.npz"))):
        NpzData(tmp_path / "o.npz")
    np.savez(tmp_path / "s.npz", images=np.array([["a", "b"], ["c", "d"]]))
    with pytest.raises(ValueError, match=r"s\.npz: images must be numbers"):
        NpzData(tmp_path / "s.npz")
    with pytest.raises(FileNotFoundError, match="nowhere.npz"):
        NpzData(tmp_path / "nowhere.npz")
