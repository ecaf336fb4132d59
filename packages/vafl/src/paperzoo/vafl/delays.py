"""Compute-time distributions and offline windows of the clients (spec section 3): the delay
spec ``"exp:1,2,4,8"`` and the drop-out schedule ``"3:100-200;1:0-50"``. Plain NumPy, no torch."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

DELAY_KINDS = ("exp", "const", "bounded")


@dataclass(frozen=True)
class DelaySpec:
    """Per-client compute-time distributions, parsed from ``"exp:1,2,4,8"`` (exponential with those
    means), ``"const:1,2,4,8"`` or ``"bounded:D"`` (uniform on ``[1, D]``, **[reconstructed]**
    reading of a bounded delay). One value applies to every client."""

    kind: str
    values: tuple[float, ...]

    @classmethod
    def parse(cls, spec: str, num_clients: int) -> DelaySpec:
        if not isinstance(spec, str) or ":" not in spec:
            raise ValueError(f"delay spec {spec!r} does not parse; expected e.g. 'exp:1,2,4,8', 'const:1', 'bounded:8'")
        kind, _, rest = spec.partition(":")
        kind = kind.strip()
        if kind not in DELAY_KINDS:
            raise ValueError(f"delay spec {spec!r}: unknown distribution {kind!r}; choose from {', '.join(DELAY_KINDS)}")
        try:
            values = tuple(float(v) for v in rest.split(",") if v.strip())
        except ValueError:
            raise ValueError(f"delay spec {spec!r} does not parse: values must be numbers") from None
        if not values:
            raise ValueError(f"delay spec {spec!r} names no values")
        if any(not math.isfinite(v) or v <= 0 for v in values):
            raise ValueError(f"delay spec {spec!r}: every mean/bound must be positive and finite")
        if kind == "bounded" and (len(values) != 1 or values[0] < 1):
            raise ValueError(f"delay spec {spec!r}: 'bounded:D' takes one bound D >= 1")
        if len(values) == 1:
            values = values * num_clients
        if len(values) != num_clients:
            raise ValueError(f"delay spec {spec!r} gives {len(values)} values for {num_clients} clients")
        return cls(kind, values)

    def draw(self, client: int, rng: np.random.Generator) -> float:
        value = self.values[client]
        if self.kind == "exp":
            return float(rng.exponential(value))
        if self.kind == "const":
            return value
        return float(rng.uniform(1.0, value))

    def means(self) -> list[float]:
        return [(1.0 + v) / 2 if self.kind == "bounded" else v for v in self.values]




class DropoutSchedule:
    """Windows ``client -> [(start, end), ...]`` (virtual or wall time; ``end`` may be ``inf``)
    during which the client is offline: it sends nothing, the server trains on its stored entries."""

    def __init__(self, schedule: Mapping[int, Sequence[Sequence[float]]] | None, num_clients: int,
                 horizon: float = math.inf) -> None:
        self.windows: dict[int, list[tuple[float, float]]] = {}
        for client, windows in (schedule or {}).items():
            client = int(client)
            if not 0 <= client < num_clients:
                raise ValueError(f"dropout schedule names unknown client {client}; clients are 0..{num_clients - 1}")
            clean = []
            for window in windows:
                if len(window) != 2:
                    raise ValueError(f"dropout window {window!r} of client {client} is not (start, end)")
                start, end = float(window[0]), float(window[1])
                if not start < end or start < 0:
                    raise ValueError(f"dropout window ({start}, {end}) of client {client} needs 0 <= start < end")
                clean.append((start, end))
            self.windows[client] = sorted(clean)
        if num_clients and all(self._offline_from(c, horizon) <= 0.0 for c in range(num_clients)):
            raise ValueError("the dropout schedule takes every client offline for the whole run")
        if num_clients and math.isinf(horizon) and all(
                math.isfinite(self._offline_from(c, horizon)) for c in range(num_clients)):
            raise ValueError("the dropout schedule takes every client offline for the rest of the run")

    def _offline_from(self, client: int, horizon: float) -> float:
        """The time from which ``client`` stays offline up to ``horizon`` (``inf`` if it never does)."""
        merged: list[list[float]] = []
        for start, end in self.windows.get(client, []):
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        if merged and merged[-1][1] >= horizon:
            return merged[-1][0]
        return math.inf

    def offline(self, client: int, t: float) -> bool:
        return any(start <= t < end for start, end in self.windows.get(client, []))

    def back_online(self, client: int, t: float) -> float:
        """First time >= t at which ``client`` is online."""
        moved = True
        while moved:
            moved = False
            for start, end in self.windows.get(client, []):
                if start <= t < end:
                    t, moved = end, True
        return t

    def offline_fraction(self, client: int, horizon: float) -> float:
        covered = sum(max(0.0, min(end, horizon) - start) for start, end in self.windows.get(client, [])
                      if start < horizon)
        return covered / horizon if horizon > 0 else 0.0


def parse_dropout(spec: str | None) -> dict[int, list[tuple[float, float]]] | None:
    """``"3:100-200;1:0-50"`` -> ``{3: [(100, 200)], 1: [(0, 50)]}``; ``inf`` allowed as an end."""
    if spec is None or not spec.strip():
        return None
    schedule: dict[int, list[tuple[float, float]]] = {}
    for item in spec.split(";"):
        try:
            client, window = item.split(":")
            start, end = window.split("-")
            schedule.setdefault(int(client), []).append((float(start), float(end)))
        except ValueError:
            raise ValueError(f"dropout spec {item!r} does not parse; expected 'client:start-end[;...]'") from None
    return schedule


def check_budget(budget: int, name: str = "budget (server updates)") -> None:
    if not isinstance(budget, int) or isinstance(budget, bool) or budget < 1:
        raise ValueError(f"{name} must be a positive integer, got {budget!r}")
