"""Jobs that tests send to Ray workers and farm threads. They live in an importable module
(`tests.scale_jobs`): a worker imports a function by its module name, and pytest imports
test files under bare names that a worker cannot import."""

from __future__ import annotations

import os
import time
from pathlib import Path

from profilers.base import ProfileSettings
from targets.target import Target

# long enough that two boards' windows overlap, short enough for a test
QUICK = ProfileSettings(warmup_ms=0.0, min_duration_ms=100.0, min_iters=5)


def dies_once(marker_dir: str, item: int) -> int:
    """Kills its worker process the first time it meets an item (a marker file says so)."""
    marker = Path(marker_dir) / f"seen-{item}"
    if not marker.exists():
        marker.write_text("died here once")
        os._exit(1)
    return item * item


def always_dies(item: int) -> int:
    os._exit(1)


def timed_profile(target: Target, model: bytes) -> tuple[str, int, int, float]:
    """(agent URL, start, end, median ms) of one measurement; times from the machine's
    monotonic clock, which every process on it shares."""
    from profilers.remote import profile_via_agent

    assert target.agent is not None and not target.more_agents  # the farm narrowed it
    start = time.monotonic_ns()
    m = profile_via_agent(model, target, None, QUICK)
    return target.agent.url, start, time.monotonic_ns(), m.latency_ms.median
