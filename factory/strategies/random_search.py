"""`random`: the baseline every search must beat, on the same supernet budget.

Each unit trains the shared weights with uniform paths for as many epochs as a generation
of continuous evolution does (warm-up first), then evaluates a batch of fresh uniform
genotypes, as many as a generation evaluates ((1 + t)·P). So a random run and a `pnsga3` run
with the same preset spend the same supernet epochs and about the same evaluations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from factory.spaces.base import Genotype, SearchSpace
from factory.strategies.base import SearchContext, Strategy
from factory.strategies.evolution import EvolutionConfig, initial_population
from factory.strategies.registry import STRATEGIES
from targets.errors import UserError


@dataclass(frozen=True)
class RandomConfig:
    """Budget of a random search; defaults match `EvolutionConfig()` (the quick preset)."""

    generations: int = 5  # units after the warm-up unit
    warmup_epochs: float = 1.0
    epochs_per_generation: float = 0.5
    samples_per_unit: int = 24  # fresh genotypes evaluated per unit

    def __post_init__(self) -> None:
        if self.generations < 0:
            raise UserError("generations must be 0 or more")
        if self.warmup_epochs < 0 or self.epochs_per_generation <= 0:
            raise UserError("warm-up epochs must be >= 0 and epochs per generation > 0")
        if self.samples_per_unit < 1:
            raise UserError("samples per unit must be at least 1")

    @classmethod
    def from_evolution(cls, evo: EvolutionConfig) -> RandomConfig:
        """The budget of a continuous-evolution run: same epochs, (1 + t)·P samples a unit."""
        return cls(
            generations=evo.generations,
            warmup_epochs=evo.warmup_epochs,
            epochs_per_generation=evo.epochs_per_generation,
            samples_per_unit=evo.population + evo.n_offspring,
        )

    @classmethod
    def preset(cls, name: str) -> RandomConfig:
        """ "quick" or "paper": the budget of `EvolutionConfig.preset(name)`."""
        return cls.from_evolution(EvolutionConfig.preset(name))


@STRATEGIES.decorator("random")
class RandomSearch(Strategy):
    """Uniform sampling of the space with shared weights trained on uniform paths."""

    Config: ClassVar[type[RandomConfig]] = RandomConfig

    def __init__(
        self,
        space: SearchSpace,
        config: RandomConfig | None = None,
        init: Sequence[Genotype] = (),
    ) -> None:
        self.space = space
        self.config = config if config is not None else RandomConfig()
        self.init = tuple(space.validate(g) for g in init)
        self.seen: set[Genotype] = set()  # every genotype evaluated so far
        self.next_unit = 0

    def total_units(self) -> int:
        return 1 + self.config.generations

    def run_unit(self, ctx: SearchContext, unit: int) -> None:
        self.check_unit(unit)
        cfg = self.config
        ctx.train_supernet(None, cfg.warmup_epochs if unit == 0 else cfg.epochs_per_generation)
        batch = self._fresh(ctx, warm_start=unit == 0)
        ctx.evaluate(batch, "warmup" if unit == 0 else "random", unit)
        self.seen.update(batch)
        self.next_unit = unit + 1

    def _fresh(self, ctx: SearchContext, warm_start: bool) -> list[Genotype]:
        """Warm-start genotypes (unit 0 only), then uniform samples never evaluated before."""
        init = self.init if warm_start else ()
        n = self.config.samples_per_unit
        return initial_population(self.space, init, n, ctx.rng, exclude=self.seen)

    def state_dict(self) -> dict[str, Any]:
        return {
            "next_unit": self.next_unit,
            "seen": sorted(list(g) for g in self.seen),
            "tensors": {},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.next_unit = int(state["next_unit"])
        self.seen = {tuple(int(x) for x in g) for g in state["seen"]}
