"""Search strategies. Importing this package registers the built-in ones."""

from __future__ import annotations

from factory.strategies import evolution, random_search, rl  # noqa: F401  (registers built-ins)
from factory.strategies.base import Record, SearchContext, Strategy
from factory.strategies.registry import STRATEGIES

__all__ = ["STRATEGIES", "Record", "SearchContext", "Strategy"]
