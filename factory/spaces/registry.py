"""The registry of search spaces; the key is the `--space` value."""

from __future__ import annotations

from factory.spaces.base import SearchSpace
from targets.registry import Registry

SPACES: Registry[type[SearchSpace]] = Registry("space", key_attr="name")
