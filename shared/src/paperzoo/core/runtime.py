"""Seeds, devices, torch threads and progress bars: the small run-time conventions every method
shares."""

from __future__ import annotations

import contextlib
import contextvars
import os
import random
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

DEVICES = ("auto", "cpu", "cuda")
_REQUESTED_DEVICE: contextvars.ContextVar[str | None] = contextvars.ContextVar("requested_device", default=None)


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators with one integer."""
    import numpy as np
    import torch

    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - the legacy global generator, for third-party code that uses it
    torch.manual_seed(seed)


def make_generator(seed: int, device: str = "cpu"):
    """A fresh ``torch.Generator`` seeded with ``seed``: pass it to every random call."""
    import torch

    generator = torch.Generator(device=device)
    generator.manual_seed(int(seed))
    return generator


def resolve_device(device: str = "auto") -> str:
    """Map ``auto|cpu|cuda`` to a concrete torch device string; ``cuda`` without a GPU fails."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but torch sees no CUDA device")
    return device


RANK_VARIABLES = ("RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK", "NODE_RANK", "GROUP_RANK", "LOCAL_RANK")


def secondary_rank() -> str | None:
    """The launcher's variable that makes this process a rank other than global rank 0, as
    ``NAME=VALUE``, or ``None`` for rank 0 and for a process no launcher started.

    Lightning's ``ddp`` strategy relaunches the running command once per extra device with
    ``LOCAL_RANK`` set (and ``NODE_RANK`` on every node but the first); torchrun sets ``RANK``,
    SLURM ``SLURM_PROCID``. A process is rank 0 only when every one of these that is set is 0.
    """
    for name in RANK_VARIABLES:
        value = os.environ.get(name, "").strip()
        if value and value != "0":
            return f"{name}={value}"
    return None


def rank_scratch_prefix(rank: str, parent_pid: int) -> str:
    """Name prefix of the temporary ``--out`` of a rank other than 0 (:func:`secondary_rank`
    gives ``rank``), under the system's temporary folder. ``parent_pid`` is the process that
    launched the rank (rank 0 under Lightning's ``ddp``), which removes the folders of the ranks it
    killed (:class:`paperzoo.core.lightning.StopLaunchedRanksOnError`)."""
    return f"paperzoo-{rank.replace('=', '')}-of{parent_pid}-"


def requested_device() -> str | None:
    """The ``--device`` the user typed for the running command (``auto``, ``cpu`` or ``cuda``),
    before :func:`resolve_device`; ``None`` outside a command-line run.

    A verb whose options decide whether it can use a GPU (one runtime can, another cannot)
    tells an explicit ``cuda`` (refused where it cannot apply) from ``auto`` (the CPU there).
    """
    return _REQUESTED_DEVICE.get()


@contextlib.contextmanager
def device_request(device: str) -> Iterator[None]:
    """Make ``device`` the :func:`requested_device` of a block (the CLI wraps each command)."""
    token = _REQUESTED_DEVICE.set(device)
    try:
        yield
    finally:
        _REQUESTED_DEVICE.reset(token)


def progress_enabled() -> bool:
    """Progress bars on a terminal, off under CI or when output is piped."""
    if os.environ.get("PAPERZOO_PROGRESS") is not None:
        return os.environ["PAPERZOO_PROGRESS"] not in ("0", "false", "")
    if os.environ.get("CI"):
        return False
    return sys.stderr.isatty()


def progress(iterable: Iterable[T], desc: str = "", total: int | None = None, **kwargs) -> Iterator[T]:
    """``tqdm`` over ``iterable`` when :func:`progress_enabled`, the plain iterable otherwise."""
    from tqdm.auto import tqdm

    return iter(tqdm(iterable, desc=desc, total=total, disable=not progress_enabled(),
                     leave=False, dynamic_ncols=True, **kwargs))


@contextlib.contextmanager
def torch_threads(threads: int = 0) -> Iterator[int]:
    """Run a block with ``threads`` intra-op torch threads and restore the caller's setting.

    ``0`` leaves torch's setting as it is. Yields the number of threads in force.
    """
    import torch

    if not isinstance(threads, int) or threads < 0:
        raise ValueError(f"threads must be a non-negative integer (0 = torch's default), got {threads!r}")
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
