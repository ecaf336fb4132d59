"""Vertically partitioned data for VAFL (Chen et al. 2020, section 2: client m holds block
``x_{n,m}`` of every sample, the server holds the labels).

Built-ins, offline through scikit-learn: ``digits`` (1,797 8x8 images: quadrants or 64 flat
features) and ``breast_cancer`` (569 x 30). User roots: one CSV per party with an ID column plus
the server's label file (rows aligned by ID), MNIST (IDX files) and CIFAR-10 (python batches) cut
into image quadrants. Features are split with the core's :class:`VerticalPartition`; per-column
scalers are fitted on the training split only (spec pitfall 9).
"""

from __future__ import annotations

import csv
import io
import itertools
import operator
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from paperzoo.core.data import VerticalPartition, cifar10, mnist, read_text, split_indices

BUILTIN_DATASETS = ("digits", "breast_cancer")
DATASETS = (*BUILTIN_DATASETS, "csv", "mnist", "cifar10")
SCHEMES = ("contiguous", "permutation", "quadrants")


@dataclass
class VerticalData:
    """Train and test blocks per party, flattened to ``(samples, features)`` and scaled; the labels
    belong to the server."""

    name: str
    train_parts: list[torch.Tensor]
    test_parts: list[torch.Tensor]
    y_train: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    #: the original label of each class index (the CSV label column's values); ``None``: the
    #: labels were given as class indices
    class_names: list[str] | None = None
    #: the records' IDs of each split (CSV: the ID column); ``None`` when the data has none
    train_ids: list[str] | None = None
    test_ids: list[str] | None = None

    @property
    def num_parties(self) -> int:
        return len(self.train_parts)

    @property
    def in_dims(self) -> list[int]:
        return [int(p.shape[1]) for p in self.train_parts]

    @property
    def num_train(self) -> int:
        return int(self.y_train.shape[0])

    def class_name(self, index: int) -> str:
        """The original label of class ``index`` (:attr:`class_names`), else the index."""
        names = self.class_names
        return str(names[index]) if names is not None and index < len(names) else str(index)

    def merged(self, split: str = "train") -> torch.Tensor:
        """All features side by side (the centralised reference only)."""
        return torch.cat(self.train_parts if split == "train" else self.test_parts, dim=1)

    def check(self) -> None:
        """Refuse what would train silently to garbage: a non-finite feature (named by split,
        party, row and column), labels that are not class indices ``0..num_classes-1``, training
        labels of a single class, and blocks whose row counts differ from the labels'."""
        if len(self.train_parts) != len(self.test_parts) or not self.train_parts:
            raise ValueError(f"{self.name}: {len(self.train_parts)} training blocks but "
                             f"{len(self.test_parts)} test blocks (one of each per party)")
        for split, parts, labels in (("train", self.train_parts, self.y_train),
                                     ("test", self.test_parts, self.y_test)):
            check_class_indices(labels, f"{self.name}: y_{split}", self.num_classes)
            if split == "train" and labels.numel() and bool((labels == labels[0]).all()):
                raise ValueError(f"{self.name}: the training labels hold a single class "
                                 f"({self.class_name(int(labels[0]))!r}); a classifier needs at least two")
            for m, part in enumerate(parts):
                if part.dim() != 2 or part.shape[0] != labels.shape[0]:
                    raise ValueError(f"{self.name}: party {m}'s {split} block has shape {tuple(part.shape)}, "
                                     f"expected ({labels.shape[0]}, features): one row per label")
                check_finite(part, f"{self.name}: party {m}'s {split} block")


