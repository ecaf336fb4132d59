"""Data: the simulated data set, user arrays, the LR-only training dataset and the scoring-only
HR reader (spec section 3).

File layout (``.npz``): ``lr [(B,) T, n, n]``, ``u [(B,) T or 1, 2, N, N]``, ``kappa``, ``dt_obs``,
``scale``, ``downsample``, ``periodic`` (must be true), optional ``noise`` (observation noise
std) and ``source [T or 1, N, N]``. ``simulate_dataset`` writes ``train_lr.npz``, ``val_lr.npz``,
``test_lr.npz`` and, apart, ``val_hr.npz`` and ``test_hr.npz`` (key ``hr``). Training, the
datamodule and the weight selection receive only ``*_lr.npz`` paths; an LR file holding an
``hr`` array is refused. ``EvalDataset`` (HR) is opened by scoring code only. NetCDF (``.nc``,
the classic NetCDF-3 format read by ``scipy.io.netcdf_file``): the same names as variables, the
scalars as variables or global attributes; ``write_netcdf`` writes one. NetCDF-4/HDF5 files need
a conversion (e.g. ``xarray``'s ``to_netcdf(format="NETCDF3_64BIT")``).

Conventions (the simulator's): the periodic domain is ``[0, 2 pi)^2`` (HR cell ``j`` at ``2 pi j /
N``), so ``u`` is in domain units per unit of ``dt_obs``'s time and ``kappa`` in domain units
squared per unit time (data of physical side ``L`` converts by ``u 2 pi / L``, ``kappa (2 pi /
L)^2``); every array is indexed ``[y, x]`` (last axis x; ``numpy.meshgrid(..., indexing="xy")``),
``u[..., 0, :, :]`` the x and ``u[..., 1, :, :]`` the y component, and data stored ``[x, y]`` must
be transposed on its last two axes (a transposed ``lr`` cannot be detected); ``u`` must be
divergence-free: :func:`relative_divergence` above ``DIVERGENCE_TOLERANCE`` (``0.05``) is refused
naming the file and the value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from paperzoo.advdiffsr.operators import DOWNSAMPLES, downsample
from paperzoo.advdiffsr.simulator import VELOCITY_KINDS, make_velocity, puffs, simulate_sequence

SPLIT_SEED_OFFSETS = {"train": 0, "val": 1, "test": 2}
# max |div u| / (max |u| N / 2 pi) above which a velocity is refused. Float32 rounding of a
# divergence-free field gives about 1e-7 (the package's simulated velocities, measured: < 1e-6);
# a smooth field differentiated from a streamfunction by centred differences gives up to about
# 0.02 (N 64, wavenumber 8), a transposed or component-swapped field 0.1-0.4 (measured)
DIVERGENCE_TOLERANCE = 0.05


@dataclass
class LRSequences:
    """LR observations and the known physics of one split (no HR).

    ``lr`` ``(B, T, n, n)`` float32; ``u`` ``(B or 1, T or 1, 2, N, N)`` float32.
    """

    lr: torch.Tensor
    u: torch.Tensor
    kappa: float
    dt_obs: float
    scale: int
    downsample: str = "block_mean"
    noise: float = 0.0
    source: torch.Tensor | None = None
    path: str = "<memory>"

    def __post_init__(self) -> None:
        validate_lr_sequences(self)

    @property
    def num_sequences(self) -> int:
        return self.lr.shape[0]

    @property
    def frames(self) -> int:
        return self.lr.shape[1]

    @property
    def hr_size(self) -> int:
        return self.lr.shape[-1] * self.scale

    def velocity(self, index: torch.Tensor | slice | int) -> torch.Tensor:
        """``u`` for the given sequences (broadcast when one field is shared)."""
        return self.u if self.u.shape[0] == 1 else self.u[index]

    def subset(self, index) -> LRSequences:
        index = torch.as_tensor(index)
        return LRSequences(
            self.lr[index],
            self.u if self.u.shape[0] == 1 else self.u[index],
            self.kappa,
            self.dt_obs,
            self.scale,
            self.downsample,
            self.noise,
            self.source,
            self.path,
        )


def relative_divergence(u: torch.Tensor, chunk: int = 64) -> float:
    """``max |div u| / (max |u| N / L)`` of velocities ``(..., 2, N, N)`` on the periodic
    ``[0, 2 pi)^2`` grid (``L = 2 pi``; channel 0 the x component along the last axis, channel 1 the
    y component along the axis before), by spectral derivatives in float64 (Nyquist modes
    zeroed). ``max |u| N / L`` is the size of a grid-scale gradient of the field, so the value is
    ``O(1)`` for an unstructured field and at rounding level (about ``1e-7`` for float32 input)
    for a divergence-free one. 0 for a zero field."""
    from paperzoo.advdiffsr.operators import gradient

    N = u.shape[-1]
    fields = u.reshape(-1, 2, *u.shape[-2:])
    speed = float(fields.double().norm(dim=1).max()) if fields.numel() else 0.0
    if speed == 0.0:
        return 0.0
    worst = 0.0
    for start in range(0, fields.shape[0], chunk):
        part = fields[start : start + chunk].double()
        div = gradient(part[:, 0])[0] + gradient(part[:, 1])[1]
        worst = max(worst, float(div.abs().max()))
    return worst / (speed * N / (2 * math.pi))


def _check_finite(array: torch.Tensor, name: str, where: str) -> None:
    bad = ~torch.isfinite(array)
    if bad.any():
        first = tuple(int(i) for i in bad.nonzero()[0])
        raise ValueError(
            f"{where}: {name} holds {int(bad.sum())} NaN/inf values (first at index {first})"
        )


def validate_lr_sequences(data: LRSequences) -> None:
    """The bad inputs of spec section 7, each with the array and shape named."""
    where = data.path
    lr = data.lr
    if lr.ndim != 4:
        raise ValueError(f"{where}: lr must have shape (B, T, n, n), got {tuple(lr.shape)}")
    if lr.shape[-1] != lr.shape[-2]:
        raise ValueError(f"{where}: lr frames must be square, got {tuple(lr.shape[-2:])}")
    if lr.shape[1] < 2:
        raise ValueError(f"{where}: lr has T = {lr.shape[1]} frames; the PDE residual needs T >= 2")
    _check_finite(lr, "lr", where)
    if not isinstance(data.scale, int) or data.scale < 1:
        raise ValueError(f"{where}: scale must be a positive integer, got {data.scale!r}")
    N = lr.shape[-1] * data.scale
    u = data.u
    if (
        u.ndim != 5
        or tuple(u.shape[2:]) != (2, N, N)
        or u.shape[1] not in (1, lr.shape[1])
        or u.shape[0] not in (1, lr.shape[0])
    ):
        raise ValueError(
            f"{where}: velocity u must have shape (T or 1, 2, N, N) or (B, T or 1, 2, N, N) with "
            f"T = {lr.shape[1]}, B = {lr.shape[0]} and N = n x scale = {lr.shape[-1]} x {data.scale} "
            f"= {N}, got {tuple(u.shape)}"
        )
    if not torch.isfinite(u).all():
        raise ValueError(f"{where}: velocity u holds NaN or inf values")
    divergence = relative_divergence(u)
    if divergence > DIVERGENCE_TOLERANCE:
        raise ValueError(
            f"{where}: velocity u is not divergence-free: max |div u| / (max |u| N / 2 pi) = "
            f"{divergence:.3g} > {DIVERGENCE_TOLERANCE:g} (spectral derivatives on [0, 2 pi)^2; "
            "u[..., 0, :, :] is the x component, u[..., 1, :, :] the y component, every array "
            "indexed [y, x]: a field laid out [x, y] or with its components swapped is not "
            "divergence-free on this grid)"
        )
    if not math.isfinite(data.kappa) or data.kappa < 0:
        raise ValueError(f"{where}: kappa must be >= 0, got {data.kappa}")
    if not math.isfinite(data.dt_obs) or data.dt_obs <= 0:
        raise ValueError(f"{where}: dt_obs must be > 0, got {data.dt_obs}")
    if data.downsample not in DOWNSAMPLES:
        raise ValueError(
            f"{where}: unknown downsample {data.downsample!r}; choose from {', '.join(DOWNSAMPLES)}"
        )
    if data.downsample == "point_sample" and data.scale % 2 == 0:
        raise ValueError(f"{where}: point_sample needs an odd scale, got {data.scale}")
    if not math.isfinite(data.noise) or data.noise < 0:
        raise ValueError(f"{where}: noise must be a finite number >= 0, got {data.noise}")
    if data.source is not None and (
        data.source.ndim != 3
        or tuple(data.source.shape[1:]) != (N, N)
        or data.source.shape[0] not in (1, lr.shape[1])
    ):
        raise ValueError(
            f"{where}: source must have shape (T or 1, {N}, {N}), got {tuple(data.source.shape)}"
        )
    if data.source is not None:
        _check_finite(data.source, "source", where)


def _scalar(archive, key: str, path: Path, kind=float):
    """A numeric scalar field; text holding a number is accepted, a bool, a non-number or (for
    ``int``) a non-integer value is refused naming the field."""
    if key not in archive:
        raise ValueError(f"{path}: missing field {key!r}")
    value = np.asarray(archive[key])
    if value.size != 1:
        raise ValueError(f"{path}: field {key!r} must be a scalar, got shape {value.shape}")
    item = value.item()
    if isinstance(item, bytes):
        item = item.decode()
    try:
        if isinstance(item, (bool, complex)):
            raise ValueError
        number = float(item)
    except (TypeError, ValueError):
        raise ValueError(f"{path}: field {key!r} must be a real number, got {item!r}") from None
    if kind is int:
        if not number.is_integer():
            raise ValueError(f"{path}: field {key!r} must be an integer, got {item!r}")
        return int(number)
    return number


def _text(archive, key: str, path: Path, default: str) -> str:
    """A text field (``str`` or ``bytes``, as NetCDF attributes and ``numpy.savez`` store it)."""
    if key not in archive:
        return default
    item = np.asarray(archive[key]).item() if np.asarray(archive[key]).size == 1 else None
    if isinstance(item, bytes):
        item = item.decode()
    if not isinstance(item, str):
        raise ValueError(f"{path}: field {key!r} must be text, got {archive[key]!r}")
    return item


def _flag(archive, key: str, path: Path, default: bool) -> bool:
    """A boolean field: ``True``/``False``, 1/0 or the text ``true``/``false``/``yes``/``no``
    (any case); anything else is refused (``bool("false")`` would be true)."""
    if key not in archive:
        return default
    value = np.asarray(archive[key])
    item = value.item() if value.size == 1 else None
    if isinstance(item, bytes):
        item = item.decode()
    if isinstance(item, str):
        words = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
        if item.strip().lower() in words:
            return words[item.strip().lower()]
    elif isinstance(item, (bool, int)) and item in (0, 1):
        return bool(item)
    elif isinstance(item, float) and item in (0.0, 1.0):
        return bool(item)
    raise ValueError(f"{path}: field {key!r} must be true or false (or 1/0), got {item!r}")


def _real_array(archive, key: str, path: Path, dtype=np.float32) -> torch.Tensor:
    """A numeric field as a native-order, C-contiguous ``dtype`` tensor (float16/64, integer,
    big-endian and Fortran-order arrays are converted); complex, text and boolean arrays are
    refused naming the field."""
    array = np.asarray(archive[key])
    if array.dtype.kind not in "fiu":
        raise ValueError(
            f"{path}: {key} must be a real numeric array, got dtype {array.dtype}"
            + (" (complex: the imaginary part would be dropped)" if array.dtype.kind == "c" else "")
        )
    return torch.from_numpy(np.ascontiguousarray(array, dtype=dtype))


def _cf_decoded(variable) -> np.ndarray:
    """A NetCDF variable's values by the CF conventions (sections 2.5.1 and 8.1).

    Cells equal to ``_FillValue`` or ``missing_value``, or outside ``valid_range`` /
    ``valid_min`` / ``valid_max`` (compared in the stored, packed units), become NaN, so that a
    gap is refused by the NaN checks instead of read as a number; then ``scale_factor`` and
    ``add_offset`` unpack the values. A variable with none of these attributes keeps its dtype."""
    raw = np.array(variable[...])
    attributes = variable._attributes
    missing = np.zeros(raw.shape, dtype=bool)
    for key in ("_FillValue", "missing_value"):
        if key in attributes:
            for value in np.asarray(attributes[key]).ravel():
                missing |= raw == value
    bounds = np.asarray(attributes.get("valid_range", [])).ravel()
    low = bounds[0] if bounds.size == 2 else attributes.get("valid_min")
    high = bounds[1] if bounds.size == 2 else attributes.get("valid_max")
    if low is not None:
        missing |= raw < np.asarray(low).ravel()[0]
    if high is not None:
        missing |= raw > np.asarray(high).ravel()[0]
    data = raw
    if "scale_factor" in attributes or "add_offset" in attributes:
        scale = np.asarray(attributes.get("scale_factor", 1.0)).ravel()[0]
        offset = np.asarray(attributes.get("add_offset", 0.0)).ravel()[0]
        data = raw.astype(np.float64) * scale + offset
    if missing.any():
        data = data.astype(np.float64)
        data[missing] = np.nan
    return data


def _read_netcdf(path: Path) -> dict[str, np.ndarray]:
    """Every variable and global attribute of a NetCDF-3 file as numpy arrays (read into memory),
    variables decoded by :func:`_cf_decoded` (unpacked; fill, missing and out-of-range cells
    NaN)."""
    from scipy.io import netcdf_file

    try:
        with netcdf_file(path, "r", mmap=False, maskandscale=False) as handle:
            fields = {name: _cf_decoded(var) for name, var in handle.variables.items()}
            for name, value in handle._attributes.items():
                fields.setdefault(
                    name, np.asarray(value.decode() if isinstance(value, bytes) else value)
                )
    except (OSError, TypeError, ValueError) as error:
        raise ValueError(
            f"{path}: not a readable NetCDF-3 file ({error}); NetCDF-4/HDF5 files must be "
            "converted, e.g. xarray's to_netcdf(format='NETCDF3_64BIT'), or saved with numpy.savez"
        ) from error
    return fields


def _read_fields(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` (the core's ``read_npz``: a bare ``.npy``, a pickle or an archive
    without ``lr`` and ``u`` is refused naming the file) or NetCDF-3 file, told apart by their
    first bytes (``CDF``; ``.nc`` and ``.NC`` alike), not by the name."""
    from paperzoo.core.data import read_npz

    if not path.is_file():
        raise FileNotFoundError(f"LR data file not found: {path}")
    with open(path, "rb") as handle:
        magic = handle.read(8)
    if magic.startswith(b"\x89HDF"):
        raise ValueError(
            f"{path}: not a readable NetCDF-3 file (it is NetCDF-4/HDF5); convert it, e.g. "
            "xarray's to_netcdf(format='NETCDF3_64BIT'), or save the arrays with numpy.savez"
        )
    if magic.startswith(b"CDF") or (path.suffix.lower() == ".nc" and not magic.startswith(b"PK")):
        return _read_netcdf(path)
    return read_npz(path, required=("lr", "u"), what="LR data file")


