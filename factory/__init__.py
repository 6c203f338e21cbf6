"""Edge Model Factory: hardware-aware NAS for lightweight models on small devices."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("edge-model-factory")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+local"
