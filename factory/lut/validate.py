"""A table's error: predictions against end-to-end measurements of architectures it never
saw (MAPE, max error, Kendall's tau)."""

from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import dataclass
from typing import Any

import numpy as np

from factory.lut.blocks import network_models
from factory.lut.fit import kendall_tau
from factory.lut.sampling import distinct_samples
from factory.lut.settings import LutSettings, Progress, Timing
from factory.lut.table import LatencyTable
from factory.lut.timer import ModelTimer, one_torch_thread
from factory.spaces import Genotype, SearchSpace
from targets.target import Target


def measure_archs(
    space: SearchSpace,
    archs: list[Genotype],
    target: Target,
    settings: LutSettings,
    progress: Progress | None = None,
) -> list[Timing]:
    """End-to-end timings of `archs` (interleaved rounds, the same settings as the blocks)."""
    models = network_models(space, archs)
    timings = ModelTimer(target, settings).time(models, progress, "timing networks")
    return [timings[space.format(g)] for g in archs]


@dataclass(frozen=True)
class ValidationReport:
    """Prediction vs end-to-end measurement on architectures the table never saw."""

    statistic: str
    n: int
    mape_pct: float  # mean |pred - meas| / meas, %
    max_error_pct: float  # worst |pred - meas| / meas, %
    kendall_tau: float  # rank agreement (tau-b), 1 = same order
    rows: list[dict[str, Any]]  # genotype, predicted_ms, measured_ms, error_pct
    filled_on_demand: int  # blocks the table lacked and profiled during this validation

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def validate_table(
    table: LatencyTable,
    n: int,
    rng: np.random.Generator,
    statistic: str | None = None,
    progress: Progress | None = None,
    sampling: str = "uniform",
) -> ValidationReport:
    """Measure n fresh random architectures (not used for calibration) end to end and
    compare with the predictions."""
    stat = statistic or table.settings.statistic
    seen = [table.space.parse(c["genotype"]) for c in table.calibration]
    archs = distinct_samples(table.space, n, rng, exclude=seen, sampling=sampling)
    before = table.filled_on_demand
    with one_torch_thread():
        predicted = [table.predict(g, stat) for g in archs]
        timings = measure_archs(table.space, archs, table.target, table.settings, progress)
    measured = [t.get(stat) for t in timings]
    return report(table.space, archs, predicted, measured, stat, table.filled_on_demand - before)


def report(
    space: SearchSpace,
    archs: list[Genotype],
    predicted: list[float],
    measured: list[float],
    statistic: str,
    filled: int = 0,
) -> ValidationReport:
    """MAPE, max error and Kendall tau of `predicted` against `measured`."""
    errors = [abs(p - m) / m * 100 for p, m in zip(predicted, measured, strict=True)]
    rows = [
        {"genotype": space.format(g), "predicted_ms": p, "measured_ms": m, "error_pct": e}
        for g, p, m, e in zip(archs, predicted, measured, errors, strict=True)
    ]
    return ValidationReport(
        statistic=statistic,
        n=len(rows),
        mape_pct=statistics.fmean(errors) if errors else math.nan,
        max_error_pct=max(errors, default=math.nan),
        kendall_tau=kendall_tau(predicted, measured),
        rows=rows,
        filled_on_demand=filled,
    )
