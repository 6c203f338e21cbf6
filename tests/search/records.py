"""Records of real architectures with chosen objectives, for the front's tests."""

from __future__ import annotations

import numpy as np

from factory.spaces import get_space
from factory.strategies.base import Record

OBJECTIVES = ("accuracy", "latency_ms")


def records(*points: tuple[float, float]) -> list[Record]:
    """One record of a distinct shufflenet architecture per (accuracy, latency_ms)."""
    space = get_space("shufflenet")
    rng = np.random.default_rng(0)
    out = []
    for acc, ms in points:
        g = space.sample(rng)
        out.append(Record(g, space.arch_id(g), {"accuracy": acc, "latency_ms": ms}, "gen", 1))
    return out