def write_netcdf(
    path: str | Path,
    lr: np.ndarray,
    u: np.ndarray,
    kappa: float,
    dt_obs: float,
    scale: int,
    downsample: str = "block_mean",
    noise: float = 0.0,
    source: np.ndarray | None = None,
) -> Path:
    """Write an LR file in NetCDF-3 (the layout ``load_lr`` reads): arrays as variables, the
    scalars as global attributes."""
    from scipy.io import netcdf_file

    path = Path(path)
    arrays = {"lr": np.asarray(lr, np.float32), "u": np.asarray(u, np.float32)}
    if source is not None:
        arrays["source"] = np.asarray(source, np.float32)
    with netcdf_file(path, "w") as handle:
        for name, array in arrays.items():
            dims = tuple(f"{name}_{axis}" for axis in range(array.ndim))
            for dim, size in zip(dims, array.shape):
                handle.createDimension(dim, size)
            handle.createVariable(name, "f4", dims)[:] = array
        # numpy float64 scalars: scipy stores a plain Python float as 32-bit NC_FLOAT
        handle.kappa, handle.dt_obs, handle.scale = (
            np.float64(kappa),
            np.float64(dt_obs),
            int(scale),
        )
        handle.downsample, handle.noise, handle.periodic = downsample, np.float64(noise), 1
    return path


