"""The final front re-measured carefully before it is written, beside the search's objective.

The latency objective is a short measurement taken whenever the search met a candidate,
under whatever load the machine had then. Before the front is written, its models and the
manual reference architectures are exported to ONNX again and timed together in one
process: `rounds` rounds, every model once per round in a rotating order, each time the
median of a window. A model's final latency is the median of its per-round medians; the
spread, (max - min) / median of them, says how far to trust it. `latency_error` is the median
over the front of |objective - final| / final: how far the figures the search ranked by
stray from careful ones.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from factory.spaces.base import SearchSpace
from factory.strategies.base import Record
from profilers.base import ProfileSettings, relative_spread
from targets.target import Target

FINAL_ROUNDS = 7
FINAL_WINDOW = ProfileSettings(warmup_ms=20.0, min_duration_ms=150.0, min_iters=20)
FINAL_BUDGET_S = 40.0  # rounds stop early (at least one is always done) past this


@dataclass(frozen=True)
class FinalLatency:
    """One model's careful latency: the median of its per-round medians (ms) and their spread."""

    median_ms: float
    spread: float
    rounds_ms: tuple[float, ...]


@dataclass(frozen=True)
class FinalLatencies:
    """The re-measurement of a run's front and references, keyed by arch_id; `skipped` says
    why there is none."""

    latencies: dict[str, FinalLatency] = field(default_factory=dict)
    skipped: str | None = None
    rounds: int = 0
    seconds: float = 0.0
    how: str = ""

    def error(self, front: Sequence[Record]) -> float | None:
        """Median over the front of |objective - final| / final (None without figures)."""
        errors = [
            abs(r.value("latency_ms") - self.latencies[r.arch_id].median_ms)
            / self.latencies[r.arch_id].median_ms
            for r in front
            if r.arch_id in self.latencies and "latency_ms" in r.objectives
        ]
        return statistics.median(errors) if errors else None

    def row_fields(self, arch_id: str) -> dict[str, float]:
        """The per-model fields of a pareto.json row (none when not measured)."""
        final = self.latencies.get(arch_id)
        if final is None:
            return {}
        return {"latency_ms_final": final.median_ms, "latency_final_spread": final.spread}

    def summary(self, front: Sequence[Record]) -> dict[str, Any]:
        """The run-level fields of pareto.json."""
        if self.skipped is not None:
            return {"latency_final": {"skipped": self.skipped}, "latency_error": None}
        return {
            "latency_final": {
                "how": self.how,
                "rounds": self.rounds,
                "models": len(self.latencies),
                "seconds": round(self.seconds, 1),
            },
            "latency_error": self.error(front),
        }


def skip_reason(target: Target, objectives: Sequence[str]) -> str | None:
    """Why a run's front is not re-measured, or None when it is."""
    if "latency_ms" not in objectives:
        return "latency is not an objective"
    if not target.is_local:
        return f"target {target.name} is remote: its latencies come from its agent or table"
    return None


def remeasure(
    space: SearchSpace,
    target: Target,
    objectives: Sequence[str],
    front: Sequence[Record],
    references: Mapping[str, Record],
    skip: str | None = None,
    rounds: int = FINAL_ROUNDS,
    settings: ProfileSettings = FINAL_WINDOW,
    budget_s: float = FINAL_BUDGET_S,
) -> FinalLatencies:
    """Final latencies of the front's and the references' architectures (see the module)."""
    skip = skip or skip_reason(target, objectives)
    if skip is not None:
        return FinalLatencies(skipped=skip)
    from exporters.onnx_export import export_onnx
    from profilers.paired import time_in_rounds
    from profilers.registry import get_profiler

    started = time.monotonic()
    genotypes = {r.arch_id: r.genotype for r in [*front, *references.values()]}
    shape = (1, *space.spec.shape)
    models = [
        export_onnx(space.build(g), shape, check_parity=False).data for g in genotypes.values()
    ]
    timed = time_in_rounds(
        get_profiler(target), models, target, rounds, settings, shape,
        deadline=lambda: time.monotonic() - started > budget_s,
    )  # fmt: skip
    latencies = {}
    for arch_id, ms in zip(genotypes, timed, strict=True):
        medians = tuple(m.latency_ms.median for m in ms)
        latencies[arch_id] = FinalLatency(
            statistics.median(medians), relative_spread(medians), medians
        )
    first = timed[0][0]
    how = (
        f"{first.runtime} {first.runtime_version}, {first.provider}, {first.threads} thread(s): "
        f"{len(timed[0])} rounds in one process, order rotating, median of a "
        f"{settings.min_duration_ms:g} ms window each; median of the round medians"
    )
    return FinalLatencies(latencies, None, len(timed[0]), time.monotonic() - started, how)
