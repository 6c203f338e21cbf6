"""Is one ONNX model shown faster than another on x86-cpu? One rule for every bench page.

Two models alternate in pairs in one process, so a change of load touches both alike. "Shown
faster" needs the median ratio below 1 *and* two thirds of the pairs agreeing: at batch-1
latencies under a millisecond the ratio alone moves by more than the differences judged.
"""

from __future__ import annotations

import os

# one timing window per model and pair (bench/baselines.py uses it for its rounds too)
TIMING = {"warmup_ms": 100, "min_duration_ms": 400, "min_iters": 20, "batch": 1}


def paired(ours: bytes, theirs: bytes, pairs: int) -> dict:
    """Alternating pairs on x86-cpu (1 thread, batch 1); ratio = ours / theirs."""
    from profilers.base import ProfileSettings
    from profilers.registry import get_profiler
    from targets import get_target

    target = get_target("x86-cpu")
    load_before = os.getloadavg()[0]
    result = get_profiler(target).compare(ours, theirs, target, pairs, ProfileSettings(**TIMING))
    return {
        "ratio": result.ratio,
        "pairs_faster": sum(r < 1 for r in result.ratios),
        "pairs": pairs,
        "spread": result.spread,
        "ours_ms": sorted(a.latency_ms.median for a, _ in result.pairs)[pairs // 2],
        "theirs_ms": sorted(b.latency_ms.median for _, b in result.pairs)[pairs // 2],
        "load": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


def shown_faster(timing: dict) -> bool:
    """A median ratio below 1 and at least two thirds of the pairs faster."""
    return timing["ratio"] < 1 and timing["pairs_faster"] >= 2 * timing["pairs"] / 3
