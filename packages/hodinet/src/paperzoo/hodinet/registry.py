"""Named presets (timm-style ``create_model``/``list_models``).

A private stand-in with the core registry's interface (``Registry(kind)``, ``add``, ``create``,
``names``, ``preset``), used until ``paperzoo.core.registry`` is released.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any


class Registry:
    """Factories with preset keyword arguments; ``create(name, **overrides)`` (overrides win)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, tuple[Callable[..., Any], dict[str, Any]]] = {}

    def add(self, name: str, factory: Callable[..., Any], **preset: Any) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = (factory, preset)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def preset(self, name: str) -> dict[str, Any]:
        if name not in self._entries:
            raise ValueError(f"unknown {self.kind} {name!r}; choose from {', '.join(self.names())}")
        return dict(self._entries[name][1])

    def create(self, name: str, **overrides: Any) -> Any:
        factory, _ = self._entries.get(name, (None, None))
        kwargs = self.preset(name)
        accepted = inspect.signature(factory).parameters
        unknown = [k for k in overrides if k not in accepted]
        if unknown:
            raise ValueError(f"unknown {self.kind} option(s) {unknown} for {name!r}; "
                             f"valid: {', '.join(accepted)}")
        kwargs.update(overrides)
        return factory(**kwargs)
