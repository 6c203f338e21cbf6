"""A small generic registry: one per extension point, the name is the CLI value.

It lives in `targets` because `targets` imports nothing of ours, so `factory`, `profilers`
and `exporters` can all use it without breaking the one-way dependency rule.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from targets.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names (and aliases) to registered objects; duplicate names raise.

    With `key_attr`, registering also sets that attribute of the object (a class) to its
    name, so the key is written once, in the decorator, and the class still knows it."""

    def __init__(self, kind: str, key_attr: str | None = None) -> None:
        self.kind = kind
        self.key_attr = key_attr
        self._items: dict[str, T] = {}
        self._aliases: dict[str, str] = {}

    def register(self, name: str, obj: T, aliases: tuple[str, ...] = ()) -> T:
        for key in (name, *aliases):
            if key in self._items or key in self._aliases:
                raise ValueError(f"duplicate {self.kind} name: {key!r}")
        if self.key_attr is not None:
            setattr(obj, self.key_attr, name)
        self._items[name] = obj
        for alias in aliases:
            self._aliases[alias] = name
        return obj

    def decorator(self, name: str, aliases: tuple[str, ...] = ()) -> Callable[[T], T]:
        """`@registry.decorator("name")` registers the decorated class or function."""

        def wrap(obj: T) -> T:
            return self.register(name, obj, aliases)

        return wrap

    def resolve(self, name: str) -> str:
        """The canonical name for `name` or an alias; unknown names list the valid ones."""
        if name in self._items:
            return name
        if name in self._aliases:
            return self._aliases[name]
        valid = ", ".join(self.names())
        raise UnknownNameError(f"unknown {self.kind} {name!r}; valid: {valid}")

    def get(self, name: str) -> T:
        return self._items[self.resolve(name)]

    def names(self) -> list[str]:
        return sorted(self._items)

    def aliases_of(self, name: str) -> list[str]:
        return sorted(a for a, n in self._aliases.items() if n == name)

    def __contains__(self, name: object) -> bool:
        return name in self._items or name in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