def load_lr(path: str | Path) -> LRSequences:
    """Read an LR file (``.npz`` or NetCDF-3 ``.nc``); refuses an ``hr`` array and every bad input
    of spec section 7.

    Conventions (module docstring): domain ``[0, 2 pi)^2``, which fixes the units of ``u`` (domain
    units per unit time) and ``kappa`` (domain units squared per unit time); arrays indexed
    ``[y, x]`` with ``u``'s channel 0 the x and channel 1 the y component (data stored ``[x, y]``
    must be transposed first); ``u`` divergence-free, checked spectrally
    (:func:`relative_divergence` > ``DIVERGENCE_TOLERANCE`` raises a ``ValueError`` naming the
    file and the measured value). Arrays of any real dtype and byte order are read as float32
    (integers as they are, not rescaled); complex or text arrays, NaN/inf in ``lr``, ``u`` or
    ``source``, and scalars that are not numbers (``scale`` not an integer) are refused."""
    path = Path(path)
    archive = _read_fields(path)
    if "hr" in archive:
        raise ValueError(
            f"{path}: holds an 'hr' array; training files must hold LR observations only "
            "(keep HR in a separate *_hr.npz used for scoring)"
        )
    for key in ("lr", "u"):
        if key not in archive:
            raise ValueError(f"{path}: missing array {key!r}")
    if not _flag(archive, "periodic", path, True):
        raise ValueError(f"{path}: periodic is false; only periodic domains are supported (v1)")
    lr, u = _real_array(archive, "lr", path), _real_array(archive, "u", path)
    scale = _scalar(archive, "scale", path, int)
    source = _real_array(archive, "source", path) if "source" in archive else None
    downsample_kind = _text(archive, "downsample", path, "block_mean")
    noise = _scalar(archive, "noise", path) if "noise" in archive else 0.0
    kappa, dt_obs = _scalar(archive, "kappa", path), _scalar(archive, "dt_obs", path)
    if lr.ndim == 3:
        lr = lr[None]
    if lr.ndim == 4 and lr.shape[-1] * scale != u.shape[-1] and u.ndim >= 3:
        raise ValueError(
            f"{path}: velocity u has grid {tuple(u.shape[-2:])} but N = n x scale = "
            f"{lr.shape[-1]} x {scale} = {lr.shape[-1] * scale}"
        )
    if u.ndim == 4:
        u = u[None]
    return LRSequences(lr, u, kappa, dt_obs, scale, downsample_kind, noise, source, str(path))


