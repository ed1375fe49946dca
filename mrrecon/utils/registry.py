"""Named plugins: classes registered by the modules that define them, found by name from a lower layer.

The model types of ``from_pretrained`` and the training recipes are defined in ``mrrecon.methods``, above the
layers that look them up (``core``, ``train``). A :class:`Registry` holds the registered classes and a table
of the modules that define the built-in ones; a lookup of a built-in name imports its module on first use
(a plugin lookup by module name, not an import of the layer above).
"""

from __future__ import annotations

import importlib
from typing import Generic, TypeVar

from mrrecon.errors import ConfigError

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """``kind``: what the entries are, for messages ("model type", "recipe"); ``builtin_modules``: name ->
    the module whose import registers it."""

    def __init__(self, kind: str, builtin_modules: dict[str, str] | None = None):
        self.kind = kind
        self.builtin_modules = dict(builtin_modules or {})
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> None:
        """Register ``entry`` (a class) as ``name``; the same class registered again (a module reloaded) is fine."""
        existing = self._entries.get(name)
        if existing is not None and getattr(existing, "__qualname__", existing) != getattr(entry, "__qualname__",
                                                                                              entry):
            raise ConfigError(f"{self.kind} {name!r} is defined twice ({existing} and {entry})")
        self._entries[name] = entry

    def get(self, name: str) -> T:
        if name not in self._entries and name in self.builtin_modules:
            importlib.import_module(self.builtin_modules[name])
        if name not in self._entries:
            raise ConfigError(f"unknown {self.kind} {name!r}; known: {self.names()}")
        return self._entries[name]

    def names(self) -> list[str]:
        """Every name: registered, or built in and not imported yet."""
        return sorted(set(self._entries) | set(self.builtin_modules))

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self.builtin_modules
