"""Safe weights on disk: safetensors plus a JSON sidecar, and ``torch.load`` only with
``weights_only=True``. Wrong or corrupt files fail with the file, key and shape named."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from paperzoo.core.results import atomic_path, atomic_write_text

SIDECAR_SUFFIX = ".json"
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")


def sidecar_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def _state_dict(source: torch.nn.Module | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    state = source.state_dict() if isinstance(source, torch.nn.Module) else dict(source)
    # safetensors refuses shared storage: store an independent contiguous CPU copy of each tensor.
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}


def save_weights(source: torch.nn.Module | Mapping[str, torch.Tensor], path: str | Path,
                 meta: Mapping[str, Any] | None = None) -> Path:
    """Write a module's ``state_dict`` (buffers included) to ``path`` (.safetensors), atomically,
    with ``meta`` (JSON-serialisable) in the sidecar ``path.json``."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"weights are saved as .safetensors, got {path}")
    state = _state_dict(source)
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})
    sidecar = {"format": "paperzoo-weights", "version": 1, "num_tensors": len(state),
               "meta": dict(meta or {})}
    atomic_write_text(sidecar_path(path), json.dumps(sidecar, indent=2, sort_keys=True) + "\n")
    return path


def read_meta(path: str | Path) -> dict[str, Any]:
    """The ``meta`` stored beside a weights file (empty when there is no sidecar)."""
    sidecar = sidecar_path(path)
    if not sidecar.is_file():
        return {}
    try:
        return json.loads(sidecar.read_text())["meta"]
    except (json.JSONDecodeError, KeyError) as error:
        raise ValueError(f"corrupt metadata file {sidecar}: {error}") from error


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read tensors from ``.safetensors`` or, safely, from a torch pickle (``weights_only=True``).

    A Lightning checkpoint's ``state_dict`` entry is unwrapped.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as error:
            raise ValueError(f"corrupt or unreadable safetensors file {path}: {error}") from error
    if path.suffix not in PICKLE_SUFFIXES:
        raise ValueError(f"unknown checkpoint format {path.suffix!r} for {path}; use .safetensors or {PICKLE_SUFFIXES}")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for bad pickles
        raise ValueError(f"refusing or unable to load {path} with weights_only=True: {error}") from error
    if isinstance(loaded, Mapping) and "state_dict" in loaded:
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise ValueError(f"{path} does not hold a mapping of tensor names to tensors")
    return dict(loaded)


def check_compatible(expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor],
                     path: str | Path) -> None:
    """Raise a ``ValueError`` naming ``path`` and the first missing/unexpected/mis-shaped key."""
    for key, tensor in expected.items():
        if key not in found:
            raise ValueError(f"{path}: missing key {key!r} (expected shape {tuple(tensor.shape)})")
        if tuple(found[key].shape) != tuple(tensor.shape):
            raise ValueError(f"{path}: key {key!r} has shape {tuple(found[key].shape)}, "
                             f"the model expects {tuple(tensor.shape)}")
    extra = [key for key in found if key not in expected]
    if extra:
        raise ValueError(f"{path}: unexpected key {extra[0]!r} ({len(extra)} keys the model does not have)")


def load_weights(module: torch.nn.Module, path: str | Path, strict: bool = True) -> dict[str, Any]:
    """Load weights saved by :func:`save_weights` (or a safe torch pickle) into ``module``.

    Returns the stored ``meta``. With ``strict`` every key and shape must match.
    """
    state = load_state_dict(path)
    expected = module.state_dict()
    if strict:
        check_compatible(expected, state, path)
    else:
        state = {k: v for k, v in state.items() if k in expected and v.shape == expected[k].shape}
    module.load_state_dict(state, strict=strict)
    return read_meta(path)
