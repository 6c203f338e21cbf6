"""The executor seam: where candidate work runs. In-process now; a Ray or multi-device
executor can implement the same two methods without any strategy changing."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Executor(Protocol):
    """Runs independent pieces of candidate work (evaluation, profiling)."""

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
        """fn applied to every item, results in input order."""

    def close(self) -> None:
        """Release workers (nothing to do in-process)."""


class InProcessExecutor:
    """Runs work one item at a time in this process: one measurement at a time per device."""

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
        return [fn(item) for item in items]

    def close(self) -> None:
        return None