# ------------------------------------------------------------------------------------ partitions
def partition_features(x: torch.Tensor, parties: int, scheme: str, seed: int = 0) -> list[torch.Tensor]:
    """Split ``x`` (``(N, D)`` flat, or ``(N, C, H, W)`` images for quadrants) into ``parties`` flat blocks.

    ``contiguous``: near-equal column blocks; ``permutation``: a seeded random permutation of the
    columns cut into near-equal groups; ``quadrants``: the 2 x 2 image grid (4 parties).
    """
    if scheme not in SCHEMES:
        raise ValueError(f"unknown partition scheme {scheme!r}; choose from {', '.join(SCHEMES)}")
    if not isinstance(parties, int) or parties < 1:
        raise ValueError(f"parties must be a positive integer, got {parties!r}")
    if scheme == "quadrants":
        if x.dim() != 4:
            raise ValueError(f"quadrants need images (N, C, H, W), got shape {tuple(x.shape)}")
        height, width = x.shape[-2:]
        if height % 2 or width % 2:
            raise ValueError(f"image sides {height} x {width} are not divisible by the 2 x 2 quadrant grid")
        blocks = VerticalPartition(parties, "quadrants").split(x)
        return [b.reshape(b.shape[0], -1) for b in blocks]
    flat = x.reshape(x.shape[0], -1)
    width = flat.shape[1]
    if parties > width:
        raise ValueError(f"party count {parties} is larger than the {width} features to share")
    if scheme == "contiguous":
        return VerticalPartition(parties, "contiguous").split(flat)
    order = np.random.default_rng(seed).permutation(width)
    groups = [g.tolist() for g in np.array_split(order, parties)]
    return VerticalPartition(parties, "groups", groups=groups).split(flat)


def check_finite(block: torch.Tensor, what: str, columns: torch.Tensor | None = None, source: str = "") -> None:
    """Raise ``ValueError`` naming the first non-finite cell (NaN or infinity) of the 2-D ``block``
    by row and column (``columns``: the column of ``source`` each of the block's columns comes from)."""
    if not block.is_floating_point():
        return
    bad = ~torch.isfinite(block)
    if not bool(bad.any()):
        return
    row, column = (int(v) for v in bad.nonzero()[0])
    where = f"column {column}" if columns is None else f"column {column} (column {int(columns[column])} of {source})"
    raise ValueError(f"{what}: row {row}, {where} holds non-finite value {float(block[row, column])} "
                     f"({int(bad.sum())} non-finite in all); drop or impute them first "
                     "(one NaN would turn its whole column NaN once standardised, and the model with it)")


def check_labels(y, what: str = "y") -> torch.Tensor:
    """``y`` as int64 class indices, refusing anything that is not integers ``0..K-1``.

    Labels given in Python are class indices: the model has ``max(y) + 1`` outputs and predicts
    indices. Other values (-1/+1, strings, continuous targets) are refused with the values found;
    map them first, e.g. ``names, y = np.unique(labels, return_inverse=True)``, which is what the
    CSV reader does with its label column (sorted values -> 0..K-1, the names kept in
    :attr:`VerticalData.class_names`).
    """
    hint = ("labels must be class indices 0..K-1; map them first, e.g. "
            "`names, y = numpy.unique(labels, return_inverse=True)` (the CSV reader re-indexes "
            "its label column the same way: sorted values -> 0..K-1)")
    array = np.asarray(y.detach().cpu() if isinstance(y, torch.Tensor) else y)
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{what} holds {array.dtype} values (e.g. {_examples(array)}); {hint}")
    if array.ndim != 1:
        raise ValueError(f"{what} must be one label per record (1-D), got shape {array.shape}")
    if array.dtype.kind == "f":
        finite = np.isfinite(array)
        if not finite.all():
            raise ValueError(f"{what} holds {int((~finite).sum())} non-finite labels "
                             f"(first at row {int(np.flatnonzero(~finite)[0])}); {hint}")
        fractional = array != np.round(array)
        if fractional.any():
            raise ValueError(f"{what} holds non-integer values (e.g. {_examples(array[fractional])}, "
                             f"{int(fractional.sum())} of {array.size}): this is a classifier, not a "
                             f"regression; {hint}")
    if array.size and array.min() < 0:
        raise ValueError(f"{what} holds negative labels: the values found are {_examples(array)}; {hint}")
    return torch.as_tensor(array.astype(np.int64))


def check_class_indices(y: torch.Tensor, what: str, classes: int) -> None:
    """``y`` is an int64 vector of indices in ``0..classes-1`` (a :class:`VerticalData` field)."""
    if not isinstance(y, torch.Tensor) or y.dtype != torch.int64 or y.dim() != 1:
        kind = f"a {y.dtype} tensor of shape {tuple(y.shape)}" if isinstance(y, torch.Tensor) else type(y).__name__
        raise ValueError(f"{what} must be a 1-D int64 tensor of class indices, got {kind} "
                         "(make_vertical_data converts labels and checks them)")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= classes):
        raise ValueError(f"{what} holds labels outside 0..{classes - 1} (num_classes {classes}): the values "
                         f"found are {_examples(y.numpy())}")


