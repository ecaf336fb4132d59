"""A user's own LR, velocity and HR files: unusual but legitimate encodings are read to the same
values, malformed ones are refused naming the file and the field."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from scipy.io import netcdf_file

from paperzoo.advdiffsr.data import EvalDataset, load_user_data, write_netcdf

LR = np.random.default_rng(0).random((2, 3, 4, 4)).astype(np.float32)
U = np.zeros((1, 2, 16, 16), np.float32)


def _npz(path, **overrides):
    fields = dict(lr=LR, u=U, kappa=0.01, dt_obs=0.1, scale=4, periodic=True)
    fields.update(overrides)
    np.savez(path, **{k: v for k, v in fields.items() if v is not None})
    return path


@pytest.mark.parametrize(
    "lr",
    [LR.astype(np.float64), LR.astype(">f4"), LR.astype(">f8"), np.asfortranarray(LR)],
    ids=["float64", "big-endian-f4", "big-endian-f8", "fortran"],
)
def test_other_dtypes_and_layouts_read_to_the_same_values(tmp_path, lr):
    data = load_user_data(_npz(tmp_path / "a.npz", lr=lr, u=U.astype(">f8")))
    assert data.lr.dtype == torch.float32 and data.lr.is_contiguous()
    assert torch.equal(data.lr, torch.from_numpy(LR))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"lr": LR.astype(np.complex64)}, r"lr must be a real numeric array, got dtype complex64"),
        ({"u": U.astype(np.complex128)}, r"u must be a real numeric array, got dtype complex128"),
        ({"lr": np.full(LR.shape, "x")}, r"lr must be a real numeric array, got dtype <U1"),
        ({"scale": 4.5}, r"field 'scale' must be an integer, got 4.5"),
        ({"kappa": np.array("fast")}, r"field 'kappa' must be a real number, got 'fast'"),
        ({"kappa": True}, r"field 'kappa' must be a real number, got True"),
        ({"periodic": np.array("false")}, r"periodic is false"),
        ({"periodic": np.array("maybe")}, r"field 'periodic' must be true or false"),
        ({"noise": np.nan}, r"noise must be a finite number >= 0, got nan"),
        ({"source": np.full((1, 16, 16), np.inf, np.float32)}, r"source holds 256 NaN/inf"),
    ],
)
def test_bad_fields_are_refused_naming_file_and_field(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=f"bad.npz: .*{message}"):
        load_user_data(_npz(tmp_path / "bad.npz", **overrides))


def test_text_fields_as_bytes_or_text_are_read(tmp_path):
    data = load_user_data(
        _npz(
            tmp_path / "a.npz",
            downsample=np.bytes_(b"blur_decimate"),
            scale=np.array("4"),
            periodic=np.array("TRUE"),
        )
    )
    assert (data.downsample, data.scale) == ("blur_decimate", 4)


def test_netcdf_is_recognised_by_its_content_not_its_name(tmp_path):
    path = write_netcdf(tmp_path / "a.nc", LR, U, 0.01, 0.1, 4)
    for name in ("A.NC", "a.cdf", "a.netcdf"):
        shutil.copy(path, tmp_path / name)
        assert torch.equal(load_user_data(f"nc:{tmp_path / name}").lr, torch.from_numpy(LR))
    (tmp_path / "h5.cdf").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(64))
    with pytest.raises(ValueError, match="h5.cdf: not a readable NetCDF-3 file .*NetCDF-4"):
        load_user_data(tmp_path / "h5.cdf")


def _netcdf(path, lr, lr_attributes, periodic=1):
    with netcdf_file(path, "w") as handle:
        for name, array in (("lr", lr), ("u", U)):
            dims = tuple(f"{name}_{axis}" for axis in range(array.ndim))
            for dim, size in zip(dims, array.shape):
                handle.createDimension(dim, size)
            variable = handle.createVariable(name, array.dtype.char, dims)
            variable[:] = array
            for key, value in (lr_attributes if name == "lr" else {}).items():
                setattr(variable, key, value)
        handle.kappa, handle.dt_obs, handle.scale = np.float64(0.01), np.float64(0.1), 4
        handle.periodic = periodic
    return path


def test_netcdf_packed_fill_and_text_flags(tmp_path):
    packed = np.round((LR - 0.5) / 0.001).astype(np.int16)
    path = _netcdf(tmp_path / "packed.nc", packed, {"scale_factor": 0.001, "add_offset": 0.5})
    np.testing.assert_allclose(load_user_data(path).lr.numpy(), LR, atol=5e-4 + 1e-6, rtol=0)
    gap = LR.copy()
    gap[1, 2, 3, 0] = -999.0
    path = _netcdf(tmp_path / "gap.nc", gap, {"_FillValue": np.float32(-999.0)})
    with pytest.raises(ValueError, match=r"gap.nc: lr holds 1 NaN/inf values .*\(1, 2, 3, 0\)"):
        load_user_data(path)
    with pytest.raises(ValueError, match="flag.nc: periodic is false"):
        load_user_data(_netcdf(tmp_path / "flag.nc", LR, {}, periodic="false"))


@pytest.mark.parametrize(
    "attributes",
    [
        {"valid_range": np.array([0.0, 1.0], np.float32)},
        {"valid_min": np.float32(0.0)},
        {"missing_value": np.array([-999.0, -888.0], np.float32)},
    ],
    ids=["valid_range", "valid_min", "missing_value_vector"],
)
def test_netcdf_cells_outside_the_valid_range_are_gaps_not_numbers(tmp_path, attributes):
    lr = LR.copy()
    lr[0, 1, 2, 3] = -888.0  # a sentinel with no _FillValue: a gap by the CF attributes
    path = _netcdf(tmp_path / "range.nc", lr, attributes)
    with pytest.raises(ValueError, match=r"range.nc: lr holds 1 NaN/inf values .*\(0, 1, 2, 3\)"):
        load_user_data(path)
    clean = _netcdf(tmp_path / "clean.nc", LR, attributes)
    assert torch.equal(load_user_data(clean).lr, torch.from_numpy(LR))


def test_netcdf_packed_fill_and_range_are_compared_in_packed_units(tmp_path):
    packed = np.round((LR - 0.5) / 0.001).astype(np.int16)
    packed[1, 0, 0, 0] = -32767
    attributes = {
        "scale_factor": np.float32(0.001),
        "add_offset": np.float32(0.5),
        "_FillValue": np.int16(-32767),
        "valid_max": np.int16(500),
    }
    path = _netcdf(tmp_path / "packed.nc", packed, attributes)
    with pytest.raises(ValueError, match=r"packed.nc: lr holds 1 NaN/inf values .*\(1, 0, 0, 0\)"):
        load_user_data(path)
    packed[1, 0, 0, 0] = 0
    data = load_user_data(_netcdf(tmp_path / "ok.nc", packed, attributes)).lr.numpy()
    np.testing.assert_allclose(data, packed * 0.001 + 0.5, atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    ("hr", "message"),
    [
        (np.where(np.arange(16) == 3, np.nan, np.ones((2, 3, 16, 16))), r"hr holds 96 NaN/inf"),
        (np.ones((2, 3, 16, 16), np.complex64), r"hr must be a real numeric array"),
    ],
)
def test_bad_hr_truth_is_refused(tmp_path, hr, message):
    np.savez(tmp_path / "t_hr.npz", hr=hr)
    with pytest.raises(ValueError, match=f"t_hr.npz: {message}"):
        EvalDataset(tmp_path / "t_hr.npz")
