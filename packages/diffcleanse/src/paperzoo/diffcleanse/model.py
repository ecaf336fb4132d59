"""The diffusion models Diff-Cleanse inspects: diffusers ``UNet2DModel`` presets and the DDPM
noise schedule (spec section 1, threat model), plus loading and saving diffusers folders.

Presets (``create_model(name, **overrides)``, ``list_models()``): ``micro`` (1x8x8, widths
(16, 32)), ``tiny`` (1x16x16, (32, 64, 64), one layer per block, 8 groups), ``tiny_attn`` (+
attention at 8x8) and ``paper``/``ddpm_cifar10`` (3x32x32, (128, 256, 256, 256), two layers,
attention at 16x16, the google/ddpm-cifar10-32 architecture). Explicit overrides beat the preset.

Folders: ``save_unet`` writes the diffusers pipeline layout (``unet/config.json``,
``unet/diffusion_pytorch_model.safetensors``, ``scheduler/scheduler_config.json``); a pruned UNet
adds ``unet/pruning.json`` (the shrunk ResNet blocks and their GroupNorm groups), which
``load_unet`` applies before a strict load. The folder is built beside its place and swapped in
by renames, so an interrupted save leaves the old folder whole. ``load_unet`` also reads a bare
UNet folder (``config.json`` + weights) as ``save_pretrained`` writes it.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel

from paperzoo.core.data import read_json
from paperzoo.core.registry import Registry

__all__ = [
    "MODELS",
    "create_model",
    "list_models",
    "make_scheduler",
    "load_unet",
    "on_device",
    "check_scheduler_config",
    "save_unet",
    "replace_folder",
    "unet_shape",
    "NUM_TRAIN_TIMESTEPS",
    "PRUNING_FILE",
    "WEIGHTS_FILE",
]

NUM_TRAIN_TIMESTEPS = 1000
BETA_START, BETA_END = 1e-4, 0.02
PRUNING_FILE = "pruning.json"
WEIGHTS_FILE = "diffusion_pytorch_model.safetensors"
PICKLED_WEIGHTS = ("diffusion_pytorch_model.bin", "pytorch_model.bin")
SCHEDULER_FILE = "scheduler_config.json"
# The spec's DDPM (spec 1, threat model). A folder's scheduler must keep it: sampling reads the
# folder's config but the losses (training, pruning importance, fine-tune) and ``save_unet`` use
# ``make_scheduler`` with these values, so another schedule would be used half of the time.
SPEC_SCHEDULE: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_schedule": "linear",
    "beta_start": 1e-4,
    "beta_end": 0.02,
    "prediction_type": "epsilon",
}
# diffusers schedulers parameterised by these betas (their defaults are the spec's values)
BETA_SCHEDULERS = (
    "DDPMScheduler",
    "DDIMScheduler",
    "PNDMScheduler",
    "DPMSolverMultistepScheduler",
    "UniPCMultistepScheduler",
)


def _unet(
    sample_size: int = 16,
    in_channels: int = 1,
    block_out_channels: tuple[int, ...] = (32, 64, 64),
    layers_per_block: int = 1,
    norm_num_groups: int = 8,
    attention_levels: tuple[int, ...] = (),
    attention_head_dim: int | None = 8,
    dropout: float = 0.0,
) -> UNet2DModel:
    """A ``UNet2DModel`` whose level ``i`` has ``block_out_channels[i]`` channels and attention when
    ``i`` is in ``attention_levels`` (diffusers' DDPM layout, ``Attn*Block2D`` blocks)."""
    levels = len(block_out_channels)
    if levels < 1 or any(int(c) < 1 for c in block_out_channels):
        raise ValueError(f"block_out_channels must be positive widths, got {block_out_channels}")
    if any(int(c) % norm_num_groups for c in block_out_channels):
        raise ValueError(
            f"norm_num_groups={norm_num_groups} must divide every width of {block_out_channels}"
        )
    if sample_size % 2 ** (levels - 1):
        raise ValueError(
            f"sample_size={sample_size} must be divisible by 2**{levels - 1} for {levels} levels"
        )
    bad = [a for a in attention_levels if not 0 <= a < levels]
    if bad:
        raise ValueError(f"attention_levels {bad} outside 0..{levels - 1}")
    down = tuple(
        "AttnDownBlock2D" if i in attention_levels else "DownBlock2D" for i in range(levels)
    )
    up = tuple(
        "AttnUpBlock2D" if levels - 1 - i in attention_levels else "UpBlock2D"
        for i in range(levels)
    )
    return UNet2DModel(
        sample_size=sample_size,
        in_channels=in_channels,
        out_channels=in_channels,
        layers_per_block=layers_per_block,
        block_out_channels=tuple(block_out_channels),
        down_block_types=down,
        up_block_types=up,
        norm_num_groups=norm_num_groups,
        attention_head_dim=attention_head_dim,
        dropout=dropout,
    )


MODELS = Registry("model")
MODELS.add("micro", _unet, sample_size=8, block_out_channels=(16, 32), norm_num_groups=8)
MODELS.add("tiny", _unet, sample_size=16, block_out_channels=(32, 64, 64), norm_num_groups=8)
MODELS.add(
    "tiny_attn",
    _unet,
    sample_size=16,
    block_out_channels=(32, 64, 64),
    norm_num_groups=8,
    attention_levels=(1,),
)
_CIFAR = dict(
    sample_size=32,
    in_channels=3,
    block_out_channels=(128, 256, 256, 256),
    layers_per_block=2,
    norm_num_groups=32,
    attention_levels=(1,),
    attention_head_dim=None,
    dropout=0.1,
)
MODELS.add("ddpm_cifar10", _unet, **_CIFAR)
MODELS.add("paper", _unet, **_CIFAR)
create_model = MODELS.create
list_models = MODELS.names


def make_scheduler(kind: str = "ddpm", config: dict[str, Any] | None = None):
    """The DDPM training schedule (T = 1000, linear beta 1e-4 -> 0.02, never clipped, spec 1)
    as a diffusers ``DDPMScheduler`` (``kind="ddpm"``) or ``DDIMScheduler`` (``"ddim"``)."""
    settings = dict(
        num_train_timesteps=NUM_TRAIN_TIMESTEPS,
        beta_start=BETA_START,
        beta_end=BETA_END,
        beta_schedule="linear",
        clip_sample=False,
        prediction_type="epsilon",
    )
    if config:
        settings.update(
            {
                k: config[k]
                for k in (
                    "num_train_timesteps",
                    "beta_start",
                    "beta_end",
                    "beta_schedule",
                    "prediction_type",
                )
                if k in config
            }
        )
        settings["clip_sample"] = False
    if kind == "ddpm":
        return DDPMScheduler(**settings)
    if kind == "ddim":
        return DDIMScheduler(**settings)
    raise ValueError(f"unknown scheduler kind {kind!r}; choose ddpm or ddim")


def unet_shape(unet: UNet2DModel) -> tuple[int, int, int]:
    """The ``(C, H, W)`` of the UNet's samples."""
    size = unet.config.sample_size
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    return int(unet.config.in_channels), int(height), int(width)


def _unet_dir(folder: Path) -> Path:
    if (folder / "unet" / "config.json").is_file():
        return folder / "unet"
    return folder


def _read_config(unet_dir: Path) -> dict[str, Any]:
    config_file = unet_dir / "config.json"
    if not config_file.is_file():
        raise ValueError(
            f"{unet_dir} is not a diffusers UNet folder: no config.json (nor unet/config.json)"
        )
    config = read_json(config_file, "UNet config")
    if not isinstance(config, dict):
        raise ValueError(f"{config_file}: a UNet config must be a JSON object")
    if config.get("_class_name") != "UNet2DModel":
        raise ValueError(
            f"{config_file}: _class_name is {config.get('_class_name')!r}, expected 'UNet2DModel'"
        )
    return config


def _weights(unet_dir: Path) -> Path:
    weights = unet_dir / WEIGHTS_FILE
    if weights.is_file():
        return weights
    pickled = [name for name in PICKLED_WEIGHTS if (unet_dir / name).is_file()]
    if pickled:
        raise ValueError(
            f"{unet_dir / pickled[0]}: pickled weights are refused; convert them to {WEIGHTS_FILE}"
        )
    raise ValueError(f"{unet_dir} is not a diffusers UNet folder: no weights file {WEIGHTS_FILE}")


def check_scheduler_config(config: Any, source: str) -> dict[str, Any]:
    """Refuse a scheduler config whose noise schedule is not the spec's DDPM (T = 1000, linear beta
    1e-4 -> 0.02, epsilon prediction); a field left out takes diffusers' default, which is the spec's.
    ``source`` names the file in the error."""
    if not isinstance(config, dict):
        raise ValueError(f"{source}: a scheduler config must be a JSON object")
    name = config.get("_class_name")
    if name is not None and name not in BETA_SCHEDULERS:
        raise ValueError(
            f"{source}: _class_name is {name!r}; only the DDPM noise schedule is supported "
            f"({', '.join(BETA_SCHEDULERS)})"
        )
    for key, expected in SPEC_SCHEDULE.items():
        if key not in config:
            continue
        value = config[key]
        if isinstance(expected, float):
            number = isinstance(value, int | float) and not isinstance(value, bool)
            same = number and math.isclose(value, expected, rel_tol=1e-6)
        else:
            same = value == expected
        if not same:
            raise ValueError(
                f"{source}: {key} is {value!r}, the spec's DDPM needs {expected!r} (training, "
                "pruning and fine-tune losses use that schedule)"
            )
    if config.get("trained_betas") is not None:
        raise ValueError(
            f"{source}: trained_betas is set; only the spec's linear schedule (1e-4 -> 0.02) is supported"
        )
    return config


def load_unet(folder: str | Path) -> tuple[UNet2DModel, dict[str, Any]]:
    """A UNet from a diffusers folder (pipeline layout or bare UNet) and its scheduler config.

    A pruned folder's ``unet/pruning.json`` is applied before the strict load. Returns
    ``(unet.eval(), scheduler_config)``; the scheduler config is ``{}`` when the folder has none,
    and a schedule other than the spec's DDPM is refused (``check_scheduler_config``).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from paperzoo.diffcleanse.prune import apply_pruning_plan

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"model folder not found: {folder}")
    unet_dir = _unet_dir(folder)
    config = _read_config(unet_dir)
    weights = _weights(unet_dir)
    sched_file = folder / "scheduler" / SCHEDULER_FILE
    sched_config: dict[str, Any] = {}
    if sched_file.is_file():
        sched_config = read_json(sched_file, "scheduler config")
        check_scheduler_config(sched_config, str(sched_file))
    try:
        unet = UNet2DModel.from_config({k: v for k, v in config.items() if not k.startswith("_")})
    except (TypeError, ValueError, KeyError, AttributeError, IndexError) as error:
        raise ValueError(
            f"{unet_dir / 'config.json'} does not describe a buildable UNet2DModel: {error}"
        ) from error
    plan_file = unet_dir / PRUNING_FILE
    if plan_file.is_file():
        plan = read_json(plan_file, "pruning plan")
        apply_pruning_plan(unet, plan, source=str(plan_file))
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as error:
        raise ValueError(f"corrupt or unreadable weights file {weights}: {error}") from error
    expected = unet.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        hint = "" if plan_file.is_file() else f" (a pruned model needs its {PRUNING_FILE})"
        raise ValueError(
            f"{weights} does not match {unet_dir / 'config.json'}{hint}: missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}, wrong shape {wrong[:3]}"
        )
    for key, tensor in state.items():  # fp16/bf16 weights are cast to the model's float32
        if not tensor.is_floating_point():
            raise ValueError(f"{weights}: tensor {key!r} has dtype {tensor.dtype}, not floats")
        if not torch.isfinite(tensor).all():
            raise ValueError(f"{weights}: tensor {key!r} has non-finite values (NaN or inf)")
    unet.load_state_dict(state, strict=True)
    return unet.eval(), sched_config


def on_device(unet: torch.nn.Module, device: str = "cpu") -> torch.nn.Module:
    """``unet`` moved in place to ``device`` (``auto``, ``cpu`` or ``cuda``, resolved as the CLI
    resolves ``--device``) and returned, for the work a verb runs outside Lightning: sampling,
    trigger inversion, pruning importance and evaluation. A loaded model starts on the CPU and
    Lightning's teardown moves a trained one back there; the samplers and the importance run on
    their model's device (their noise is still drawn on the CPU and moved)."""
    from paperzoo.core.runtime import resolve_device

    return unet.to(resolve_device(device))


# What a model folder holds (both layouts, and the zoo cache's ``recipe.json``, which describes
# the weights beside it): a replaced folder drops these old entries and keeps any other (a user's).
MODEL_ENTRIES = frozenset(
    {
        "unet",
        "scheduler",
        "model_index.json",
        "config.json",
        "recipe.json",
        WEIGHTS_FILE,
        PRUNING_FILE,
        *PICKLED_WEIGHTS,
    }
)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def replace_folder(folder: str | Path) -> Iterator[Path]:
    """Yield a new empty folder beside ``folder``; when the block ends without error it takes
    ``folder``'s place by renames, else it is deleted and ``folder`` is left as it was.

    An interrupted write leaves the old folder whole or the new one whole, never new files beside
    old ones (a run killed between the two renames leaves both as hidden ``.NAME.*`` siblings).
    Entries of the old folder outside ``MODEL_ENTRIES`` that the new one lacks are moved into it.
    """
    folder = Path(os.path.abspath(folder))  # "." or "a/.." get a name to rename
    if folder.is_symlink():
        folder = folder.resolve()  # replace the folder the link points to, not the link
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"cannot write a model folder at {folder}: a file of that name exists")
    cwd = Path.cwd().resolve()
    if folder.resolve() == cwd or folder.resolve() in cwd.parents:
        raise ValueError(
            f"cannot replace {folder}: it holds the working directory; save into a subfolder"
        )
    folder.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        os.chmod(staged, 0o777 & ~_umask())  # mkdtemp makes owner-only folders
        yield staged
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    if not folder.exists():
        os.rename(staged, folder)
        return
    # the old folder moves into a fresh hidden sibling (a unique name, made atomically)
    old_parent = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".old", dir=folder.parent))
    old = old_parent / folder.name
    try:
        os.rename(folder, old)
        try:
            os.rename(staged, folder)
        except BaseException:
            os.rename(old, folder)
            raise
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        if not old.exists():
            shutil.rmtree(old_parent, ignore_errors=True)
        raise
    for entry in sorted(old.iterdir()):
        if entry.name not in MODEL_ENTRIES and not (folder / entry.name).exists():
            os.rename(entry, folder / entry.name)
    shutil.rmtree(old_parent, ignore_errors=True)