def _examples(array: np.ndarray, count: int = 6) -> str:
    try:
        values = np.unique(array.ravel())
    except TypeError:  # mixed types do not sort
        values = np.asarray(list(dict.fromkeys(array.ravel().tolist())), dtype=object)
    shown = ", ".join(f"{v:.6g}" if isinstance(v, float) else str(v) for v in values[:count].tolist())
    return f"[{shown}{', ...' if len(values) > count else ''}] ({len(values)} distinct)"


def _check_input_features(x: torch.Tensor, parts: list[torch.Tensor], parties: int, scheme: str, seed: int,
                          what: str) -> None:
    """Name the first non-finite cell of ``x`` by the party that holds it, its column in that
    party's block and in ``x`` (flattened), and the row of ``x``."""
    for m, part in enumerate(parts):
        if part.is_floating_point() and not bool(torch.isfinite(part).all()):
            index = torch.arange(x[:1].numel()).reshape(x[:1].shape)  # where each block column comes from
            columns = partition_features(index, parties, scheme, seed)[m][0]
            check_finite(part, f"make_vertical_data: party {m}'s block of {what}", columns, what)


def _standardise(train: torch.Tensor, test: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-column standardisation with statistics of the training split only."""
    mean = train.mean(dim=0, keepdim=True)
    std = train.std(dim=0, keepdim=True, unbiased=False)
    std = torch.where(std > 1e-8, std, torch.ones_like(std))
    return (train - mean) / std, (test - mean) / std


def _as_features(x, what: str) -> torch.Tensor:
    """``x`` as a tensor of real numbers; NumPy arrays of any byte order or memory layout are
    read, object, string and complex arrays are refused naming ``what`` and the dtype."""
    if not isinstance(x, torch.Tensor):
        array = np.asarray(x)
        if array.dtype.kind not in "biuf":
            raise ValueError(f"{what} holds {array.dtype} values; features must be real numbers")
        if not array.dtype.isnative:  # a big-endian array torch cannot wrap
            array = array.astype(array.dtype.newbyteorder("="))
        x = torch.from_numpy(np.ascontiguousarray(array))
    if x.is_complex():
        raise ValueError(f"{what} holds {x.dtype} values; features must be real numbers")
    return x


def make_vertical_data(name: str, x: torch.Tensor, y: torch.Tensor, parties: int, scheme: str,
                       seed: int, test_fraction: float = 0.2, standardise: bool = True,
                       test_x: torch.Tensor | None = None, test_y: torch.Tensor | None = None) -> VerticalData:
    """Partition, split (stratified, seeded) unless a test set is given, and scale on train only."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    y = check_labels(y, "y")
    x = _as_features(x, "x")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x has {x.shape[0]} rows but y has {y.shape[0]} labels")
    parts = partition_features(x.float(), parties, scheme, seed)
    _check_input_features(x, parts, parties, scheme, seed, "x")
    if test_x is None:
        train_idx, test_idx = (torch.from_numpy(i) for i in split_indices(
            len(y), [1.0 - test_fraction, test_fraction], seed, stratify=y.numpy()))
        train_parts = [p[train_idx] for p in parts]
        test_parts = [p[test_idx] for p in parts]
        y_train, y_test = y[train_idx], y[test_idx]
    else:
        if test_y is None:
            raise ValueError("test_x needs its labels test_y")
        train_parts = parts
        test_x, y_test = _as_features(test_x, "test_x"), check_labels(test_y, "test_y")
        if test_x.shape[0] != y_test.shape[0]:
            raise ValueError(f"test_x has {test_x.shape[0]} rows but test_y has {y_test.shape[0]} labels")
        test_parts = partition_features(test_x.float(), parties, scheme, seed)
        _check_input_features(test_x, test_parts, parties, scheme, seed, "test_x")
        y_train = y
    if standardise:
        scaled = [_standardise(a, b) for a, b in zip(train_parts, test_parts)]
        train_parts, test_parts = [s[0] for s in scaled], [s[1] for s in scaled]
    classes = int(torch.cat([y_train, y_test]).max().item()) + 1
    return VerticalData(name, [p.contiguous() for p in train_parts], [p.contiguous() for p in test_parts],
                        y_train, y_test, max(classes, 2))


# ------------------------------------------------------------------------------------ built-ins
def breast_cancer() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's Wisconsin breast cancer table (569 x 30), offline."""
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    return torch.as_tensor(bunch.data, dtype=torch.float32), torch.as_tensor(bunch.target, dtype=torch.int64)


def load_dataset(name: str, parties: int = 4, scheme: str | None = None, seed: int = 0,
                 root: str | Path | None = None, test_fraction: float = 0.2,
                 max_samples: int | None = None, id_column: str = "id", label_column: str = "label",
                 align: str = "strict") -> VerticalData:
    """One of :data:`DATASETS` as :class:`VerticalData`.

    ``scheme`` defaults to ``quadrants`` for image data with 4 parties, else ``contiguous``.
    ``root`` is needed by ``csv`` (a folder of ``party*.csv`` and ``labels.csv``), ``mnist`` and
    ``cifar10``. ``max_samples`` keeps a seeded random subset (the quick runs on large sets).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
    if name not in BUILTIN_DATASETS and root is None:
        raise ValueError(f"dataset {name!r} needs --root (a folder with its files)")
    test_x = test_y = None
    if name == "digits":
        from paperzoo.core.data import digits

        x, y = digits()
    elif name == "breast_cancer":
        x, y = breast_cancer()
    elif name == "csv":
        files = party_files(root)
        x_parts, y, ids, names = _load_party_csvs(files, Path(root) / "labels.csv", id_column, label_column, align)
        if len(x_parts) != parties:
            raise ValueError(f"{root} holds {len(x_parts)} party files but parties={parties}")
        x = torch.cat(x_parts, dim=1)
        groups, start = [], 0
        for part in x_parts:
            groups.append(list(range(start, start + part.shape[1])))
            start += part.shape[1]
        return _from_groups(x, y, groups, seed, test_fraction, ids, names)
    else:
        reader = mnist if name == "mnist" else cifar10  # the core's readers of the released formats
        (x, y), (test_x, test_y) = reader(root, "train"), reader(root, "test")
    image = x.dim() == 4
    scheme = scheme or ("quadrants" if image and parties == 4 else "contiguous")
    if max_samples is not None:
        x, y = _subsample(x, y, max_samples, seed)
        if test_x is not None:
            test_x, test_y = _subsample(test_x, test_y, max(1, max_samples // 5), seed + 1)
    return make_vertical_data(name, x, y, parties, scheme, seed, test_fraction, test_x=test_x, test_y=test_y)


def _subsample(x, y, count, seed):
    if count < 1:
        raise ValueError(f"max_samples must be >= 1, got {count}")
    if count >= len(y):
        return x, y
    keep = torch.from_numpy(np.sort(np.random.default_rng(seed).permutation(len(y))[:count]))
    return x[keep], y[keep]


def _from_groups(x, y, groups, seed, test_fraction, ids=None, class_names=None) -> VerticalData:
    """Party blocks as given by the files (no re-partitioning), split and scaled like the others."""
    partition = VerticalPartition(len(groups), "groups", groups=groups)
    train_idx, test_idx = (torch.from_numpy(i) for i in split_indices(
        len(y), [1.0 - test_fraction, test_fraction], seed, stratify=y.numpy()))
    scaled = [_standardise(p[train_idx], p[test_idx]) for p in partition.split(x)]
    classes = max(int(y.max().item()) + 1, 2)
    train_ids = test_ids = None
    if ids is not None:
        train_ids, test_ids = [ids[i] for i in train_idx.tolist()], [ids[i] for i in test_idx.tolist()]
    return VerticalData("csv", [s[0] for s in scaled], [s[1] for s in scaled], y[train_idx], y[test_idx], classes,
                        class_names, train_ids, test_ids)


# ------------------------------------------------------------------------------------ CSV per party
def party_files(root: str | Path) -> list[Path]:
    """``root``'s ``party*.csv`` in natural order (``party2`` before ``party10``)."""
    def natural(path: Path) -> list:
        return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.stem)]

    return sorted(Path(root).glob("party*.csv"), key=natural)