def load_user_data(path: str | Path) -> LRSequences:
    """User data: ``npz:FILE`` / ``nc:FILE`` or a plain ``.npz`` / ``.nc`` path with the layout and
    conventions of this module's docstring (domain ``[0, 2 pi)^2``, arrays indexed ``[y, x]``,
    divergence-free ``u``; see :func:`load_lr`)."""
    text = str(path)
    for prefix in ("npz:", "nc:"):
        if text.startswith(prefix):
            text = text[len(prefix) :]
    return load_lr(text)


class EvalDataset:
    """HR truth of a split (``*_hr.npz``, key ``hr`` ``(B, T, N, N)``, real and finite) for
    scoring code only."""

    def __init__(self, path: str | Path) -> None:
        from paperzoo.core.data import read_npz

        path = Path(path)
        archive = read_npz(path, required=("hr",), what="HR file")
        self.hr = _real_array(archive, "hr", path, np.float64)
        if self.hr.ndim != 4:
            raise ValueError(f"{path}: hr must have shape (B, T, N, N), got {tuple(self.hr.shape)}")
        _check_finite(self.hr, "hr", str(path))  # a NaN truth would make every score NaN
        self.path = str(path)


def holdout_mask(
    shape: tuple[int, ...], fraction: float, generator: torch.Generator
) -> torch.Tensor:
    """``(..., n, n)`` float mask: a seeded ``fraction`` of the LR cells of every frame set to 0."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"holdout fraction must be in [0, 1), got {fraction}")
    n2 = shape[-1] * shape[-2]
    hidden = round(fraction * n2)
    scores = torch.rand(*shape[:-2], n2, generator=generator)
    mask = torch.ones(*shape[:-2], n2)
    if hidden:
        mask.scatter_(-1, scores.argsort(-1)[..., :hidden], 0.0)
    return mask.reshape(shape)


class LRSequenceDataset(Dataset):
    """Windows of ``window`` consecutive LR frames with their hold-out mask; never any HR.

    Items: ``{"lr": (W, n, n), "mask": (W, n, n), "seq": int, "t0": int}``.
    """

    def __init__(
        self,
        data: LRSequences,
        window: int = 16,
        holdout: float = 0.1,
        seed: int = 0,
        stride: int = 1,
    ) -> None:
        if not isinstance(window, int) or window < 2:
            raise ValueError(f"window must be an integer >= 2, got {window!r}")
        if window > data.frames:
            raise ValueError(
                f"window {window} is longer than the {data.frames} frames of {data.path}"
            )
        if not isinstance(stride, int) or stride < 1:
            raise ValueError(f"stride must be a positive integer, got {stride!r}")
        self.data = data
        self.window = window
        self.mask = holdout_mask(
            tuple(data.lr.shape), holdout, torch.Generator().manual_seed(seed + 7919)
        )
        starts = range(0, data.frames - window + 1, stride)
        self.index = [(s, t0) for s in range(data.num_sequences) for t0 in starts]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, item: int) -> dict:
        s, t0 = self.index[item]
        window = slice(t0, t0 + self.window)
        return {"lr": self.data.lr[s, window], "mask": self.mask[s, window], "seq": s, "t0": t0}


def train_loader(
    data: LRSequences, window: int = 16, batch_size: int = 4, holdout: float = 0.1, seed: int = 0
) -> DataLoader:
    """Seeded shuffled windows of the training LR (same seed, same batches in the same order)."""
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    dataset = LRSequenceDataset(data, window, holdout, seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        drop_last=False,
        generator=torch.Generator().manual_seed(seed),
    )


class LRDataModule(L.LightningDataModule):
    """A LightningDataModule over an LR training file (``*_lr.npz``) or ``LRSequences``; LR only."""

    def __init__(
        self,
        train: str | Path | LRSequences,
        window: int = 16,
        batch_size: int = 4,
        holdout: float = 0.1,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.train = train if isinstance(train, LRSequences) else load_lr(train)
        self.window, self.batch_size, self.holdout, self.seed = window, batch_size, holdout, seed

    def train_dataloader(self) -> DataLoader:
        return train_loader(self.train, self.window, self.batch_size, self.holdout, self.seed)


# -- the simulated data set ---------------------------------------------------------------------
def simulate_split(
    count: int,
    hr: int,
    scale: int,
    frames: int,
    dt_obs: float,
    kappa: float,
    velocity: torch.Tensor,
    noise: float,
    seed: int,
    downsample_kind: str = "block_mean",
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(hr (B, T, N, N) float64, lr (B, T, n, n) float32)`` from seeded puff initial conditions."""
    generator = torch.Generator().manual_seed(int(seed))
    c0 = puffs(hr, generator=generator, batch=count)
    truth = simulate_sequence(c0, velocity, kappa, frames, dt_obs)
    lr = downsample(truth, scale, downsample_kind)
    if noise > 0:
        lr = lr + noise * torch.randn(lr.shape, generator=generator, dtype=lr.dtype)
    return truth, lr.float()


