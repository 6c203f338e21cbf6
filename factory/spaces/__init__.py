"""Search spaces. Importing this package registers the built-in ones."""

from __future__ import annotations

from factory.spaces import mobilenet, shufflenet, vgg  # noqa: F401  (registers built-ins)
from factory.spaces.base import (
    Block,
    Decision,
    Genotype,
    InputSpec,
    LayerInfo,
    SearchSpace,
    Supernet,
)
from factory.spaces.registry import SPACES


def get_space(name: str, spec: InputSpec | None = None) -> SearchSpace:
    """An instance of the space called `name`, adapted to `spec` (default Fashion-MNIST)."""
    return SPACES.get(name)(spec)


__all__ = [
    "SPACES",
    "Block",
    "Decision",
    "Genotype",
    "InputSpec",
    "LayerInfo",
    "SearchSpace",
    "Supernet",
    "get_space",
]
