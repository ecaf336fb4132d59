"""Checks every method's tests reuse. Plain assertions with messages, no pytest import.

    from paperzoo.core import testing
    testing.check_cli_help(main, ["demo", "validate"])
    testing.check_finite_gradients(model, x)
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch


def _run(main: Callable[[list[str]], int], argv: list[str]) -> tuple[int, str]:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        try:
            status = main(argv)
        except SystemExit as exit_:
            status = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    return int(status or 0), buffer.getvalue()


def check_cli_help(main: Callable[[list[str]], int], verbs: Sequence[str]) -> None:
    """``--help`` works for the command and for each verb (exit 0, the verb's name shown)."""
    status, text = _run(main, ["--help"])
    assert status == 0, f"--help exited with {status}"
    for verb in verbs:
        assert verb in text, f"verb {verb!r} is missing from the command's --help"
        status, text_verb = _run(main, [verb, "--help"])
        assert status == 0, f"{verb} --help exited with {status}"
        for option in ("--config", "--seed", "--out", "--device", "--threads", "--overwrite"):
            assert option in text_verb, f"{verb} --help lacks {option}"


def check_print_config(main: Callable[[list[str]], int], verb: str, args: Sequence[str],
                       tmp_dir: str | Path) -> dict:
    """``--print_config`` prints YAML that, fed back through ``--config``, prints the same YAML."""
    import yaml

    status, first = _run(main, [verb, *args, "--print_config"])
    assert status == 0, f"{verb} --print_config exited with {status}"
    config = yaml.safe_load(first)
    assert isinstance(config, dict) and "seed" in config, f"--print_config did not print a config: {first!r}"
    path = Path(tmp_dir) / f"{verb}-config.yaml"
    path.write_text(first)
    status, second = _run(main, [verb, "--config", str(path), "--print_config"])
    assert status == 0, f"{verb} --config ... --print_config exited with {status}"
    assert yaml.safe_load(second) == config, "config did not round-trip through --config"
    return config


def check_finite_gradients(model: torch.nn.Module, *inputs: torch.Tensor,
                           loss_fn: Callable[..., torch.Tensor] | None = None) -> None:
    """Every trainable parameter receives a finite, non-None gradient from one backward pass."""
    model.train()
    model.zero_grad(set_to_none=True)
    output = model(*inputs)
    if loss_fn is not None:
        loss = loss_fn(output)
    else:
        tensors = output if isinstance(output, list | tuple) else [output]
        loss = sum((t.float() ** 2).mean() for t in tensors if isinstance(t, torch.Tensor))
    loss.backward()
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        assert parameter.grad is not None, f"parameter {name} received no gradient"
        assert torch.isfinite(parameter.grad).all(), f"parameter {name} has a non-finite gradient"


def check_checkpoint_roundtrip(model: torch.nn.Module, tmp_dir: str | Path) -> None:
    """Weights saved with the core's checkpoint API load back bit-exactly into a fresh copy."""
    from paperzoo.core.checkpoint import load_weights, save_weights

    path = Path(tmp_dir) / "roundtrip.safetensors"
    save_weights(model, path, meta={"check": "roundtrip"})
    clone = copy.deepcopy(model)
    with torch.no_grad():
        for tensor in clone.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(1.0)
    meta = load_weights(clone, path)
    assert meta == {"check": "roundtrip"}, f"metadata did not round-trip: {meta}"
    for key, value in model.state_dict().items():
        assert torch.equal(value, clone.state_dict()[key]), f"{key} differs after loading"


def check_overfit(model: torch.nn.Module, loss_fn: Callable[[torch.nn.Module], torch.Tensor],
                  steps: int = 60, lr: float = 1e-2, factor: float = 0.5) -> tuple[float, float]:
    """A few Adam steps on one fixed batch drive ``loss_fn(model)`` below ``factor`` x its start."""
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    first = float(loss_fn(model).detach())
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model)
        loss.backward()
        optimizer.step()
    last = float(loss_fn(model).detach())
    assert last < factor * first, f"loss did not fall enough: {first:.4g} -> {last:.4g} (wanted < {factor} x)"
    return first, last


