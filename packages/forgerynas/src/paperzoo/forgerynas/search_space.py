"""Genotypes: the derived normal and reduction cells, their checked JSON files, random genotypes
of a space and the built-ins (spec section 2, ``search_space.py``).

A genotype holds, per cell type, ``2 * steps`` pairs ``(op, input)``: node ``i`` (0-based) reads
two inputs among ``0 .. i + 1`` (0 = ``c_{k-2}``, 1 = ``c_{k-1}``, ``2 + j`` = node ``j``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from paperzoo.core.data import read_json
from paperzoo.forgerynas.ops import check_space, space_ops

__all__ = [
    "Genotype",
    "GENOTYPE_FORMAT",
    "BUILTIN_GENOTYPES",
    "random_genotype",
    "load_genotype",
    "resolve_genotype",
]

GENOTYPE_FORMAT = "paperzoo-forgerynas-genotype/1"


@dataclass(frozen=True)
class Genotype:
    """DARTS genotype fields plus the ``space`` the ops come from and the node count ``steps``."""

    normal: tuple[tuple[str, int], ...]
    reduce: tuple[tuple[str, int], ...]
    space: str = "forgery"
    steps: int = 4
    normal_concat: tuple[int, ...] = field(default=())
    reduce_concat: tuple[int, ...] = field(default=())

    def __post_init__(self) -> None:
        for name in ("normal", "reduce"):
            object.__setattr__(
                self, name, tuple((str(op), int(i)) for op, i in getattr(self, name))
            )
        default = tuple(range(2, 2 + self.steps))
        for name in ("normal_concat", "reduce_concat"):
            object.__setattr__(self, name, tuple(int(i) for i in getattr(self, name)) or default)
        self.check()

    def check(self, source: str = "genotype") -> None:
        """Refuse an unknown space, a node count that disagrees with ``steps``, an input index out
        of range, an op outside the space (``none`` included: it is never derived) and a
        ``*_concat`` naming a state out of range or twice."""
        try:
            check_space(self.space)
        except ValueError as error:
            raise ValueError(f"{source}: {error}") from None
        if not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"{source}: steps must be a positive integer, got {self.steps!r}")
        ops = set(space_ops(self.space)) - {"none"}
        for kind in ("normal", "reduce"):
            edges = getattr(self, kind)
            if len(edges) != 2 * self.steps:
                raise ValueError(
                    f"{source}: {kind} has {len(edges)} edges but steps={self.steps} needs "
                    f"{2 * self.steps} (two per node)"
                )
            for position, (op, index) in enumerate(edges):
                node = position // 2
                if op not in ops:
                    raise ValueError(
                        f"{source}: {kind}[{position}] op {op!r} is not a non-none op of "
                        f"space {self.space!r} ({', '.join(sorted(ops))})"
                    )
                if not 0 <= index < node + 2:
                    raise ValueError(
                        f"{source}: {kind}[{position}] input {index} out of range for node "
                        f"{node} (0..{node + 1})"
                    )
            concat = getattr(self, f"{kind}_concat")
            if not concat or any(not 0 <= i < self.steps + 2 for i in concat):
                raise ValueError(
                    f"{source}: {kind}_concat {list(concat)} must name states 0..{self.steps + 1}"
                )
            repeated = sorted({i for i in concat if concat.count(i) > 1})
            if repeated:
                raise ValueError(
                    f"{source}: {kind}_concat {list(concat)} lists state(s) {repeated} more than "
                    "once (each state is concatenated once into the cell output)"
                )

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": GENOTYPE_FORMAT,
            "space": self.space,
            "steps": self.steps,
            "normal": [list(e) for e in self.normal],
            "normal_concat": list(self.normal_concat),
            "reduce": [list(e) for e in self.reduce],
            "reduce_concat": list(self.reduce_concat),
        }

    @classmethod
    def from_dict(cls, data: Any, source: str = "genotype") -> Genotype:
        if not isinstance(data, dict):
            raise ValueError(f"{source}: a genotype is a JSON object, got {type(data).__name__}")
        if data.get("format") != GENOTYPE_FORMAT:
            raise ValueError(
                f"{source}: format tag {data.get('format')!r}, expected {GENOTYPE_FORMAT!r}"
            )
        missing = [k for k in ("space", "steps", "normal", "reduce") if k not in data]
        if missing:
            raise ValueError(f"{source}: missing field(s) {missing}")
        pairs = {}
        for kind in ("normal", "reduce"):
            entries = data[kind]
            if not isinstance(entries, list) or not all(
                isinstance(e, list | tuple)
                and len(e) == 2
                and isinstance(e[0], str)
                and isinstance(e[1], int)
                and not isinstance(e[1], bool)
                for e in entries
            ):
                raise ValueError(f"{source}: {kind} must be a list of [op, input index] pairs")
            pairs[kind] = tuple((e[0], e[1]) for e in entries)
        steps = data["steps"]
        if not isinstance(steps, int) or isinstance(steps, bool):
            raise ValueError(f"{source}: steps must be an integer, got {steps!r}")
        if not isinstance(data["space"], str):
            raise ValueError(f"{source}: space must be a string, got {data['space']!r}")
        for kind in ("normal_concat", "reduce_concat"):
            concat = data.get(kind, [])
            if not isinstance(concat, list) or not all(
                isinstance(i, int) and not isinstance(i, bool) for i in concat
            ):
                raise ValueError(
                    f"{source}: {kind} must be a list of state indices, got {concat!r}"
                )
        try:
            return cls(
                pairs["normal"],
                pairs["reduce"],
                space=data["space"],
                steps=steps,
                normal_concat=tuple(data.get("normal_concat", ())),
                reduce_concat=tuple(data.get("reduce_concat", ())),
            )
        except ValueError as error:
            message = str(error)
            raise ValueError(
                message if message.startswith(source) else f"{source}: {message}"
            ) from None

    def save(self, path: str | Path) -> Path:
        from paperzoo.core.results import atomic_write_text

        return atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")

    def ops_used(self) -> list[str]:
        return [op for op, _ in (*self.normal, *self.reduce)]


def load_genotype(path: str | Path) -> Genotype:
    """Read a genotype JSON file, with the file named in every error."""
    path = Path(path)
    data = read_json(path, "genotype file")  # a byte-order mark is dropped
    return Genotype.from_dict(data, source=str(path))


def random_genotype(space: str = "forgery", steps: int = 4, seed: int = 0) -> Genotype:
    """A genotype drawn uniformly from ``space``: per node two distinct inputs and a non-none op each."""
    ops = [o for o in space_ops(space) if o != "none"]
    rng = np.random.default_rng(seed)
    cells = []
    for _ in range(2):
        edges = []
        for node in range(steps):
            inputs = rng.choice(node + 2, size=2, replace=False)
            edges += [(ops[int(rng.integers(len(ops)))], int(i)) for i in sorted(inputs)]
        cells.append(tuple(edges))
    return Genotype(cells[0], cells[1], space=space, steps=steps)


# `paper-cross`: SEARCH_NET_1007 of the released genotypes file, the cell the official test
# script loads for the cross-domain model. `darts-v2`: DARTS (second order) on CIFAR-10.
BUILTIN_GENOTYPES: dict[str, Genotype] = {
    "paper-cross": Genotype(
        normal=(
            ("SepCDC_3x3_0.5", 1),
            ("max_pool_3x3", 0),
            ("SepCDC_3x3_0.5", 2),
            ("SepCDC_3x3_0.8", 1),
            ("SepCDC_3x3_0.7", 2),
            ("SepCDC_3x3_0.5", 3),
            ("SepCDC_3x3_0.0", 4),
            ("SepCDC_3x3_0.0", 3),
        ),
        reduce=(
            ("max_pool_3x3", 1),
            ("max_pool_3x3", 0),
            ("max_pool_3x3", 1),
            ("SepCDC_3x3_0.7", 2),
            ("SepCDC_3x3_0.8", 2),
            ("max_pool_3x3", 1),
            ("SepCDC_3x3_0.8", 2),
            ("max_pool_3x3", 1),
        ),
        space="forgery",
        steps=4,
    ),
    "darts-v2": Genotype(
        normal=(
            ("sep_conv_3x3", 0),
            ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 0),
            ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 1),
            ("skip_connect", 0),
            ("skip_connect", 0),
            ("dil_conv_3x3", 2),
        ),
        reduce=(
            ("max_pool_3x3", 0),
            ("max_pool_3x3", 1),
            ("skip_connect", 2),
            ("max_pool_3x3", 1),
            ("max_pool_3x3", 0),
            ("skip_connect", 2),
            ("skip_connect", 2),
            ("max_pool_3x3", 1),
        ),
        space="darts",
        steps=4,
    ),
}


def resolve_genotype(spec: str | Genotype, steps: int = 4) -> Genotype:
    """A genotype from a built-in name, ``random:SEED`` (forgery space), ``random:SPACE:SEED`` or a JSON file."""
    if isinstance(spec, Genotype):
        return spec
    if spec in BUILTIN_GENOTYPES:
        return BUILTIN_GENOTYPES[spec]
    if spec.startswith("random:"):
        parts = spec.split(":")[1:]
        space, seed = ("forgery", parts[0]) if len(parts) == 1 else (parts[0], parts[-1])
        if not seed.isdigit():
            raise ValueError(
                f"--genotype {spec!r}: use random:SEED or random:SPACE:SEED with an integer seed"
            )
        return random_genotype(space, steps, int(seed))
    if not spec.endswith(".json"):
        raise ValueError(
            f"--genotype {spec!r}: a .json file, random:SEED or one of {', '.join(BUILTIN_GENOTYPES)}"
        )
    return load_genotype(spec)