def _read_csv(path: Path, id_column: str, what: str = "party file"
              ) -> tuple[list[str], list[str], list[list[str]], list[int]]:
    """Header, IDs, rows and each row's line in the file (blank lines skipped) of a UTF-8 CSV (the
    core's :func:`read_text`: a byte-order mark, as Excel writes, is not part of the first
    column's name); ``what`` names the file in errors."""
    text = read_text(path, what)
    reader = csv.reader(io.StringIO(text, newline=""))
    rows, starts, start = [], [], 1
    try:
        for row in reader:
            rows.append(row)
            starts.append(start)
            start = reader.line_num + 1
    except csv.Error as error:
        raise ValueError(f"{path} cannot be read as CSV: {error}") from None
    if not rows:
        raise ValueError(f"{path} is empty (expected a header row with column {id_column!r})")
    header = [c.strip() for c in rows[0]]
    body = [r for r in rows[1:] if r]
    lines = [line for r, line in zip(rows[1:], starts[1:]) if r]
    if id_column not in header:
        other = next((d for d in (";", "\t", "|") if len(header) == 1 and d in header[0]), None)
        hint = f" (it looks delimited by {other!r}; the files must be comma-separated)" if other else ""
        raise ValueError(f"{path} has no ID column {id_column!r}; its columns are {header}{hint}")
    repeated = sorted({c for c in header if header.count(c) > 1})
    if repeated:
        raise ValueError(f"{path} repeats column name(s) {repeated}; every column needs its own name")
    for line, row in zip(lines, body):
        if len(row) != len(header):
            raise ValueError(f"{path} line {line}: {len(row)} fields, header has {len(header)}")
    position = header.index(id_column)
    ids = [row[position].strip() for row in body]
    seen, duplicates = set(), []
    for identifier in ids:
        if identifier in seen:
            duplicates.append(identifier)
        seen.add(identifier)
    if duplicates:
        raise ValueError(f"{path} has {len(duplicates)} duplicate IDs in column {id_column!r}, "
                         f"e.g. {sorted(set(duplicates))[:5]}")
    return header, ids, body, lines


