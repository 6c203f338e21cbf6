"""Search spaces. Importing this package registers the built-in ones."""

from __future__ import annotations

from collections.abc import Mapping

from factory.spaces import mobilenet, nb201, shufflenet, vgg  # noqa: F401  (registers built-ins)
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
from targets.errors import UserError


def get_space(
    name: str, spec: InputSpec | None = None, options: Mapping[str, str] | None = None
) -> SearchSpace:
    """An instance of the space called `name`, adapted to `spec` (default Fashion-MNIST),
    with the space's own options (e.g. shufflenet's `widths`); a wrong one names the valid."""
    cls = SPACES.get(name)
    for key, value in (options or {}).items():
        if key not in cls.options:
            valid = ", ".join(sorted(cls.options)) or "none"
            raise UserError(f"space {name} has no option {key!r}; its options: {valid}")
        if value not in cls.options[key]:
            raise UserError(f"space option {key}={value!r}; valid: {', '.join(cls.options[key])}")
    return cls(spec, **dict(options or {}))


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
