"""Device definitions (YAML) and their registry. Imports nothing else of ours.

The built-in targets are the YAML files in `targets/definitions/`; extra ones can be added
from a directory named by `$EMF_TARGETS_DIR` (one YAML file per target).
"""

from __future__ import annotations

import os
from pathlib import Path

from targets.errors import UnknownNameError, UserError
from targets.loader import load_target
from targets.registry import Registry
from targets.target import AgentRef, Target, cache_dir

DEFAULT_TARGET = "x86-cpu"
TARGETS_ENV = "EMF_TARGETS_DIR"
_DEFINITIONS = Path(__file__).parent / "definitions"


def _load_registry() -> Registry[Target]:
    registry: Registry[Target] = Registry("target")
    dirs = [_DEFINITIONS]
    if os.environ.get(TARGETS_ENV):
        extra = Path(os.environ[TARGETS_ENV]).expanduser()
        if not extra.is_dir():
            raise UserError(
                f"${TARGETS_ENV}={os.environ[TARGETS_ENV]} is not a directory; create it (one "
                f"YAML file per target) or unset {TARGETS_ENV}"
            )
        dirs.append(extra)
    for directory in dirs:
        for path in sorted(directory.glob("*.yaml")):
            target = load_target(path)
            try:
                registry.register(target.name, target, target.aliases)
            except ValueError as exc:
                raise UserError(f"{path}: {exc}") from exc
    return registry


def registry() -> Registry[Target]:
    """All known targets (built in, plus `$EMF_TARGETS_DIR`), read fresh on each call."""
    return _load_registry()


def get_target(name: str) -> Target:
    """A target by name or alias; an unknown name raises with the list of valid ones."""
    return registry().get(name)


__all__ = [
    "DEFAULT_TARGET",
    "AgentRef",
    "Registry",
    "Target",
    "UnknownNameError",
    "UserError",
    "cache_dir",
    "get_target",
    "load_target",
    "registry",
]