def _check_counts(**counts: int) -> None:
    for name, value in counts.items():
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def dataset_velocity(velocity: str, hr: int, seed: int = 0) -> torch.Tensor:
    """The velocity field ``simulate_dataset`` uses for a named kind (``uniform`` (0.5, 0.25),
    ``cellular`` with the spec's defaults, ``random_streamfunction`` seeded by the data seed)."""
    kwargs = {"seed": seed} if velocity == "random_streamfunction" else {}
    if velocity == "uniform":
        kwargs = {"a": 0.5, "b": 0.25}
    return make_velocity(velocity, hr, **kwargs)


def simulate_dataset(
    out: str | Path,
    n_train: int = 48,
    n_val: int = 8,
    n_test: int = 16,
    hr: int = 64,
    scale: int = 4,
    frames: int = 32,
    dt_obs: float = 0.025,
    kappa: float = 0.005,
    velocity: str = "cellular",
    noise: float = 0.0,
    seed: int = 0,
    downsample_kind: str = "block_mean",
) -> dict[str, Path]:
    """Write ``train_lr.npz``, ``val_lr.npz``, ``test_lr.npz``, ``val_hr.npz``, ``test_hr.npz``
    (spec section 3); splits use distinct initial-condition seeds. Returns the paths."""
    from paperzoo.core.results import atomic_path

    _check_counts(n_train=n_train, n_val=n_val, n_test=n_test, hr=hr, scale=scale, frames=frames)
    if hr % scale:
        raise ValueError(f"hr {hr} is not divisible by the scale {scale}")
    if frames < 2:
        raise ValueError(f"frames must be >= 2, got {frames}")
    if dt_obs <= 0 or kappa < 0 or noise < 0:
        raise ValueError(f"need dt_obs > 0, kappa >= 0, noise >= 0; got {dt_obs}, {kappa}, {noise}")
    if velocity not in VELOCITY_KINDS:
        raise ValueError(f"unknown velocity {velocity!r}; choose from {', '.join(VELOCITY_KINDS)}")
    u = dataset_velocity(velocity, hr, seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    meta = dict(
        u=u.numpy().astype(np.float32),
        kappa=np.float64(kappa),
        dt_obs=np.float64(dt_obs),
        scale=np.int64(scale),
        downsample=np.str_(downsample_kind),
        periodic=np.bool_(True),
        noise=np.float64(noise),
    )
    paths = {}
    for split, count in (("train", n_train), ("val", n_val), ("test", n_test)):
        truth, lr = simulate_split(
            count,
            hr,
            scale,
            frames,
            dt_obs,
            kappa,
            u,
            noise,
            1000 * seed + SPLIT_SEED_OFFSETS[split],
            downsample_kind,
        )
        paths[f"{split}_lr"] = out / f"{split}_lr.npz"
        with atomic_path(paths[f"{split}_lr"]) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, lr=lr.numpy(), **meta)
        if split != "train":  # training HR is never written: nothing can leak it
            paths[f"{split}_hr"] = out / f"{split}_hr.npz"
            with atomic_path(paths[f"{split}_hr"]) as tmp, open(tmp, "wb") as handle:
                np.savez(handle, hr=truth.numpy())
    return paths
