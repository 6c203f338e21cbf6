"""What a latency table is valid for (`TableKey`), how it is built (`LutSettings`) and the
one figure it keeps per model (`Timing`): plain data, no runtime."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from profilers.base import ProfileSettings
from targets.errors import UserError

FORMAT = 1
STATISTICS = ("median", "min")
SAMPLINGS = ("uniform", "biased")
Progress = Callable[[str, int, int], None]  # (phase, done, total)


@dataclass(frozen=True)
class TableKey:
    """What a table is valid for; a table is refused for anything else."""

    space: str
    target: str
    input_shape: tuple[int, int, int]  # C, H, W
    num_classes: int
    precision: str
    runtime: str
    runtime_version: str

    def filename(self) -> str:
        c, h, w = self.input_shape
        return (
            f"{self.target}_{self.space}_{c}x{h}x{w}_k{self.num_classes}_{self.precision}_"
            f"{self.runtime}-{self.runtime_version}.json"
        )

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "input_shape": list(self.input_shape)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TableKey:
        return cls(**{**data, "input_shape": tuple(data["input_shape"])})

    def differences(self, other: TableKey) -> list[str]:
        """'field: mine != other' for each differing field."""
        mine, theirs = self.to_dict(), other.to_dict()
        return [f"{k} {mine[k]} != {theirs[k]}" for k in mine if mine[k] != theirs[k]]


@dataclass(frozen=True)
class LutSettings:
    """How a table is built: timing per model, rounds, which statistic, how far to search."""

    warmup_ms: float = 100.0
    min_duration_ms: float = 300.0
    min_iters: int = 20
    rounds: int = 1  # interleaved timing rounds per model (median / min over rounds)
    statistic: str = "min"  # what `predict` returns (see the module docstring)
    calibration_archs: int = 10  # random architectures measured end to end for the fit
    patience: int = 20  # stop sampling once this many samples in a row bring no new block
    max_samples: int = 100  # random samples at most, after the one-hot variations
    max_blocks: int = 2000  # blocks profiled at build time at most

    def __post_init__(self) -> None:
        if self.statistic not in STATISTICS:
            raise UserError(f"statistic must be one of {', '.join(STATISTICS)}")
        if min(self.rounds, self.calibration_archs, self.max_blocks) < 1:
            raise UserError("rounds, calibration archs and max blocks must be >= 1")
        if self.patience < 1 or self.max_samples < 0:
            raise UserError("patience must be >= 1 and max samples >= 0")
        self.profile_settings()  # validates the timing fields

    def profile_settings(self) -> ProfileSettings:
        return ProfileSettings(self.warmup_ms, self.min_duration_ms, self.min_iters)


@dataclass(frozen=True)
class Timing:
    """One model's latency over the rounds, ms: median of medians, min of mins."""

    median_ms: float
    min_ms: float

    def get(self, statistic: str) -> float:
        return self.median_ms if statistic == "median" else self.min_ms

    def minus(self, other: Timing) -> Timing:
        """Overhead removed, floored at 0."""
        median_ms, min_ms = self.median_ms - other.median_ms, self.min_ms - other.min_ms
        return Timing(max(0.0, median_ms), max(0.0, min_ms))

    def to_dict(self) -> dict[str, float]:
        return {"median_ms": self.median_ms, "min_ms": self.min_ms}
