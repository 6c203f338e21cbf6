"""The registry of search strategies; the key is the `--strategy` value."""

from __future__ import annotations

from factory.strategies.base import Strategy
from targets.registry import Registry

STRATEGIES: Registry[type[Strategy]] = Registry("strategy", key_attr="name")
