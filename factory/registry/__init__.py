"""Model registries: publish bundles (`push`), list them (`Index`), fetch them verified (`pull`).

A registry is a directory or an http(s) URL holding `index.json` and content-addressed blobs
(`blobs/sha256/<hex>`). The default one ships inside the package (`shipped/`); `$EMF_REGISTRY`
names another. This `__init__` imports only the light, torch-free parts.
"""

from __future__ import annotations

from factory.registry.cache import CachedBundle
from factory.registry.fetch import PulledModel, pull
from factory.registry.index import (
    ChecksumError,
    Index,
    IndexEntry,
    ManifestView,
    ModelSummary,
    parse_ref,
)
from factory.registry.publish import PushResult, push, read_bundle
from factory.registry.sources import SHIPPED_REGISTRY, default_registry, open_registry

__all__ = [
    "SHIPPED_REGISTRY",
    "CachedBundle",
    "ChecksumError",
    "Index",
    "IndexEntry",
    "ManifestView",
    "ModelSummary",
    "PulledModel",
    "PushResult",
    "default_registry",
    "open_registry",
    "parse_ref",
    "pull",
    "push",
    "read_bundle",
]
