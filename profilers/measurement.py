"""The typed result of timing one model on one target, shared by every profiler.

Plain dataclasses and the standard library only: the agent sends these as JSON from devices
that have no training stack installed.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

HOW = ("measured", "table", "predicted")
UNSTABLE_CV = 0.025  # coefficient of variation above which a measurement is flagged


@dataclass(frozen=True)
class LatencyStats:
    """Statistics of per-iteration latencies, all in milliseconds."""

    min: float
    mean: float
    median: float
    p90: float
    p95: float
    p99: float
    std: float
    cv: float  # std / mean
    n: int

    @property
    def unstable(self) -> bool:
        return self.cv > UNSTABLE_CV

    @classmethod
    def from_samples(cls, samples_ms: list[float]) -> LatencyStats:
        """Statistics of raw per-iteration times (ms); percentiles by linear interpolation."""
        if not samples_ms:
            raise ValueError("no latency samples")
        xs = sorted(samples_ms)
        mean = statistics.fmean(xs)
        std = statistics.pstdev(xs) if len(xs) > 1 else 0.0
        return cls(
            min=xs[0],
            mean=mean,
            median=_percentile(xs, 50),
            p90=_percentile(xs, 90),
            p95=_percentile(xs, 95),
            p99=_percentile(xs, 99),
            std=std,
            cv=std / mean if mean > 0 else math.inf,
            n=len(xs),
        )


def _percentile(sorted_xs: list[float], q: float) -> float:
    pos = (len(sorted_xs) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_xs[lo] + (sorted_xs[hi] - sorted_xs[lo]) * (pos - lo)


@dataclass(frozen=True)
class Measurement:
    """One latency figure and everything needed to trust or reproduce it."""

    target: str
    runtime: str  # "onnxruntime" | "tensorrt"
    runtime_version: str
    provider: str  # execution provider really used (or "tensorrt")
    precision: str
    threads: int | None
    input_shape: tuple[int, ...]
    latency_ms: LatencyStats
    warmup_ms: float
    how: str  # one of HOW
    device: dict[str, Any] = field(default_factory=dict)
    per_op_ms: dict[str, float] = field(default_factory=dict)  # op type -> summed ms/run

    @property
    def unstable(self) -> bool:
        return self.latency_ms.unstable

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["input_shape"] = list(self.input_shape)
        data["unstable"] = self.unstable
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Measurement:
        data = dict(data)
        data.pop("unstable", None)
        data["latency_ms"] = LatencyStats(**data["latency_ms"])
        data["input_shape"] = tuple(data["input_shape"])
        if data["how"] not in HOW:
            raise ValueError(f"how must be one of {HOW}, not {data['how']!r}")
        return cls(**data)
