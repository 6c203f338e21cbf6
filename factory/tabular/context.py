"""The `SearchContext` of a tabular search: evaluation is a table lookup, budget in queries.

A query is the first look-up of an architecture's accuracy; asking for it again is free
(the answer is known), as in NAS-Bench-201 studies. When a strategy asks for one query more
than its budget, `evaluate` raises `BudgetSpent` and the run ends: every strategy gets
exactly the same number of distinct queries, whatever its unit structure.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

import numpy as np

from factory.spaces.base import Genotype, SearchSpace
from factory.strategies.base import COST_RANGE_SEED, PathSource, Record, Weights
from factory.tabular.table import BenchmarkTable

F_WINDOW = (5.0, 95.0)  # default [F_min, F_max]: these percentiles of uniform samples' cost
F_SAMPLES = 100  # uniform samples whose latency (not accuracy) sets the default window


class BudgetSpent(Exception):
    """A strategy asked for a query past its budget."""


class TabularContext:
    """Implements `factory.strategies.base.SearchContext` over one device column."""

    def __init__(
        self,
        space: SearchSpace,
        table: BenchmarkTable,
        device: str,
        budget: int,
        rng: np.random.Generator,
        f_range: tuple[float | None, float | None] = (None, None),
    ) -> None:
        self.space, self.table, self.device, self.budget = space, table, device, budget
        self.rng = rng
        self.objectives: tuple[str, ...] = ("accuracy", "latency_ms")
        self.cost = "latency_ms"
        self.f_range = f_range
        self.queries: list[Record] = []  # first look-up of each architecture, in order
        self.log: list[Record] = []  # every recorded evaluation (repeats included)
        self._known: dict[int, Record] = {}  # table row -> its first record
        self._latency = table.latency_ms[device]
        self._accuracy_sum = 0.0  # over `queries`, for the cheap look-ups' prior
        self.started = time.monotonic()

    def train_supernet(self, paths: PathSource = None, epochs: float = 1.0) -> float:
        """Nothing to train: the table holds each architecture's trained accuracy."""
        return 0.0

    def evaluate(
        self,
        genotypes: Sequence[Genotype],
        phase: str,
        step: int,
        weights: Weights = "current",
        record: bool = True,
        cheap: bool = False,
    ) -> list[Record]:
        """Table values. A new architecture's accuracy is one query (kept in `queries`), also
        when unrecorded. `cheap` (a controller's inner updates) spends none: the latency
        comes from the table (free, as from a latency table), the accuracy only where it
        was queried before, else the mean accuracy of the queries so far."""
        if cheap:
            return [self._cheap(g, phase, step) for g in genotypes]
        out = []
        for g in genotypes:
            row = self.table.row(g)
            first = self._known.get(row)
            if first is None:
                if len(self.queries) >= self.budget:
                    raise BudgetSpent(f"{self.budget} queries spent")
                first = self._first(g, row, phase, step)
            rec = first if (first.phase, first.step) == (phase, step) else (
                dataclasses.replace(first, phase=phase, step=step))  # fmt: skip
            if record:
                self.log.append(rec)
            out.append(rec)
        return out

    def _first(self, g: Genotype, row: int, phase: str, step: int) -> Record:
        objectives = {
            "accuracy": float(self.table.accuracy[row]),
            "latency_ms": float(self._latency[row]),
        }
        extra = {"latency_how": f"table:{self.device}", "query": len(self.queries) + 1}
        rec = Record(
            tuple(int(x) for x in g), self.space.arch_id(g), objectives, phase, step,
            round(time.monotonic() - self.started, 4), extra,
        )  # fmt: skip
        self._known[row] = rec
        self.queries.append(rec)
        self._accuracy_sum += objectives["accuracy"]
        return rec

    def _cheap(self, g: Genotype, phase: str, step: int) -> Record:
        row = self.table.row(g)
        known = self._known.get(row)
        if known is not None:
            return known
        prior = self._accuracy_sum / len(self.queries) if self.queries else 0.5
        objectives = {"accuracy": prior, "latency_ms": float(self._latency[row])}
        return Record(tuple(int(x) for x in g), "", objectives, phase, step, 0.0, {"cheap": True})

    def mean_cost_by_step(self) -> dict[int, float]:
        """The mean latency of the recorded samples at each step, in step order: what a
        controller's sampled cost did while its target moved (benches and tests read it)."""
        by_step: dict[int, list[float]] = {}
        for r in self.log:
            by_step.setdefault(r.step, []).append(r.value(self.cost))
        return {k: float(np.mean(v)) for k, v in sorted(by_step.items())}

    def snapshot_weights(self) -> None:
        """Nothing to snapshot: "previous" weights give the same table values."""

    def cost_range(self) -> tuple[float, float]:
        """(F_min, F_max): the user's, else the 5th and 95th percentile of the latency of 100
        uniform samples from a generator of their own (look-ups of cost, not queries)."""
        lo, hi = self.f_range
        if lo is None or hi is None:
            rng = np.random.default_rng(COST_RANGE_SEED)
            rows = [self.table.row(self.space.sample(rng)) for _ in range(F_SAMPLES)]
            est_lo, est_hi = np.percentile(self._latency[rows], F_WINDOW)
            self.f_range = (est_lo if lo is None else lo, est_hi if hi is None else hi)
        return float(self.f_range[0]), float(self.f_range[1])  # type: ignore[arg-type]
