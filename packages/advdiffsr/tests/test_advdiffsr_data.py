"""Simulated files, user files and every bad input of the spec (section 7)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from paperzoo.advdiffsr.data import (
    EvalDataset,
    LRSequenceDataset,
    LRSequences,
    dataset_velocity,
    holdout_mask,
    load_lr,
    load_user_data,
    relative_divergence,
    simulate_dataset,
    write_netcdf,
)
from paperzoo.advdiffsr.operators import block_mean


def test_simulate_writes_lr_and_hr_apart(small_data_dir):
    names = sorted(p.name for p in small_data_dir.iterdir())
    assert names == ["test_hr.npz", "test_lr.npz", "train_lr.npz", "val_hr.npz", "val_lr.npz"]
    for split in ("train", "val", "test"):
        with np.load(small_data_dir / f"{split}_lr.npz") as archive:
            assert "hr" not in archive.files
    test = load_lr(small_data_dir / "test_lr.npz")
    truth = EvalDataset(small_data_dir / "test_hr.npz").hr
    assert test.lr.shape == (2, 12, 8, 8) and truth.shape == (2, 12, 32, 32)
    assert torch.allclose(block_mean(truth, 4).float(), test.lr, atol=1e-6)
    # distinct initial-condition seeds per split
    val = load_lr(small_data_dir / "val_lr.npz")
    assert not torch.allclose(val.lr[0], test.lr[0])


def _write(path, **overrides):
    fields = dict(
        lr=np.random.default_rng(0).random((2, 4, 4, 4)).astype(np.float32),
        u=np.zeros((1, 2, 16, 16), np.float32),
        kappa=0.01,
        dt_obs=0.1,
        scale=4,
        downsample="block_mean",
        periodic=True,
    )
    fields.update(overrides)
    fields = {k: v for k, v in fields.items() if v is not None}
    np.savez(path, **fields)
    return path


def test_user_file_round_trip_with_npz_prefix(tmp_path):
    path = _write(tmp_path / "mine.npz")
    data = load_user_data(f"npz:{path}")
    assert data.lr.shape == (2, 4, 4, 4) and data.u.shape == (1, 1, 2, 16, 16) and data.scale == 4
    single = load_user_data(_write(tmp_path / "one.npz", lr=np.zeros((4, 4, 4), np.float32)))
    assert single.lr.shape == (1, 4, 4, 4)


def test_netcdf_round_trip_matches_npz_and_bad_netcdf_is_refused(tmp_path):
    from scipy.io import netcdf_file

    npz = load_lr(_write(tmp_path / "mine.npz"))
    path = write_netcdf(
        tmp_path / "mine.nc", npz.lr.numpy(), npz.u[0].numpy(), 0.01, 0.1, 4, noise=0.02
    )
    data = load_user_data(f"nc:{path}")
    assert torch.equal(data.lr, npz.lr) and torch.equal(data.u, npz.u)
    assert (data.kappa, data.dt_obs, data.scale, data.downsample, data.noise) == (
        0.01,
        0.1,
        4,
        "block_mean",
        0.02,
    )
    with netcdf_file(tmp_path / "bad.nc", "w") as handle:  # kappa as a variable, N not n x scale
        (
            handle.createDimension("t", 4),
            handle.createDimension("n", 4),
            handle.createDimension("c", 2),
        )
        (
            handle.createDimension("N", 12),
            handle.createDimension("b", 2),
            handle.createDimension("one", 1),
        )
        handle.createVariable("lr", "f4", ("b", "t", "n", "n"))[:] = 1.0
        handle.createVariable("u", "f4", ("one", "c", "N", "N"))[:] = 0.0
        handle.createVariable("kappa", "f8", ("one",))[:] = 0.01
        handle.dt_obs, handle.scale = 0.1, 4
    with pytest.raises(
        ValueError, match=r"bad.nc: velocity u has grid \(12, 12\) but N = n x scale"
    ):
        load_lr(tmp_path / "bad.nc")


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"hr": np.zeros((2, 4, 16, 16))}, "holds an 'hr' array"),
        (
            {"lr": np.full((2, 4, 4, 4), np.nan, np.float32)},
            r"lr holds 128 NaN/inf values \(first at index \(0, 0, 0, 0\)\)",
        ),
        ({"u": np.zeros((1, 2, 12, 12), np.float32)}, "N = n x scale"),
        (
            {"u": np.zeros((3, 2, 16, 16), np.float32)},
            r"velocity u must have shape \(T or 1, 2, N, N\)",
        ),
        ({"u": np.zeros((1, 3, 16, 16), np.float32)}, "velocity u must have shape"),
        ({"periodic": False}, "periodic is false"),
        ({"kappa": -1.0}, "kappa must be >= 0"),
        ({"dt_obs": 0.0}, "dt_obs must be > 0"),
        ({"lr": np.zeros((2, 1, 4, 4), np.float32)}, "T >= 2"),
        (
            {"downsample": "lanczos"},
            "unknown downsample 'lanczos'; choose from block_mean, point_sample, blur_decimate",
        ),
        ({"scale": None}, "missing field 'scale'"),
    ],
)
def test_bad_user_files_are_refused_with_the_field_named(tmp_path, overrides, message):
    path = _write(tmp_path / "bad.npz", **overrides)
    with pytest.raises(ValueError, match=message):
        load_lr(path)


def test_missing_file_and_netcdf(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.npz"):
        load_lr(tmp_path / "nowhere.npz")
    with pytest.raises(FileNotFoundError, match="data.nc"):
        load_lr(tmp_path / "data.nc")
    (tmp_path / "hdf5.nc").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(64))
    with pytest.raises(ValueError, match=r"hdf5.nc: not a readable NetCDF-3 file"):
        load_lr(tmp_path / "hdf5.nc")
    with pytest.raises(ValueError, match="not divisible by the scale"):
        simulate_dataset(tmp_path / "x", hr=30, scale=4)
    with pytest.raises(ValueError, match="n_train must be a positive integer"):
        simulate_dataset(tmp_path / "x", n_train=0)
    with pytest.raises(
        ValueError,
        match="unknown velocity 'vortex'; choose from uniform, cellular, random_streamfunction",
    ):
        simulate_dataset(tmp_path / "x", velocity="vortex")


def test_holdout_mask_hides_the_fraction_per_frame_and_is_seeded():
    a = holdout_mask((3, 5, 8, 8), 0.1, torch.Generator().manual_seed(0))
    b = holdout_mask((3, 5, 8, 8), 0.1, torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
    assert bool(((1 - a).sum((-1, -2)) == round(0.1 * 64)).all())
    with pytest.raises(ValueError, match="holdout fraction"):
        holdout_mask((1, 1, 4, 4), 1.0, torch.Generator())


def test_training_items_hold_no_hr(small_data_dir):
    data = load_lr(small_data_dir / "train_lr.npz")
    dataset = LRSequenceDataset(data, window=8, holdout=0.1, seed=0)
    N = data.hr_size
    for item in (dataset[i] for i in range(len(dataset))):
        assert set(item) == {"lr", "mask", "seq", "t0"}
        for value in item.values():
            assert not (isinstance(value, torch.Tensor) and value.shape[-1] == N)
    with pytest.raises(ValueError, match="window 20 is longer"):
        LRSequenceDataset(data, window=20)


def test_in_memory_sequences_are_validated():
    u = torch.zeros(1, 1, 2, 16, 16)
    with pytest.raises(ValueError, match="lr must have shape"):
        LRSequences(torch.zeros(4, 4, 4), u, 0.1, 0.1, 4)
    with pytest.raises(ValueError, match="scale must be a positive integer"):
        LRSequences(torch.zeros(1, 4, 4, 4), u, 0.1, 0.1, 0)


def test_npy_pickle_and_missing_arrays_are_refused_naming_the_file(tmp_path):
    """LR and HR readers go through the core's ``read_npz``: a bare ``.npy`` array, a pickle or an
    archive without the needed array is refused with the file named (no TypeError from
    ``np.load`` returning a plain array)."""
    import pickle

    bare = tmp_path / "bare.npy"
    np.save(bare, np.zeros((2, 4, 4, 4), np.float32))
    for reader in (load_lr, EvalDataset):
        with pytest.raises(ValueError, match=r"bare.npy is not an .npz archive"):
            reader(bare)
    renamed = tmp_path / "renamed.npz"
    renamed.write_bytes(bare.read_bytes())
    with pytest.raises(ValueError, match=r"renamed.npz is not an .npz archive"):
        load_user_data(f"npz:{renamed}")
    pickled = tmp_path / "pickled.npz"
    pickled.write_bytes(pickle.dumps({"lr": np.zeros(3)}))
    with pytest.raises(ValueError, match=r"pickled.npz is not an .npz archive"):
        load_lr(pickled)
    with pytest.raises(ValueError, match=r"no_u.npz lacks array\(s\) \['u'\]"):
        load_lr(_write(tmp_path / "no_u.npz", u=None))
    np.savez(tmp_path / "no_hr.npz", truth=np.zeros((1, 2, 4, 4)))
    with pytest.raises(ValueError, match=r"no_hr.npz lacks array\(s\) \['hr'\]"):
        EvalDataset(tmp_path / "no_hr.npz")
    with pytest.raises(FileNotFoundError, match="HR file not found: .*nowhere_hr.npz"):
        EvalDataset(tmp_path / "nowhere_hr.npz")


def _grid16():
    axis = 2 * np.pi * np.arange(16) / 16
    return np.meshgrid(axis, axis, indexing="xy")  # arrays indexed [y, x]


def test_divergent_velocity_is_refused_naming_the_file_and_the_value(tmp_path):
    """``u`` must be divergence-free (README data layout): checked spectrally on [0, 2 pi)^2."""
    x, _ = _grid16()
    divergent = 0.5 * np.stack([np.sin(x), 0 * x])[None].astype(np.float32)  # div u = 0.5 cos x
    path = _write(tmp_path / "div_lr.npz", u=divergent)
    # max |div u| / (max |u| N / 2 pi) = 0.5 / (0.5 x 16 / 2 pi) = 0.393
    with pytest.raises(
        ValueError,
        match=r"div_lr.npz: velocity u is not divergence-free: max \|div u\| / "
        r"\(max \|u\| N / 2 pi\) = 0.393 > 0.05",
    ):
        load_user_data(f"npz:{path}")
    with pytest.raises(ValueError, match="<memory>: velocity u is not divergence-free"):
        LRSequences(torch.zeros(1, 4, 4, 4), torch.from_numpy(divergent)[None], 0.1, 0.1, 4)
    # the same flow written [x, y] (transposed) is not divergence-free on the [y, x] grid
    good = dataset_velocity("random_streamfunction", 16, seed=0).float()
    load_lr(_write(tmp_path / "good_lr.npz", u=good.numpy()))
    transposed = good.transpose(-1, -2).contiguous().numpy()
    with pytest.raises(ValueError, match="transposed_lr.npz: velocity u is not divergence-free"):
        load_lr(_write(tmp_path / "transposed_lr.npz", u=transposed))
    # a smooth flow differentiated from its streamfunction by centred differences is accepted
    n = 64
    y, x = np.meshgrid(np.arange(n) * 2 * np.pi / n, np.arange(n) * 2 * np.pi / n, indexing="ij")
    psi = np.sin(8 * x) * np.cos(3 * y) + 0.5 * np.cos(2 * x + y)
    h = 2 * np.pi / n
    u_x = (np.roll(psi, -1, 0) - np.roll(psi, 1, 0)) / (2 * h)  # d psi / dy
    u_y = -(np.roll(psi, -1, 1) - np.roll(psi, 1, 1)) / (2 * h)  # -d psi / dx
    centred = np.stack([u_x, u_y])[None].astype(np.float32)
    assert 1e-3 < relative_divergence(torch.from_numpy(centred)) < 0.05


def test_the_package_velocities_pass_the_divergence_check(small_data_dir):
    for kind in ("uniform", "cellular", "random_streamfunction"):
        for N in (16, 32, 64):
            for seed in (0, 1):
                assert relative_divergence(dataset_velocity(kind, N, seed).float()) < 1e-6
    assert relative_divergence(torch.zeros(1, 2, 16, 16)) == 0.0
    for split in ("train", "val", "test"):
        load_lr(small_data_dir / f"{split}_lr.npz")
    x, y = _grid16()
    cellular = np.stack([np.sin(x) * np.cos(y), -np.cos(x) * np.sin(y)])  # [y, x] layout
    assert relative_divergence(torch.from_numpy(cellular)) < 1e-12