FLOAT32_MAX = float(np.finfo(np.float32).max)


def _numeric(path: Path, header: list[str], body: list[list[str]], columns: list[str],
             lines: list[int] | None = None) -> np.ndarray:
    """The ``columns`` of ``body`` as float32. Parsed in bulk (Python's ``float`` mapped over the
    selected cells into one float64 array, no per-cell Python loop); a file that fails or holds a
    non-finite value is read again cell by cell, so the error names the first bad cell's line,
    column and value (``lines``: each row's line in the file, by default 2, 3, ...)."""
    positions = [header.index(c) for c in columns]
    if body:  # the rows all have the header's length (checked when the file was read)
        select = operator.itemgetter(*positions) if len(positions) > 1 else (lambda row: (row[positions[0]],))
        cells = itertools.chain.from_iterable(map(select, body))
        try:
            values = np.fromiter(map(float, cells), dtype=np.float64, count=len(body) * len(positions))
        except ValueError:
            values = None
        if values is not None and np.isfinite(values).all() and np.abs(values).max() <= FLOAT32_MAX:
            return values.reshape(len(body), len(positions)).astype(np.float32)
    return _numeric_cells(path, header, body, positions, lines)


def _numeric_cells(path: Path, header: list[str], body: list[list[str]], positions: list[int],
                   lines: list[int] | None = None) -> np.ndarray:
    """``_numeric`` one cell at a time: the reading that names a bad cell."""
    out = np.empty((len(body), len(positions)), dtype=np.float32)
    for row_index, (line, row) in enumerate(zip(lines or range(2, len(body) + 2), body)):
        for k, p in enumerate(positions):
            try:
                value = float(row[p])
            except ValueError:
                raise ValueError(f"{path} line {line}: column {header[p]!r} holds non-numeric "
                                 f"value {row[p]!r}") from None
            if not np.isfinite(value):
                raise ValueError(f"{path} line {line}: column {header[p]!r} holds non-finite "
                                 f"value {row[p]!r} (NaN or infinity)")
            if abs(value) > FLOAT32_MAX:
                raise ValueError(f"{path} line {line}: column {header[p]!r} holds {row[p]!r}, beyond "
                                 f"float32 (|x| <= 3.4e38); rescale the column first")
            out[row_index, k] = value
    return out


def load_party_csvs(party_files: Sequence[str | Path], label_file: str | Path, id_column: str = "id",
                    label_column: str = "label", align: str = "strict"
                    ) -> tuple[list[torch.Tensor], torch.Tensor, list[str]]:
    """Read one CSV per party and the server's label CSV, aligning rows by ``id_column``.

    ``align="strict"`` (default) refuses ID sets that differ (naming the count and a few missing
    IDs); ``align="intersect"`` keeps the common IDs. Rows follow the label file's order.
    Returns the party blocks, the labels (classes re-indexed 0..K-1: the label column's values
    sorted, numbers numerically before other strings) and the kept IDs.
    """
    blocks, labels, keep, _ = _load_party_csvs(party_files, label_file, id_column, label_column, align)
    return blocks, labels, keep


