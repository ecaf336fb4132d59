"""A user's folders and text files: which entries of a folder walk are not data, and text and
JSON read as UTF-8 with every error naming the file.

Folder datasets arrive as archives made on many systems. macOS leaves ``.DS_Store`` files,
``._name`` AppleDouble twins of every file (a few hundred bytes of metadata with the data file's
suffix) and, in zip archives, a ``__MACOSX`` folder that mirrors the tree; notebooks leave
``.ipynb_checkpoints``. None of them is an image, a class or a speaker. Text lists written by
spreadsheets on Windows start with a UTF-8 byte-order mark, which is not part of the first
column's name.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HIDDEN_FOLDERS = ("__MACOSX",)
"""Folder names skipped like hidden entries: archive tools' metadata folders."""


def is_hidden(path: str | Path, root: str | Path | None = None) -> bool:
    """Whether ``path`` is not data: its name starts with ``.`` (``.DS_Store``, ``._a.png``,
    ``.ipynb_checkpoints``) or is one of :data:`HIDDEN_FOLDERS`.

    With ``root``, every part of ``path`` below ``root`` counts, so a file found by a recursive
    walk inside ``__MACOSX/`` or ``.cache/`` is hidden too; ``path`` must lie under ``root``.
    """
    path = Path(path)
    parts = path.relative_to(root).parts if root is not None else (path.name,)
    return any(part.startswith(".") or part in HIDDEN_FOLDERS for part in parts)


def read_text(path: str | Path, what: str = "text file") -> str:
    """The text of a UTF-8 file, a byte-order mark dropped.

    A missing file is a :class:`FileNotFoundError` and a file in another encoding a
    :class:`ValueError`; both name ``what`` and the path (the latter also the first bad byte).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{what} {path} is not UTF-8 text ({error.reason} at byte {error.start}: "
            f"{data[error.start:error.start + 1]!r}); save it as UTF-8"
        ) from None


def read_json(path: str | Path, what: str = "JSON file") -> Any:
    """The content of a UTF-8 JSON file (:func:`read_text`, so a byte-order mark is dropped).

    Invalid JSON is a :class:`ValueError` naming ``what``, the path, the line and the column.
    """
    text = read_text(path, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{what} {path} is not valid JSON: {error.msg} at line {error.lineno}, "
            f"column {error.colno}"
        ) from None
