"""Atomic result files: ``metrics.json`` (flat name -> number) and a Markdown table.

Every write goes to a temporary file in the same folder and is renamed into place, so a crash or
interrupt never leaves half a file where a result is expected.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from numbers import Real
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.json"
TABLE_FILE = "results.md"


@functools.cache
def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``, else delete it.

    For writers that want a file name (``fig.savefig(tmp)``, ``torch.save(obj, tmp)``); the file
    is flushed to disk (``fsync``) before the rename, so a crash leaves the old file or the new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes owner-only files; results are ordinary files
    try:
        yield tmp
        with open(tmp, "rb") as handle:  # the writer's data on disk before the rename publishes it
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def _number(name: str, value: Any) -> float | int | None:
    if hasattr(value, "item") and not isinstance(value, int | float):
        try:
            value = value.item()  # numpy or torch scalar
        except (ValueError, RuntimeError) as error:
            raise ValueError(f"metric {name!r} is not a scalar: {error}") from error
    if isinstance(value, bool):
        return int(value)
    if not isinstance(value, Real):
        raise ValueError(f"metric {name!r} must be a number or a boolean, got {type(value).__name__}")
    if isinstance(value, int):
        return int(value)
    value = float(value)
    return value if math.isfinite(value) else None


def flat_metrics(metrics: Mapping[str, Any]) -> dict[str, float | int | None]:
    """Validate and normalise a flat metric mapping (booleans to 0/1, NaN/inf to null)."""
    out: dict[str, float | int | None] = {}
    for name, value in metrics.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"metric names must be non-empty strings, got {name!r}")
        out[name] = _number(name, value)
    return out


def _cell(value: Any, floatfmt: str) -> str:
    if isinstance(value, float):
        return format(value, floatfmt)
    if hasattr(value, "item"):
        return _cell(value.item(), floatfmt)
    return str(value).replace("|", "\\|")


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None,
                   floatfmt: str = ".4f") -> str:
    """A GitHub Markdown table of ``rows``; columns default to the keys in first-seen order."""
    if not rows:
        return ""
    if columns is None:
        columns = list(dict.fromkeys(key for row in rows for key in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(c, ""), floatfmt) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def write_results(
    out_dir: str | Path,
    metrics: Mapping[str, Any],
    rows: Sequence[Mapping[str, Any]] | None = None,
    title: str | None = None,
    columns: Sequence[str] | None = None,
    floatfmt: str = ".4f",
) -> Path:
    """Write ``out_dir/metrics.json`` (flat) and ``out_dir/results.md`` atomically.

    ``rows`` become the Markdown table; without rows the table lists the metrics themselves.
    Returns the path of ``metrics.json``.
    """
    out_dir = Path(out_dir)
    clean = flat_metrics(metrics)
    table_rows = rows if rows is not None else [{"metric": k, "value": v} for k, v in clean.items()]
    text = (f"# {title}\n\n" if title else "") + markdown_table(table_rows, columns, floatfmt)
    payload = json.dumps(clean, indent=2, sort_keys=True, allow_nan=False) + "\n"
    metrics_path = atomic_write_text(out_dir / METRICS_FILE, payload)
    atomic_write_text(out_dir / TABLE_FILE, text)
    return metrics_path


def read_metrics(path: str | Path) -> dict[str, Any]:
    """Read a ``metrics.json`` (or the folder holding one) with a clear error when absent."""
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no metrics file at {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error