def _load_party_csvs(party_files: Sequence[str | Path], label_file: str | Path, id_column: str,
                     label_column: str, align: str) -> tuple[list[torch.Tensor], torch.Tensor, list[str], list[str]]:
    """:func:`load_party_csvs` plus the class names: the label value of each class index."""
    if align not in ("strict", "intersect"):
        raise ValueError(f"align must be 'strict' or 'intersect', got {align!r}")
    party_files = [Path(p) for p in party_files]
    if not party_files:
        raise FileNotFoundError("no party CSV files (expected party*.csv beside labels.csv)")
    label_path = Path(label_file)
    label_header, label_ids, label_body, label_lines = _read_csv(label_path, id_column, "label file")
    if label_column not in label_header:
        raise ValueError(f"{label_path} has no label column {label_column!r}; its columns are {label_header}")
    parties = [_read_csv(p, id_column) for p in party_files]
    keep = list(label_ids)
    for path, (_, ids, _, _) in zip(party_files, parties):
        id_set, keep_set = set(ids), set(keep)
        if id_set != keep_set:
            missing = sorted(keep_set - id_set)
            extra = sorted(id_set - keep_set)
            if align == "strict":
                raise ValueError(
                    f"IDs of {path} differ from {label_path}: {len(missing)} missing (e.g. {missing[:5]}), "
                    f"{len(extra)} extra (e.g. {extra[:5]}); pass align='intersect' to keep common IDs")
            keep = [i for i in keep if i in id_set]
    if not keep:
        raise ValueError("the party files share no IDs with the label file")
    blocks = []
    for path, (header, ids, body, lines) in zip(party_files, parties):
        row_of = {identifier: k for k, identifier in enumerate(ids)}
        columns = [c for c in header if c not in (id_column, label_column)]
        if not columns:
            raise ValueError(f"{path} has no feature columns besides {id_column!r}")
        values = _numeric(path, header, body, columns, lines)
        blocks.append(torch.from_numpy(values[[row_of[i] for i in keep]]))
    label_row = {identifier: k for k, identifier in enumerate(label_ids)}
    position = label_header.index(label_column)
    raw_labels = [label_body[label_row[i]][position].strip() for i in keep]
    _check_label_values(label_path, label_column, raw_labels, keep, [label_lines[label_row[i]] for i in keep])
    classes = sorted(set(raw_labels), key=lambda v: (not _is_number(v), float(v) if _is_number(v) else 0, v))
    index = {c: k for k, c in enumerate(classes)}
    labels = torch.tensor([index[v] for v in raw_labels], dtype=torch.int64)
    return blocks, labels, keep, classes


MISSING_VALUE_MARKERS = frozenset({
    "", "na", "n/a", "nan", "-nan", "none", "null", "nil", "<na>", "#n/a", "#n/a n/a", "#na",
    "1.#ind", "-1.#ind", "1.#qnan", "-1.#qnan"})
"""Cells (compared in lower case) that spreadsheets, pandas and databases write for a missing value."""


def _check_label_values(path: Path, column: str, values: list[str], ids: list[str], lines: list[int]) -> None:
    """Refuse a missing label (an empty cell or a marker such as ``NA``, ``N/A``, ``NaN``,
    ``None``, ``null``: :data:`MISSING_VALUE_MARKERS`), which would become a class of its own, and
    one number spelt two ways (``1`` and ``1.0``), which would become two classes."""
    for identifier, value, line in zip(ids, values, lines):
        if value.lower() in MISSING_VALUE_MARKERS:
            raise ValueError(f"{path} line {line}: column {column!r} of record {identifier!r} has no "
                             f"label (found {value!r}, a missing-value marker); drop or label the "
                             "record first" + (f" (a class really named {value!r} must be renamed)" if value else ""))
    spellings: dict[float, set[str]] = {}
    for value in set(values):
        if _is_number(value):
            spellings.setdefault(float(value), set()).add(value)
    mixed = next((sorted(v) for v in spellings.values() if len(v) > 1), None)
    if mixed:
        raise ValueError(f"{path}: column {column!r} spells one number several ways {mixed}, which "
                         f"would be separate classes; write each class one way")


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True