def check_metrics_json(out_dir: str | Path, names: Sequence[str]) -> dict:
    """``out_dir/metrics.json`` is a flat object of numbers holding every name in ``names``."""
    path = Path(out_dir) / "metrics.json"
    assert path.is_file(), f"{path} was not written"
    metrics = json.loads(path.read_text())
    assert isinstance(metrics, dict), "metrics.json is not a JSON object"
    missing = [n for n in names if n not in metrics]
    assert not missing, f"metrics.json lacks {missing}"
    for name, value in metrics.items():
        assert value is None or isinstance(value, int | float), f"metric {name} is not a number: {value!r}"
    return metrics


def run_console_script(program: str, argv: Sequence[str], workdir: str | Path, timeout_s: float = 300,
                       env: Mapping[str, str] | None = None, cleanup_s: float = 60) -> subprocess.CompletedProcess:
    """Run the console script ``program`` (installed beside the running Python) with ``argv`` in
    ``workdir``, as a user would: one torch thread per process, Python warnings off and ``TMPDIR``
    a folder of its own under ``workdir``; ``env`` adds variables.

    Made for runs on several processes (``--devices 2 --strategy ddp``): Lightning reruns the
    command line for rank 1, which writes into a temporary ``--out`` (the core's CLI) that must be
    gone when it ends. Rank 1 may end a moment after rank 0, so this waits up to ``cleanup_s``
    seconds and asserts that no ``paperzoo-*`` folder is left. Returns the finished process; its
    exit status is the caller's to check.
    """
    workdir = Path(workdir)
    scratch = workdir / "tmp-of-the-run"
    scratch.mkdir(parents=True, exist_ok=True)
    variables = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "TMPDIR": str(scratch),
                 **(env or {})}
    done = subprocess.run([str(Path(sys.executable).with_name(program)), *map(str, argv)], env=variables,
                          cwd=workdir, timeout=timeout_s, capture_output=True, text=True)
    deadline = time.monotonic() + cleanup_s
    while list(scratch.glob("paperzoo-*")) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = sorted(p.name for p in scratch.glob("paperzoo-*"))
    assert not left, f"{program}: a rank's temporary --out was left behind: {left}"
    return done


def image_encodings() -> list[tuple[str, Callable[[], object], tuple[int, int, int]]]:
    """``(file name, make, expected)`` for one 4x4 picture (left half RGB (200, 100, 50), right
    half black) in encodings a user's folder may hold: grey, palette, 16-bit grey (200 x 257),
    opaque RGBA, float grey in [0, 1], an upper-case suffix, TIFF, BMP with a non-ASCII name.
    ``make()`` gives the PIL image to save under the name; ``expected`` is the 8-bit RGB a reader
    should give in the left half (the right half stays black). A package's test saves each and
    reads it through its own loader (``pytest.mark.parametrize("name, make, expected", ...)``)."""
    import numpy as np
    from PIL import Image

    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[:, :2] = (200, 100, 50)
    colour, grey = (200, 100, 50), (200, 200, 200)
    return [
        ("grey.png", lambda: Image.fromarray(rgb[..., 0]), grey),
        ("palette.png", lambda: Image.fromarray(rgb).quantize(4), colour),
        ("deep.png", lambda: Image.fromarray(rgb[..., 0].astype(np.uint16) * 257), grey),
        ("opaque.png", lambda: Image.fromarray(np.dstack([rgb, np.full((4, 4), 255, np.uint8)]), "RGBA"),
         colour),
        ("float.tif", lambda: Image.fromarray(rgb[..., 0] / np.float32(255), "F"), grey),
        ("upper.PNG", lambda: Image.fromarray(rgb), colour),
        ("part.tif", lambda: Image.fromarray(rgb), colour),
        ("pièce.bmp", lambda: Image.fromarray(rgb), colour),
    ]


