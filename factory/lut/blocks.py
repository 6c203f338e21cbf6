"""The blocks of a space a table holds: found by one-hot variations and random samples,
exported to ONNX one by one, timed with the runtime's overhead removed."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx

from exporters.onnx_export import export_onnx
from factory.lut.settings import LutSettings, Progress, Timing
from factory.lut.timer import ModelTimer
from factory.spaces import Block, Genotype, SearchSpace
from targets.target import Target


def enumerate_blocks(
    space: SearchSpace,
    rng: np.random.Generator,
    settings: LutSettings,
    progress: Progress | None = None,
) -> tuple[dict[str, Block], dict[str, Any]]:
    """Distinct blocks by key: every choice at every position of each manual architecture
    (one-hot variations), then random samples until `patience` in a row add nothing."""
    found: dict[str, Block] = {}

    def add(g: Genotype) -> int:
        new = [b for b in space.blocks(g) if b.key not in found]
        for b in new[: settings.max_blocks - len(found)]:
            found[b.key] = b
        return len(new)

    variants = [
        (*base[:i], choice, *base[i + 1 :])
        for base in space.manual().values()
        for i, options in enumerate(space.choices())
        for choice in range(options)
    ]
    total = len(variants) + settings.max_samples
    for done, g in enumerate(variants, 1):
        if len(found) >= settings.max_blocks:
            break
        add(g)
        if progress:
            progress("finding blocks", done, total)
    samples = quiet = 0
    while quiet < settings.patience and samples < settings.max_samples:
        if len(found) >= settings.max_blocks:
            break
        quiet = 0 if add(space.sample(rng)) else quiet + 1
        samples += 1
        if progress:
            progress("finding blocks", len(variants) + samples, total)
    if progress:
        progress("finding blocks", total, total)
    info = {"samples": samples, "complete": quiet >= settings.patience, "blocks_found": len(found)}
    return found, info


def _is_noop(data: bytes) -> bool:
    """True when the exported block only forwards its input ('skip', zero without pool)."""
    return all(n.op_type == "Identity" for n in onnx.load_from_string(data).graph.node)


def profile_blocks(
    blocks: list[Block],
    target: Target,
    settings: LutSettings,
    overhead: Timing,
    source: str = "on_demand",
) -> dict[str, dict[str, Any]]:
    """Export and time blocks, overhead removed (0 for those that only forward input)."""
    entries, models = export_blocks(blocks, source)
    for key, timing in ModelTimer(target, settings).time(models).items():
        entries[key] |= timing.minus(overhead).to_dict()
    return entries


def export_blocks(
    blocks: list[Block], source: str, progress: Progress | None = None
) -> tuple[dict[str, dict[str, Any]], dict[str, tuple[bytes, tuple[int, ...]]]]:
    """Table entries (times still 0) and the ONNX models to time: each block exported
    with the legacy exporter, in memory; blocks that only forward their input get none."""
    entries: dict[str, dict[str, Any]] = {}
    models: dict[str, tuple[bytes, tuple[int, ...]]] = {}
    for i, block in enumerate(blocks):
        shape = (1, *block.in_shape)
        data = export_onnx(block.module, shape, check_parity=False).data
        params = sum(p.numel() for p in block.module.parameters())
        entries[block.key] = {"median_ms": 0.0, "min_ms": 0.0, "params": params, "source": source}
        if _is_noop(data):
            entries[block.key]["source"] = "noop"
        else:
            models[block.key] = (data, shape)
        if progress:
            progress("exporting blocks", i + 1, len(blocks))
    return entries, models


def network_models(
    space: SearchSpace, archs: list[Genotype]
) -> dict[str, tuple[bytes, tuple[int, ...]]]:
    """{genotype text: (ONNX of build(g), input shape)} for timing whole networks."""
    shape = (1, *space.spec.shape)
    return {
        space.format(g): (export_onnx(space.build(g), shape, check_parity=False).data, shape)
        for g in archs
    }
