"""Extension points of SEDD: registries of graphs (forward processes), noise schedules and
predictors (not the engine's component registry). A third-party package adds one by
calling ``GRAPHS.register(name)`` (a decorator) at import time, or by declaring an entry
point in the group ``engine_sedd.<kind>`` (e.g. ``engine_sedd.graphs``) that names the
class; entry points are read lazily, the first time a name is missing."""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

from engine.interfaces import ConfigError


class UnknownNameError(ConfigError, KeyError):
    """A name no registry entry has: a KeyError, and a one-line usage error on the CLI."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class Registry:
    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, Any] = {}
        self._entry_points_loaded = False

    def register(self, name: str, obj: Any = None) -> Callable | Any:
        """Register ``obj`` under ``name``; without ``obj`` return a decorator."""
        if obj is None:
            return lambda o: self.register(name, o)
        if name in self._items and self._items[name] is not obj:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[name] = obj
        return obj

    def _load_entry_points(self) -> None:
        self._entry_points_loaded = True
        for ep in entry_points(group=f"engine_sedd.{self.kind}s"):
            if ep.name not in self._items:
                self._items[ep.name] = ep.load()

    def get(self, name: str) -> Any:
        if name not in self._items and not self._entry_points_loaded:
            self._load_entry_points()
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}") from None

    def create(self, name: str, *args, **kwargs) -> Any:
        return self.get(name)(*args, **kwargs)

    def names(self) -> list[str]:
        if not self._entry_points_loaded:
            self._load_entry_points()
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self.names()


GRAPHS = Registry("graph")
SCHEDULES = Registry("schedule")
PREDICTORS = Registry("predictor")