def unreadable_images() -> list[tuple[str, Callable[[Path], None], str]]:
    """``(file name, write, words)`` for image files a reader must refuse with a ``ValueError``
    naming the file and containing ``words``: transparent pixels (their colour is hidden), a
    float image outside [0, 1], an empty file and a truncated JPEG. ``write(path)`` creates it."""
    import numpy as np
    from PIL import Image

    def transparent(path: Path) -> None:
        rgba = np.zeros((4, 4, 4), np.uint8)
        rgba[..., 0] = 255
        Image.fromarray(rgba, "RGBA").save(path)

    def truncated(path: Path) -> None:
        data = io.BytesIO()
        noise = np.random.default_rng(0).integers(0, 255, (32, 32, 3), np.uint8)
        Image.fromarray(noise).save(data, "JPEG")
        path.write_bytes(data.getvalue()[:200])

    return [
        ("clear.png", transparent, "transparent pixels"),
        ("depth.tif", lambda p: Image.fromarray(np.full((4, 4), 3.5, np.float32)).save(p), "must lie in"),
        ("empty.jpg", lambda p: p.write_bytes(b""), "cannot read image"),
        ("cut.jpg", truncated, "cannot read image"),
    ]


def check_image_read(read: Callable[[Path], object], folder: str | Path, name: str,
                     make: Callable[[], object], expected: tuple[int, int, int]) -> None:
    """Save one :func:`image_encodings` file under ``folder`` and check ``read(path)``: float
    ``(3, H, W)`` in [0, 1] or 8-bit ``(H, W, 3)``, tensor or array, giving ``expected`` in the
    left half and black in the right."""
    import numpy as np

    path = Path(folder) / name
    make().save(path)
    pixels = read(path)
    array = pixels.detach().cpu().numpy() if isinstance(pixels, torch.Tensor) else np.asarray(pixels)
    if array.dtype.kind == "f":
        array = np.round(array * 255)
    if array.ndim == 3 and array.shape[0] == 3 and array.shape[-1] != 3:
        array = array.transpose(1, 2, 0)
    assert array.shape == (4, 4, 3), f"{name}: read as shape {array.shape}, expected (4, 4, 3)"
    got = tuple(int(v) for v in array[0, 0])
    assert got == tuple(expected), f"{name}: left half read as {got}, expected {tuple(expected)}"
    assert not array[0, 3].any(), f"{name}: right half read as {array[0, 3]}, expected black"


def check_image_refused(read: Callable[[Path], object], folder: str | Path, name: str,
                        write: Callable[[Path], None], words: str) -> None:
    """Write one :func:`unreadable_images` file under ``folder`` and check that ``read(path)``
    raises a ``ValueError`` naming the file and containing ``words``."""
    path = Path(folder) / name
    write(path)
    try:
        read(path)
    except ValueError as error:
        assert name in str(error) and words in str(error), f"{name}: unclear refusal: {error}"
    else:
        raise AssertionError(f"{name} was read, not refused ({words})")


class TrainingInterrupted(RuntimeError):
    """Raised by :func:`interrupt_training` to stand for a crash or a killed job."""


@contextlib.contextmanager
def interrupt_training(after_saves: int):
    """Within the block, training stops with :class:`TrainingInterrupted` after the
    ``after_saves``-th resume checkpoint was written (counted over every ``fit`` in the block, so
    a later stage of a several-stage verb can be hit): at the first training batch of the next
    epoch, or when the fit ends if that checkpoint was its last; the state a crash early in an
    epoch leaves. A test then runs the same command with ``--resume`` and compares with a run
    that was never interrupted."""
    from paperzoo.core.lightning import ResumeCheckpoint

    if after_saves < 1:
        raise ValueError(f"after_saves must be >= 1, got {after_saves}")
    originals = {name: getattr(ResumeCheckpoint, name)
                 for name in ("on_train_epoch_end", "on_train_batch_start", "on_train_end")}
    saves = {"count": 0, "armed": False}

    def count_saves(self, trainer, pl_module) -> None:
        before = self._last_global_step_saved
        originals["on_train_epoch_end"](self, trainer, pl_module)
        if self._last_global_step_saved != before:
            saves["count"] += 1
            saves["armed"] = saves["armed"] or saves["count"] == after_saves

    def stop(where: str):
        def hook(self, trainer, *args) -> None:
            if saves["armed"]:
                saves["armed"] = False
                raise TrainingInterrupted(f"interrupted {where} after resume checkpoint {after_saves}")
            originals[f"on_train_{where}"](self, trainer, *args)
        return hook

    ResumeCheckpoint.on_train_epoch_end = count_saves
    ResumeCheckpoint.on_train_batch_start = stop("batch_start")
    ResumeCheckpoint.on_train_end = stop("end")
    try:
        yield saves
    finally:
        for name, original in originals.items():
            setattr(ResumeCheckpoint, name, original)
