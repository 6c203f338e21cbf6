"""`pnsga3` (CARS continuous evolution) and its unprotected baseline `nsga3`.

One loop, two survivals. Unit 0 warms the shared weights up with uniform paths and
evaluates the first population; each later unit is one generation: train the shared
weights (on the population's paths as in CARS, or on uniform paths: `train_paths`), breed
t·P offspring (mutation, crossover, fresh random), evaluate parents and offspring with the
new weights and keep P. pNSGA-III also sorts by how fast accuracy grows, acc(W_g) -
acc(W_{g-1}) per supernet epoch against a snapshot of the previous generation's weights, so
large models that learn slower survive until they catch up; plain NSGA-III does not, and
falls into the small-model trap.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from factory.spaces.base import Genotype, SearchSpace
from factory.strategies.base import MAXIMISE, Record, SearchContext, Strategy, objective_matrix
from factory.strategies.registry import STRATEGIES
from factory.strategies.selection import CUTS, nsga3_select, pnsga3_select
from targets.errors import UserError

SECOND_SORTS: tuple[str, ...] = ("speed", "size")
TRAIN_PATHS: tuple[str, ...] = ("population", "uniform")


@dataclass(frozen=True)
class EvolutionConfig:
    """Hyper-parameters of continuous evolution; defaults are the quick preset."""

    population: int = 12  # P (quick: sized so `factory search` ends within 20 min on 2 cores)
    offspring_ratio: float = 1.0  # t: t·P offspring per generation
    generations: int = 5
    warmup_epochs: float = 1.0  # uniform-path supernet epochs before the first population
    epochs_per_generation: float = 0.5  # supernet epochs a generation (`train_paths`)
    archs_per_batch: int = 1  # B: population members per training batch
    # "population": each generation trains the population's paths (CARS, the paper preset);
    # "uniform": uniform paths only, so members are not scored higher than equal non-members
    # for being trained. With uniform paths one of two default runs found a model as accurate
    # as MobileNetV2@0.5 and faster (docs/search.md), so the quick and gpu presets use them.
    train_paths: str = "uniform"
    mutation_fraction: float = 0.25
    crossover_fraction: float = 0.25
    random_fraction: float = 0.5
    mutation_p: float = 0.5  # each decision redrawn with this probability
    # --init: this share of the first population are near variants of the given networks
    # (VGG-Lite's manual-experience start), each decision redrawn with init_mutation_p
    init_neighbours: float = 0.5
    init_mutation_p: float = 0.15
    crossover_p: float = 0.5  # each decision taken from the second parent with this probability
    second_sort: str = "speed"  # "speed": (-acc_speed, cost) paper; "size": (-acc, -cost) code
    cut: str = "niching"  # "niching": NSGA-III niching paper; "random": official code
    # accuracy speed of a survivor = this share of its previous speed + the rest of the new
    # difference: one difference on 500 images with 2-batch BN recalibration is mostly noise,
    # and the paper's speed curves are smoothed across generations (our reading, issue 13)
    speed_smoothing: float = 0.5

    def __post_init__(self) -> None:
        _require(self.population >= 2, f"population must be at least 2, got {self.population}")
        _require(self.offspring_ratio > 0, "offspring ratio must be positive")
        _require(self.generations >= 0, "generations must be 0 or more")
        _require(self.warmup_epochs >= 0, "warm-up epochs must be 0 or more")
        _require(self.epochs_per_generation > 0, "epochs per generation must be positive")
        _require(self.archs_per_batch >= 1, "architectures per batch must be at least 1")
        shares = (self.mutation_fraction, self.crossover_fraction, self.random_fraction)
        _require(
            min(shares) >= 0 and abs(sum(shares) - 1.0) < 1e-9,
            f"mutation/crossover/random fractions must be >= 0 and sum to 1, got {shares}",
        )
        shares_01 = ("mutation_p", "crossover_p", "init_neighbours", "init_mutation_p")
        for name in (*shares_01, "speed_smoothing"):
            _require(0.0 <= getattr(self, name) <= 1.0, f"{name} must be in [0, 1]")
        _require(
            self.second_sort in SECOND_SORTS,
            f"unknown second sort {self.second_sort!r}; valid: {', '.join(SECOND_SORTS)}",
        )
        _require(self.cut in CUTS, f"unknown cut {self.cut!r}; valid: {', '.join(CUTS)}")
        _require(
            self.train_paths in TRAIN_PATHS,
            f"unknown train_paths {self.train_paths!r}; valid: {', '.join(TRAIN_PATHS)}",
        )

    @property
    def n_offspring(self) -> int:
        return max(1, round(self.offspring_ratio * self.population))

    @classmethod
    def preset(cls, name: str) -> EvolutionConfig:
        """ "quick" (a 2-core CPU, minutes) or "paper" (CARS on CIFAR-10: 500 epochs)."""
        return cls(**preset_overrides(_PRESETS, name))


# CARS: P=128, t=1, 50 warm-up epochs, then a generation every 10 epochs up to 500 epochs.
_PRESETS: dict[str, dict[str, Any]] = {
    "quick": {},
    "paper": dict(
        population=128,
        generations=45,
        warmup_epochs=50.0,
        epochs_per_generation=10.0,
        train_paths="population",
    ),
    # one GPU, the whole training split: ~8 supernet epochs, twice the quick population
    "gpu": dict(population=24, generations=8, warmup_epochs=2.0, epochs_per_generation=0.75),
}


def preset_overrides(table: dict[str, dict[str, Any]], name: str) -> dict[str, Any]:
    """The fields a preset changes, or a `UserError` listing the valid preset names."""
    if name not in table:
        raise UserError(f"unknown preset {name!r}; valid: {', '.join(sorted(table))}")
    return table[name]


@dataclass(frozen=True)
class Offspring:
    """Children of one generation, by the operator that made them."""

    mutated: tuple[Genotype, ...]
    crossed: tuple[Genotype, ...]
    random: tuple[Genotype, ...]

    def all(self) -> list[Genotype]:
        return [*self.mutated, *self.crossed, *self.random]


def make_offspring(
    space: SearchSpace,
    population: Sequence[Genotype],
    n_offspring: int,
    rng: np.random.Generator,
    config: EvolutionConfig,
) -> Offspring:
    """`n_offspring` children split by the config's fractions, none equal to a population
    member or to another child; a share that cannot be filled is made up by random ones."""
    pop = list(population)
    seen = set(pop)
    n_mut = round(n_offspring * config.mutation_fraction)
    n_cross = round(n_offspring * config.crossover_fraction) if len(pop) >= 2 else 0

    def mutant() -> Genotype:
        return space.mutate(pop[rng.integers(len(pop))], rng, config.mutation_p)

    def cross() -> Genotype:
        a, b = rng.choice(len(pop), size=2, replace=False)
        return space.crossover(pop[a], pop[b], rng, config.crossover_p)

    mutated = _distinct(mutant, n_mut, seen) if pop else []
    crossed = _distinct(cross, n_cross, seen)
    n_rand = n_offspring - len(mutated) - len(crossed)
    fresh = _distinct(lambda: space.sample(rng), n_rand, seen)
    return Offspring(tuple(mutated), tuple(crossed), tuple(fresh))


def initial_population(
    space: SearchSpace,
    init: Sequence[Genotype],
    size: int,
    rng: np.random.Generator,
    exclude: Collection[Genotype] = (),
    neighbours: float = 0.0,
    neighbour_p: float = 0.15,
) -> list[Genotype]:
    """Warm-start genotypes first (deduped, at most `size`), then distinct near variants of
    them (each decision redrawn with `neighbour_p`) up to a `neighbours` share of `size`,
    then distinct uniform samples; none of them in `exclude`. Starting around a known good
    network skips the useless candidates a random start wastes evaluations on (VGG-Lite)."""
    seen = set(exclude)
    pop = [g for g in dict.fromkeys(space.validate(g) for g in init) if g not in seen][:size]
    seen.update(pop)
    if pop and neighbours > 0:
        seeds, near = list(pop), max(0, round(neighbours * size) - len(pop))
        pop += _distinct(lambda: space.mutate(seeds[rng.integers(len(seeds))], rng, neighbour_p),
                         near, seen)  # fmt: skip
    return pop + _distinct(lambda: space.sample(rng), size - len(pop), seen)


def _distinct(draw: Callable[[], Genotype], n: int, seen: set[Genotype]) -> list[Genotype]:
    """Up to n draws not in `seen` (which grows); gives up after 100 tries per child, so a
    tiny space yields fewer children instead of looping forever."""
    out: list[Genotype] = []
    tries = 0
    while len(out) < n and tries < 100 * n:
        tries += 1
        g = draw()
        if g not in seen:
            seen.add(g)
            out.append(g)
    return out


def second_objectives(F1: np.ndarray, acc_speed: np.ndarray | None, second_sort: str) -> np.ndarray:
    """F2 for pNSGA-III: (-acc_speed, costs) for "speed", (-acc, -costs) for "size"."""
    if second_sort == "size":
        return np.column_stack([F1[:, 0], -F1[:, 1:]])
    if acc_speed is None:
        raise ValueError('second sort "speed" needs the accuracy speeds')
    return np.column_stack([-np.asarray(acc_speed, dtype=float), F1[:, 1:]])


class ContinuousEvolution(Strategy):
    """The CARS loop; subclasses choose the survival (`_select`)."""

    Config: ClassVar[type[EvolutionConfig]] = EvolutionConfig

    def __init__(
        self,
        space: SearchSpace,
        config: EvolutionConfig | None = None,
        init: Sequence[Genotype] = (),
    ) -> None:
        self.space = space
        self.config = config if config is not None else EvolutionConfig()
        self.init = tuple(space.validate(g) for g in init)
        self.population: list[Genotype] = []
        self.members: list[dict[str, Any]] = []  # per member: genotype, objectives, acc_speed
        self.next_unit = 0

    def total_units(self) -> int:
        return 1 + self.config.generations

    def run_unit(self, ctx: SearchContext, unit: int) -> None:
        self.check_unit(unit)
        if ctx.objectives[0] not in MAXIMISE:
            raise ValueError(f"the first objective must be accuracy, got {ctx.objectives}")
        if unit == 0:
            self._start(ctx)
        else:
            self._generation(ctx, unit)
        self.next_unit = unit + 1

    def _start(self, ctx: SearchContext) -> None:
        ctx.train_supernet(None, self.config.warmup_epochs)
        cfg = self.config
        pop = initial_population(
            self.space, self.init, cfg.population, ctx.rng,
            neighbours=cfg.init_neighbours, neighbour_p=cfg.init_mutation_p,
        )  # fmt: skip
        self._keep(pop, ctx.evaluate(pop, "warmup", 0), None)

    def _generation(self, ctx: SearchContext, step: int) -> None:
        cfg = self.config
        if self.uses_speed():
            ctx.snapshot_weights()
        paths = list(self.population) if cfg.train_paths == "population" else None
        ctx.train_supernet(paths, cfg.epochs_per_generation)
        kids = make_offspring(self.space, self.population, cfg.n_offspring, ctx.rng, cfg)
        candidates = [*self.population, *kids.all()]
        records = ctx.evaluate(candidates, "generation", step)
        speed = self._acc_speed(ctx, candidates, records, step) if self.uses_speed() else None
        kept = self._select(ctx, records, speed)
        kept_speed = None if speed is None else speed[kept]
        self._keep([candidates[i] for i in kept], [records[i] for i in kept], kept_speed)

    def _acc_speed(
        self, ctx: SearchContext, candidates: list[Genotype], records: list[Record], step: int
    ) -> np.ndarray:
        """Accuracy gained per supernet epoch since the previous generation's weights,
        smoothed across generations for the members that already had a speed."""
        acc = ctx.objectives[0]
        before = ctx.evaluate(candidates, "generation", step, weights="previous", record=False)
        now = np.array([r.value(acc) for r in records])
        then = np.array([r.value(acc) for r in before])
        raw = (now - then) / self.config.epochs_per_generation
        history = {tuple(m["genotype"]): m["acc_speed"] for m in self.members}
        beta = self.config.speed_smoothing
        return np.array([
            s if history.get(g) is None else beta * history[g] + (1 - beta) * s
            for g, s in zip(candidates, raw, strict=True)
        ])  # fmt: skip

    def _keep(self, pop: list[Genotype], records: list[Record], speed: np.ndarray | None) -> None:
        self.population = list(pop)
        self.members = [
            {
                "genotype": list(g),
                "objectives": {k: float(v) for k, v in r.objectives.items()},
                "acc_speed": None if speed is None else float(speed[i]),
            }
            for i, (g, r) in enumerate(zip(pop, records, strict=True))
        ]

    @abstractmethod
    def uses_speed(self) -> bool:
        """Whether survival needs accuracy speeds (a weight snapshot and a second eval)."""

    @abstractmethod
    def _select(
        self, ctx: SearchContext, records: list[Record], acc_speed: np.ndarray | None
    ) -> np.ndarray:
        """Indices of the records that survive (P of them)."""

    def state_dict(self) -> dict[str, Any]:
        return {
            "next_unit": self.next_unit,
            "population": [list(g) for g in self.population],
            "members": [dict(m) for m in self.members],
            "tensors": {},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.next_unit = int(state["next_unit"])
        self.population = [tuple(int(x) for x in g) for g in state["population"]]
        self.members = [dict(m) for m in state["members"]]


@STRATEGIES.decorator("pnsga3")
class PNSGA3(ContinuousEvolution):
    """CARS: continuous evolution with the protected pNSGA-III survival."""

    def uses_speed(self) -> bool:
        return self.config.second_sort == "speed"

    def _select(
        self, ctx: SearchContext, records: list[Record], acc_speed: np.ndarray | None
    ) -> np.ndarray:
        F1 = objective_matrix(records, ctx.objectives)
        F2 = second_objectives(F1, acc_speed, self.config.second_sort)
        cut = self.config.cut
        return pnsga3_select(F1, F2, self.config.population, ctx.rng, cut=cut)  # type: ignore[arg-type]


@STRATEGIES.decorator("nsga3")
class NSGA3(ContinuousEvolution):
    """The same loop with plain NSGA-III survival (the unprotected baseline)."""

    def uses_speed(self) -> bool:
        return False

    def _select(
        self, ctx: SearchContext, records: list[Record], acc_speed: np.ndarray | None
    ) -> np.ndarray:
        F1 = objective_matrix(records, ctx.objectives)
        return nsga3_select(F1, self.config.population, ctx.rng)


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise UserError(message)