def save_unet(
    unet: UNet2DModel,
    folder: str | Path,
    scheduler=None,
    extra_files: dict[str, str] | None = None,
) -> Path:
    """Write ``folder/unet`` (diffusers ``save_pretrained``, plus ``pruning.json`` when pruned),
    ``folder/scheduler`` and ``extra_files`` (file name -> text, e.g. the zoo cache's
    ``recipe.json``). Returns ``folder``.

    The folder is built beside ``folder`` and swapped into place by renames (``replace_folder``):
    an interrupted save leaves the previous folder whole, never a new config beside old weights or
    an old ``recipe.json`` beside new weights. An existing folder's model files are replaced; its
    other entries (a user's notes) are kept."""
    # diffusers 0.30 calls ``safetensors.torch.save_file`` having imported only ``safetensors``,
    # so the call fails unless something imported the submodule first.
    import safetensors.torch  # noqa: F401

    from paperzoo.core.results import atomic_write_text
    from paperzoo.diffcleanse.prune import pruning_plan

    extra_files = dict(extra_files or {})
    for name in extra_files:
        if not name or Path(name).name != name or name in MODEL_ENTRIES - {"recipe.json"}:
            raise ValueError(
                f"extra file {name!r} must be a plain file name, not one of the model's own"
            )
    plan = pruning_plan(unet)
    with replace_folder(folder) as staged:
        unet_dir = staged / "unet"
        unet_dir.mkdir()
        unet.save_pretrained(str(unet_dir), safe_serialization=True)
        if plan["blocks"]:
            atomic_write_text(unet_dir / PRUNING_FILE, json.dumps(plan, indent=1))
        (scheduler or make_scheduler("ddpm")).save_pretrained(str(staged / "scheduler"))
        for name, text in extra_files.items():
            atomic_write_text(staged / name, text)
    return Path(folder)


def state_copy(unet: UNet2DModel) -> UNet2DModel:
    """A deep copy (pruned shapes included)."""
    import copy

    return copy.deepcopy(unet)


def count_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
