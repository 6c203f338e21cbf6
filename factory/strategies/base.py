"""The strategy contract: one loop of units (a generation, a controller step) over a context.

A strategy never touches the data, the supernet or the database directly: it asks the
`SearchContext` to train the shared weights and to evaluate genotypes, and the context
records every evaluation. That keeps strategies small, lets the run loop checkpoint between
units, and lets an executor run evaluations elsewhere later.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol

import numpy as np

from factory.spaces.base import Genotype, SearchSpace

# Direction of each objective the strategies may see; units live in the names.
MAXIMISE = frozenset({"accuracy"})
MINIMISE = frozenset({"latency_ms", "macs", "params"})
Weights = Literal["current", "previous"]
PathSource = Sequence[Genotype] | Callable[[np.random.Generator], Genotype] | None


# a context's F window is estimated from samples of a stream of its own with this fixed seed:
# it does not disturb a search's random draws, and a resumed or repeated run gets the same one
COST_RANGE_SEED = 12345


@dataclass(frozen=True)
class Record:
    """One evaluated candidate, as stored in the run database."""

    genotype: Genotype
    arch_id: str  # stable id of the architecture (same network -> same id)
    objectives: dict[str, float]  # e.g. {"accuracy": 0.91, "latency_ms": 0.42, "macs": 6.1e6}
    phase: str  # e.g. "warmup", "generation", "warm", "slow-anneal", "fast-anneal", "final"
    step: int  # generation or controller step
    wall_s: float = 0.0  # seconds since the run started when this was recorded
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. {"latency_how": "measured"}

    def value(self, name: str) -> float:
        return self.objectives[name]


class SearchContext(Protocol):
    """What the run loop offers a strategy."""

    space: SearchSpace
    rng: np.random.Generator
    objectives: tuple[
        str, ...
    ]  # first is accuracy; the rest are costs, e.g. ("accuracy", "latency_ms")
    cost: str  # the cost a scalar reward uses, e.g. "latency_ms" or "macs"

    def train_supernet(self, paths: PathSource = None, epochs: float = 1.0) -> float:
        """Train the shared weights for `epochs` passes (fractions allowed) over the training
        split: uniform paths when `paths` is None, B distinct members per batch of a
        population, or one path per batch drawn from a callable. Returns the mean loss."""

    def evaluate(
        self,
        genotypes: Sequence[Genotype],
        phase: str,
        step: int,
        weights: Weights = "current",
        record: bool = True,
        cheap: bool = False,
    ) -> list[Record]:
        """Objectives of each genotype with the current (or snapshot) shared weights.

        Accuracy is validation accuracy after BN recalibration; costs are cached per
        architecture. Recorded evaluations are committed to the run database at once.
        `cheap` (never recorded): a noisier, faster accuracy for inner controller updates."""

    def snapshot_weights(self) -> None:
        """Keep a copy of the current shared weights as the "previous" weights."""

    def cost_range(self) -> tuple[float, float]:
        """(F_min, F_max) of the scalar cost, given by the user or estimated from samples."""


class Strategy(ABC):
    """A search strategy: a fixed number of units of work, each checkpointable after it ends."""

    name: ClassVar[str]
    next_unit: int = 0  # the unit `run_unit` must be given next; part of every state_dict

    def check_unit(self, unit: int) -> None:
        """Units run in order, each once: a resumed run continues exactly where it stopped."""
        if unit != self.next_unit:
            raise ValueError(f"{self.name}: expected unit {self.next_unit}, got {unit}")

    @abstractmethod
    def total_units(self) -> int:
        """How many units (generations, controller steps) the run has."""

    @abstractmethod
    def run_unit(self, ctx: SearchContext, unit: int) -> None:
        """Do unit number `unit` (0-based); evaluations go through `ctx.evaluate`."""

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue after `run_unit` returned: JSON-able values, plus
        torch tensors under the key "tensors" (saved as safetensors)."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""


def objective_matrix(records: Sequence[Record], objectives: Sequence[str]) -> np.ndarray:
    """Rows of objectives as costs to minimise (accuracy negated), shape (len(records), k)."""
    rows = [[-r.value(o) if o in MAXIMISE else r.value(o) for o in objectives] for r in records]
    return np.asarray(rows, dtype=float).reshape(len(records), len(objectives))
