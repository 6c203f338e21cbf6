"""The export-format registry: format name (the `--format` value) -> `Exporter` class.

Everything that lists formats reads it: `--format` and its help, `parse_formats`, the bundle's
progress steps (`count_steps`), the manifest's file kinds and `factory report`. The built-in
formats register when `exporters` is imported (its `__init__` imports `exporters.formats`).
No torch here, nor in the format classes: their conversions import it when they run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from targets.errors import UserError
from targets.registry import Registry

if TYPE_CHECKING:
    from exporters.base import Exporter

FORMATS: Registry[type[Exporter]] = Registry("export format", key_attr="name")
CARD_KIND = "card"  # the model card, README.md: the one file no exporter writes


def build_order() -> tuple[str, ...]:
    """Every format name, in the order a bundle builds them (sources before conversions)."""
    return tuple(sorted(FORMATS.names(), key=lambda n: (FORMATS.get(n).order, n)))


def exporters_for(names: Sequence[str]) -> list[type[Exporter]]:
    """The exporter classes of `names`, in build order."""
    return [FORMATS.get(n) for n in build_order() if n in names]


def parse_formats(text: str | Sequence[str]) -> tuple[str, ...]:
    """'onnx,onnx-int8' -> ('onnx', 'onnx-int8'), in build order; the formats every bundle
    holds (model.onnx) are always added."""
    names = [n.strip().lower() for n in (text.split(",") if isinstance(text, str) else text)]
    unknown = [n for n in names if n and n not in FORMATS]
    if unknown:
        raise UserError(f"unknown export format {unknown[0]!r}; valid: {', '.join(build_order())}")
    return tuple(f for f in build_order() if FORMATS.get(f).always or f in names)


def file_kinds() -> tuple[str, ...]:
    """The `kind` values a manifest may list: one per format, and the model card's."""
    return (*(FORMATS.get(n).kind for n in build_order()), CARD_KIND)


def kind_labels() -> dict[str, str]:
    """Manifest kind -> the short label reports show (e.g. 'engine' -> 'TensorRT')."""
    return {FORMATS.get(n).kind: FORMATS.get(n).label for n in build_order()}
