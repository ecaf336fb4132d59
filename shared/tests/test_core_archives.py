import gzip
import pickle
import struct

import numpy as np
import pytest
import torch

from paperzoo.core.data import cifar10, cifar100, mnist, read_cifar_pickle, read_idx


def _write_idx(path, array, gz=False):
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)


def _mnist_tree(root, n=5):
    rng = np.random.default_rng(0)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix in ("train", "t10k"):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10, gz=True)
    return root


def test_idx_round_trip_and_mnist_layout(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    _write_idx(tmp_path / "a.idx", array)
    assert np.array_equal(read_idx(tmp_path / "a.idx"), array)
    x, y = mnist(_mnist_tree(tmp_path / "m"), "test")
    assert x.shape == (5, 1, 28, 28) and x.dtype == torch.float32 and float(x.max()) <= 1.0
    assert y.tolist() == [0, 1, 2, 3, 4]
    raw, _ = mnist(tmp_path / "m", "train", as_float=False)
    assert raw.dtype == torch.uint8 and torch.allclose(raw.float() / 255, mnist(tmp_path / "m")[0])


def test_bad_idx_and_missing_mnist_files_are_named(tmp_path):
    (tmp_path / "bad.idx").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="bad.idx is not an IDX file"):
        read_idx(tmp_path / "bad.idx")
    short = struct.pack(">HBB", 0, 0x08, 1) + struct.pack(">I", 10) + b"\x00" * 3
    (tmp_path / "short.idx").write_bytes(short)
    with pytest.raises(ValueError, match=r"announces shape \(10,\) but the file holds 3"):
        read_idx(tmp_path / "short.idx")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        mnist(tmp_path / "empty")
    with pytest.raises(ValueError, match="split"):
        mnist(tmp_path / "empty", "val")


def _cifar_pickle(path, n, label_key, extra=None):
    data = {b"data": np.random.default_rng(1).integers(0, 256, (n, 3072), dtype=np.uint8),
            label_key.encode(): list(range(n))}
    data.update(extra or {})
    path.write_bytes(pickle.dumps(data))


def test_cifar10_and_cifar100_layouts(tmp_path):
    folder = tmp_path / "c10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for k in range(1, 6):
        _cifar_pickle(folder / f"data_batch_{k}", 2, "labels")
    _cifar_pickle(folder / "test_batch", 3, "labels")
    x, y = cifar10(tmp_path / "c10")
    assert x.shape == (10, 3, 32, 32) and y.tolist() == [0, 1] * 5
    assert cifar10(tmp_path / "c10", "test")[0].shape == (3, 3, 32, 32)
    c100 = tmp_path / "c100" / "cifar-100-python"
    c100.mkdir(parents=True)
    _cifar_pickle(c100 / "train", 4, "fine_labels", {b"coarse_labels": [0, 0, 1, 1]})
    x, y = cifar100(tmp_path / "c100", as_float=False)
    assert x.dtype == torch.uint8 and x.shape == (4, 3, 32, 32) and y.tolist() == [0, 1, 2, 3]
    assert cifar100(tmp_path / "c100", labels="coarse")[1].tolist() == [0, 0, 1, 1]
    # channel-major layout: the first 1024 values are the red plane
    raw = read_cifar_pickle(c100 / "train")["data"]
    assert torch.equal(x[0, 0].flatten(), torch.from_numpy(raw[0, :1024]))


def test_cifar_pickles_refuse_code_and_name_missing_files(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("executed",))

    (tmp_path / "evil").write_bytes(pickle.dumps({b"data": Payload()}))
    with pytest.raises(ValueError, match="refusing to unpickle builtins.print"):
        read_cifar_pickle(tmp_path / "evil")
    (tmp_path / "c10").mkdir()
    with pytest.raises(FileNotFoundError, match="data_batch_1"):
        cifar10(tmp_path / "c10")
    with pytest.raises(FileNotFoundError, match="cifar-100-python"):
        cifar100(tmp_path / "c10")


def test_read_npz_reads_arrays_and_names_the_file_in_every_refusal(tmp_path):
    import pickle

    import numpy as np
    import pytest

    from paperzoo.core.data import read_npz

    good = tmp_path / "good.npz"
    np.savez(good, x=np.arange(6.0).reshape(2, 3), y=np.array([0, 1]))
    arrays = read_npz(good, required=("x", "y"))
    assert sorted(arrays) == ["x", "y"] and arrays["x"].shape == (2, 3) and arrays["y"].tolist() == [0, 1]
    with pytest.raises(ValueError, match=r"features .*good\.npz lacks array\(s\) \['z'\]; it holds \['x', 'y'\]"):
        read_npz(good, required=("x", "z"), what="features")
    with pytest.raises(FileNotFoundError, match="npz file not found: .*absent.npz"):
        read_npz(tmp_path / "absent.npz")
    npy = tmp_path / "bare.npy"
    np.save(npy, np.zeros(3))
    with pytest.raises(ValueError, match=r"bare\.npy is not an \.npz archive"):
        read_npz(npy)
    pickled = tmp_path / "p.npz"
    pickled.write_bytes(pickle.dumps({"x": 1}))
    with pytest.raises(ValueError, match=r"p\.npz is not an \.npz archive"):
        read_npz(pickled)
    objects = tmp_path / "objects.npz"
    np.savez(objects, x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match=r"objects\.npz cannot be read as an \.npz archive"):
        read_npz(objects)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[:-30])
    with pytest.raises(ValueError, match=r"truncated\.npz"):
        read_npz(truncated)


def test_read_npz_returns_native_byte_order_with_the_same_values(tmp_path):
    import numpy as np
    import torch

    from paperzoo.core.data import read_npz

    path = tmp_path / "big_endian.npz"
    values = np.array([[1.5, -2.0], [3.25, 1e-3]])
    np.savez(path, x=values.astype(">f4"), y=np.array([1, 300], dtype=">i2"), z=np.array([7], dtype="u1"))
    arrays = read_npz(path)
    assert all(array.dtype.isnative for array in arrays.values())
    assert arrays["x"].dtype == np.float32 and arrays["y"].dtype == np.int16 and arrays["z"].dtype == np.uint8
    np.testing.assert_array_equal(arrays["x"], values.astype(np.float32))
    assert arrays["y"].tolist() == [1, 300]
    assert torch.from_numpy(arrays["x"]).sum().item() == np.float32(values.astype(np.float32).sum())
