"""Real dataset layouts from tiny fixture trees (nothing downloads)."""

from __future__ import annotations

import gzip
import os
import pickle
import re
import struct

import numpy as np
import pytest
import torch

from paperzoo.cafe.data import attack_subset, load_dataset


def _write_idx(path, array: np.ndarray, gz: bool = False) -> None:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if gz:
        with gzip.open(str(path) + ".gz", "wb") as handle:
            handle.write(payload)
    else:
        path.write_bytes(payload)


def test_mnist_idx_files(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    images = np.arange(3 * 28 * 28).reshape(3, 28, 28) % 256
    _write_idx(raw / "train-images-idx3-ubyte", images, gz=True)
    _write_idx(raw / "train-labels-idx1-ubyte", np.array([7, 1, 4]))
    x, y = load_dataset("mnist", tmp_path)
    assert x.shape == (3, 1, 28, 28) and y.tolist() == [7, 1, 4]
    assert float(x[0, 0, 0, 1]) == pytest.approx(1 / 255)


def test_mnist_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        load_dataset("mnist", tmp_path)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x01\x02\x03\x04rubbish")
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(b"\x00")
    with pytest.raises(ValueError, match="IDX"):
        load_dataset("mnist", tmp_path)


def test_cifar_pickle_batch(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    data = (np.arange(2 * 3072) % 256).astype(np.uint8).reshape(2, 3072)
    for k in range(1, 6):
        with open(folder / f"data_batch_{k}", "wb") as handle:
            pickle.dump({b"data": data, b"labels": [3, 9], b"batch_label": b"x"}, handle)
    x, y = load_dataset("cifar10", tmp_path)
    assert x.shape == (10, 3, 32, 32) and y.tolist() == [3, 9] * 5
    assert torch.equal(x[0, 0, 0, :3] * 255, torch.tensor([0.0, 1.0, 2.0]))


def test_cifar_refuses_foreign_pickles(tmp_path):
    for k in range(1, 6):
        with open(tmp_path / f"data_batch_{k}", "wb") as handle:
            pickle.dump({b"data": os.getcwd, b"labels": []}, handle)
    with pytest.raises(ValueError, match="refusing"):
        load_dataset("cifar10", tmp_path)


def test_linnaeus_class_folders(tmp_path):
    from PIL import Image

    for name, colour in (("berry", (255, 0, 0)), ("dog", (0, 0, 255))):
        folder = tmp_path / "train" / name
        folder.mkdir(parents=True)
        for k in range(2):
            Image.new("RGB", (40, 40), colour).save(folder / f"{k}_256.jpg")
    x, y = load_dataset("linnaeus5", tmp_path, size=16)
    assert x.shape == (4, 3, 16, 16) and y.tolist() == [0, 0, 1, 1]
    assert float(x[0, 0].mean()) > 0.9 and float(x[2, 2].mean()) > 0.9


def test_missing_root_and_unknown_dataset(tmp_path):
    with pytest.raises(ValueError, match="pass --scenario.root DIR"):
        load_dataset("cifar10", None)
    with pytest.raises(FileNotFoundError, match="not a folder"):
        load_dataset("linnaeus5", tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="class folders"):
        load_dataset("linnaeus5", tmp_path)
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("imagenet", tmp_path)


def test_npz_that_is_not_an_npz_archive_is_refused_naming_the_file(tmp_path):
    np.save(tmp_path / "array.npy", np.zeros((4, 3), dtype=np.float32))
    (tmp_path / "text.npz").write_text("x,y\n0,1\n")
    for name in ("array.npy", "text.npz"):
        path = tmp_path / name
        with pytest.raises(ValueError, match=re.escape(f"npz file {path} is not an .npz archive")):
            load_dataset(f"npz:{path}")
    np.savez(
        tmp_path / "objects.npz",
        x=np.array([{"a": 1}] * 4, dtype=object),
        y=np.zeros(4, dtype=np.int64),
    )
    with pytest.raises(ValueError, match="objects.npz cannot be read as an .npz archive"):
        load_dataset(f"npz:{tmp_path / 'objects.npz'}")
    with pytest.raises(FileNotFoundError, match="absent.npz"):
        load_dataset(f"npz:{tmp_path / 'absent.npz'}")
    np.savez(tmp_path / "ok.npz", x=np.ones((4, 3)), y=np.array([0, 1, 0, 1]))
    x, y = load_dataset(f"npz:{tmp_path / 'ok.npz'}")
    assert x.shape == (4, 3) and x.dtype == torch.float32 and y.tolist() == [0, 1, 0, 1]
    np.savez(tmp_path / "flat.npz", x=np.ones(4), y=np.array([0, 1, 0, 1]))
    with pytest.raises(ValueError, match="x must be"):  # the shape checks still apply
        load_dataset(f"npz:{tmp_path / 'flat.npz'}")


def test_channels_last_npz_images_are_refused_naming_the_layout(tmp_path):
    """(N, H, W, C) read as (C, H, W) gave "4 parties on 8 x 3" or, when the sizes divide, a
    silent misread."""
    for shape in ((4, 8, 8, 3), (4, 8, 6, 1), (4, 12, 12, 3)):
        path = tmp_path / f"hwc_{shape[1]}_{shape[3]}.npz"
        np.savez(path, x=np.zeros(shape, dtype=np.float32), y=np.array([0, 1, 0, 1]))
        height, width, channels = shape[1:]
        message = re.escape(
            f"looks channels-last: each sample is ({height}, {width}, {channels}), i.e. (H, W, C) = "
            f"({height}, {width}, {channels}), but images must be channels-first (N, C, H, W), "
            f"here (N, {channels}, {height}, {width}); transpose them first: x = x.transpose(0, 3, 1, 2)"
        )
        with pytest.raises(ValueError, match=message):
            load_dataset(f"npz:{path}")
    for shape in ((4, 3, 8, 8), (4, 1, 8, 3), (4, 4, 8, 3)):  # channels-first, kept as they are
        path = tmp_path / "chw.npz"
        np.savez(path, x=np.zeros(shape, dtype=np.float32), y=np.array([0, 1, 0, 1]))
        assert tuple(load_dataset(f"npz:{path}")[0].shape) == shape


def test_digits_offline_and_subset():
    x, y = load_dataset("digits")
    assert x.shape == (1797, 1, 8, 8) and float(x.max()) <= 1.0
    a, _ = attack_subset(x, y, 10, seed=1)
    b, _ = attack_subset(x, y, 10, seed=1)
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="n_samples"):
        attack_subset(x, y, 5000)
