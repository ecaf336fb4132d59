"""Presets as data: a small registry of named builders (timm's ``create_model`` / ``list_models``
shape) and the rule that explicit arguments override a preset, never the reverse.

    MODELS = Registry("model")
    MODELS.add("tiny", SmallNet, width=8, depth=1)
    MODELS.add("paper", SmallNet, width=64, depth=4)
    create_model = MODELS.create        # create_model("tiny", width=16) -> SmallNet(width=16, depth=1)
    list_models = MODELS.names

Config dataclasses follow the same rule with :func:`fill_preset`: fields that a preset sets
default to ``None``, and ``__post_init__`` fills only the ones the caller left unset.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from typing import Any


class Registry:
    """Named presets of one kind of object: ``name -> (factory, preset keyword arguments)``."""

    def __init__(self, kind: str = "model") -> None:
        self.kind = kind
        self._entries: dict[str, tuple[Callable[..., Any], dict[str, Any]]] = {}

    def add(self, name: str, factory: Callable[..., Any], **preset: Any) -> None:
        """Register ``name`` as ``factory(**preset)``; a name is registered once."""
        if not name or not isinstance(name, str):
            raise ValueError(f"a {self.kind} name must be a non-empty string, got {name!r}")
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        unknown = _unknown_keywords(factory, preset)
        if unknown:
            raise TypeError(f"{self.kind} preset {name!r}: {factory.__qualname__} takes no {unknown}")
        self._entries[name] = (factory, dict(preset))

    def register(self, name: str, **preset: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator form of :meth:`add`."""
        def decorate(factory: Callable[..., Any]) -> Callable[..., Any]:
            self.add(name, factory, **preset)
            return factory
        return decorate

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def _entry(self, name: str) -> tuple[Callable[..., Any], dict[str, Any]]:
        if name not in self._entries:
            raise ValueError(f"unknown {self.kind} {name!r}; choose from {', '.join(self.names())}")
        return self._entries[name]

    def preset(self, name: str) -> dict[str, Any]:
        """A copy of the keyword arguments ``name`` stands for."""
        return dict(self._entry(name)[1])

    def factory(self, name: str) -> Callable[..., Any]:
        return self._entry(name)[0]

    def create(self, name: str, **overrides: Any) -> Any:
        """Build ``name``; explicit ``overrides`` replace the preset's values."""
        factory, preset = self._entry(name)
        unknown = _unknown_keywords(factory, overrides)
        if unknown:
            valid = sorted(_keywords(factory) or ())
            raise ValueError(f"{self.kind} {name!r} takes no {unknown}; valid: {', '.join(valid)}")
        return factory(**{**preset, **overrides})


def _keywords(factory: Callable[..., Any]) -> set[str] | None:
    """Keyword names ``factory`` accepts, or ``None`` when it accepts any (``**kwargs``)."""
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return {p.name for p in parameters
            if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)}


def _unknown_keywords(factory: Callable[..., Any], kwargs: Mapping[str, Any]) -> list[str]:
    accepted = _keywords(factory)
    return [] if accepted is None else sorted(k for k in kwargs if k not in accepted)


def fill_preset(config: Any, presets: Mapping[str, Mapping[str, Any]], field: str = "preset") -> None:
    """Fill every ``None`` field of the dataclass ``config`` from ``presets[config.<field>]``.

    Explicit values win: ``Config(preset="tiny", width=32)`` keeps ``width=32`` and takes the rest
    from ``tiny``. Call it first thing in ``__post_init__``.
    """
    if not dataclasses.is_dataclass(config):
        raise TypeError(f"fill_preset needs a dataclass instance, got {type(config).__name__}")
    name = getattr(config, field)
    if name not in presets:
        raise ValueError(f"unknown {field} {name!r}; choose from {', '.join(sorted(presets))}")
    names = {f.name for f in dataclasses.fields(config)}
    unknown = sorted(set(presets[name]) - names)
    if unknown:
        raise TypeError(f"{field} {name!r} sets {unknown}, which {type(config).__name__} does not have")
    for key, value in presets[name].items():
        if getattr(config, key) is None:
            object.__setattr__(config, key, value)  # frozen dataclasses too
