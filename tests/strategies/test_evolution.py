"""The CARS loop (`pnsga3`) and its baseline (`nsga3`) on a closed-form toy context."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import pytest

import factory.strategies.evolution as evo
from factory.spaces.base import Decision, Genotype, SearchSpace
from factory.strategies.base import PathSource, Record, Weights
from factory.strategies.registry import STRATEGIES
from targets.errors import UserError


class GridSpace(SearchSpace):
    """`n` decisions of `k` options and nothing to build: only the genotype operators run
    (the base class's, shared by every real space)."""

    name = "grid"

    def __init__(self, n: int, k: int) -> None:
        super().__init__()
        self.n, self.k = n, k

    def decisions(self) -> tuple[Decision, ...]:
        return tuple(Decision(f"d{i}", tuple(map(str, range(self.k)))) for i in range(self.n))

    def build(self, g):  # type: ignore[no-untyped-def]
        raise NotImplementedError

    supernet = extract = describe = blocks = build

    def manual(self) -> dict[str, Genotype]:
        return {}


SPACE = GridSpace(16, 8)  # the size of the CANAS space's layer choices


class ToyContext:
    """A documented toy problem standing in for the supernet (tested elsewhere).

    A genotype's size s in [0, 1] is its mean choice index over the largest; after t supernet
    epochs its accuracy is a(s)·(1 - exp(-t/τ(s))) with a(s) = 0.6 + 0.35 s (big ends better)
    and τ(s) = 0.3 + 4 s (big learns slower): the small-model trap in closed form. Cost
    "macs" = 1e6·(1 + 9 s). Training and each evaluation draw from `rng` (noise sd 0.002),
    so determinism is tested through the random stream as in the real context.
    """

    def __init__(self, seed: int, space: SearchSpace = SPACE) -> None:
        self.space = space
        self.rng = np.random.default_rng(seed)
        self.objectives = ("accuracy", "macs")
        self.cost = "macs"
        self.epochs = 0.0
        self.previous_epochs: float | None = None
        self.records: list[Record] = []
        self.unrecorded: list[Record] = []
        self.trained: list[tuple[list[Genotype] | None, float]] = []

    def size(self, g: Genotype) -> float:
        return float(np.mean(g)) / (max(self.space.choices()) - 1)

    def train_supernet(self, paths: PathSource = None, epochs: float = 1.0) -> float:
        assert paths is None or not callable(paths)
        self.trained.append((None if paths is None else list(paths), epochs))
        self.epochs += epochs
        return float(self.rng.random())

    def evaluate(
        self,
        genotypes: Sequence[Genotype],
        phase: str,
        step: int,
        weights: Weights = "current",
        record: bool = True,
    ) -> list[Record]:
        t = self.epochs if weights == "current" else self.previous_epochs
        assert t is not None, "previous weights used before a snapshot"
        out = []
        for g in genotypes:
            s = self.size(g)
            acc = (0.6 + 0.35 * s) * (1 - np.exp(-t / (0.3 + 4 * s)))
            acc = float(np.clip(acc + self.rng.normal(0, 0.002), 0, 1))
            objectives = {"accuracy": acc, "macs": 1e6 * (1 + 9 * s)}
            out.append(Record(g, self.space.format(g), objectives, phase, step))
        (self.records if record else self.unrecorded).extend(out)
        return out

    def snapshot_weights(self) -> None:
        self.previous_epochs = self.epochs

    def cost_range(self) -> tuple[float, float]:
        return 1e6, 1e7


def run(name: str, config: evo.EvolutionConfig, seed: int, units: range, **kw) -> ToyContext:
    ctx = ToyContext(seed)
    strategy = STRATEGIES.get(name)(SPACE, config, **kw)
    for unit in units:
        strategy.run_unit(ctx, unit)
    ctx.strategy = strategy  # type: ignore[attr-defined]
    return ctx


def as_rows(records: list[Record]) -> list[tuple]:
    return [(r.genotype, r.objectives["accuracy"], r.phase, r.step) for r in records]


def test_registered_with_their_config() -> None:
    for name in ("pnsga3", "nsga3"):
        cls = STRATEGIES.get(name)
        assert cls.Config is evo.EvolutionConfig and cls.name == name


def test_presets() -> None:
    paper = evo.EvolutionConfig.preset("paper")
    assert (paper.population, paper.offspring_ratio, paper.archs_per_batch) == (128, 1.0, 1)
    assert paper.warmup_epochs == 50 and paper.epochs_per_generation == 10
    assert paper.warmup_epochs + paper.generations * paper.epochs_per_generation == 500
    quick = evo.EvolutionConfig.preset("quick")
    assert quick == evo.EvolutionConfig() and quick.population == 12
    assert (quick.second_sort, quick.cut) == ("speed", "niching")
    with pytest.raises(UserError, match="paper, quick"):
        evo.EvolutionConfig.preset("huge")


@pytest.mark.parametrize(
    "bad",
    [
        {"population": 1},
        {"mutation_fraction": 0.5},  # fractions sum to 1.25
        {"second_sort": "flops"},
        {"cut": "first"},
        {"epochs_per_generation": 0},
        {"train_paths": "members"},
    ],
)
def test_bad_config_is_a_user_error(bad: dict) -> None:
    with pytest.raises(UserError):
        evo.EvolutionConfig(**bad)


@pytest.mark.parametrize(
    ("population", "ratio", "split"), [(16, 1.0, (4, 4, 8)), (16, 0.5, (2, 2, 4))]
)
def test_offspring_split_and_no_duplicates(population: int, ratio: float, split: tuple) -> None:
    cfg = evo.EvolutionConfig(population=population, offspring_ratio=ratio)
    rng = np.random.default_rng(0)
    parents = evo.initial_population(SPACE, [], population, rng)
    for _ in range(20):
        kids = evo.make_offspring(SPACE, parents, cfg.n_offspring, rng, cfg)
        assert (len(kids.mutated), len(kids.crossed), len(kids.random)) == split
        children = kids.all()
        assert len(set(children)) == len(children)
        assert not set(children) & set(parents)


def test_offspring_in_a_crowded_space_stay_distinct() -> None:
    tiny = GridSpace(3, 2)  # 8 genotypes: most draws collide
    cfg = evo.EvolutionConfig(population=4)
    for seed in range(10):
        rng = np.random.default_rng(seed)
        parents = evo.initial_population(tiny, [], 4, rng)
        kids = evo.make_offspring(tiny, parents, cfg.n_offspring, rng, cfg).all()
        assert len(kids) == 4 and not set(kids) & set(parents) and len(set(kids)) == 4
    # 8 genotypes in all: 4 parents leave room for only 4 children, whatever is asked
    big = evo.EvolutionConfig(population=4, offspring_ratio=2.0)
    kids = evo.make_offspring(tiny, parents, big.n_offspring, rng, big).all()
    assert sorted(kids + parents) == sorted(set(kids + parents)) and len(kids) == 4


def test_warm_up_unit_and_warm_start() -> None:
    cfg = evo.EvolutionConfig(population=8)
    vgg_like = (3,) * 16
    ctx = run("pnsga3", cfg, 0, range(1), init=[vgg_like, vgg_like])
    assert ctx.trained == [(None, cfg.warmup_epochs)]
    pop = ctx.strategy.population
    assert pop[0] == vgg_like and len(set(pop)) == 8
    assert [r.genotype for r in ctx.records] == pop
    assert {(r.phase, r.step) for r in ctx.records} == {("warmup", 0)}


def test_warm_start_fills_half_the_population_with_near_variants() -> None:
    """VGG-Lite's start: the given network, then variants a few decisions away from it."""
    vgg_like = (3,) * 16
    pop = evo.initial_population(SPACE, [vgg_like], 12, np.random.default_rng(0), neighbours=0.5)
    distance = [sum(a != b for a, b in zip(g, vgg_like, strict=True)) for g in pop]
    assert pop[0] == vgg_like and len(set(pop)) == 12
    near, rest = distance[1:6], distance[6:]
    assert max(near) <= 6 and min(rest) > max(near)  # p=0.15 of 16 vs 7/8 of 16 redrawn
    plain = evo.initial_population(SPACE, [vgg_like], 12, np.random.default_rng(0))
    assert min(sum(a != b for a, b in zip(g, vgg_like, strict=True)) for g in plain[1:]) > 6


def test_generation_trains_population_and_keeps_p_of_2p() -> None:
    cfg = evo.EvolutionConfig(population=8, generations=2, train_paths="population")
    ctx = run("pnsga3", cfg, 0, range(3))
    gen1 = {r.genotype for r in ctx.records if r.step == 1}
    gen2 = [r for r in ctx.records if r.step == 2]
    assert len(gen2) == 16 and {r.phase for r in gen2} == {"generation"}
    parents = [r.genotype for r in gen2[:8]]  # generation 1's survivors, then 8 children
    assert ctx.trained[2] == (parents, 0.5)
    assert set(parents) <= gen1
    strategy = ctx.strategy
    assert len(strategy.population) == 8 and set(strategy.population) <= {r.genotype for r in gen2}
    # acc_speed = (acc now - acc with the snapshot) per epoch for a new member; a member that
    # already had a speed keeps half of it (issue 13: speeds smoothed across generations)
    gen1_speed = {tuple(m["genotype"]): m["acc_speed"] for m in run("pnsga3", cfg, 0, range(2))
                  .strategy.members}  # fmt: skip
    before = {r.genotype: r.objectives["accuracy"] for r in ctx.unrecorded[-16:]}
    now = {r.genotype: r.objectives["accuracy"] for r in gen2}
    for m in strategy.members:
        g = tuple(m["genotype"])
        raw = (now[g] - before[g]) / 0.5
        expected = raw if g not in gen1_speed else 0.5 * gen1_speed[g] + 0.5 * raw
        assert m["acc_speed"] == pytest.approx(expected)
    assert any(tuple(m["genotype"]) in gen1_speed for m in strategy.members)


def test_uniform_train_paths_train_no_member_in_particular() -> None:
    cfg = evo.EvolutionConfig(population=8, generations=2, train_paths="uniform")
    ctx = run("pnsga3", cfg, 0, range(3))
    assert ctx.trained[1] == (None, 0.5) and ctx.trained[2] == (None, 0.5)


def test_presets_train_uniform_paths_but_the_paper_trains_the_population() -> None:
    """Uniform paths remove the bias towards trained population members (docs/search.md);
    the paper preset keeps CARS's population paths."""
    assert evo.EvolutionConfig.preset("quick").train_paths == "uniform"
    assert evo.EvolutionConfig.preset("gpu").train_paths == "uniform"
    assert evo.EvolutionConfig.preset("paper").train_paths == "population"


def test_nsga3_needs_no_snapshot() -> None:
    ctx = run("nsga3", evo.EvolutionConfig(population=8, generations=2), 0, range(3))
    assert ctx.previous_epochs is None and not ctx.unrecorded
    assert all(m["acc_speed"] is None for m in ctx.strategy.members)


@pytest.mark.parametrize("name", ["pnsga3", "nsga3"])
def test_same_seed_same_run(name: str) -> None:
    cfg = evo.EvolutionConfig(population=8, generations=3)
    a, b = run(name, cfg, 7, range(4)), run(name, cfg, 7, range(4))
    assert as_rows(a.records) == as_rows(b.records)
    assert a.strategy.population == b.strategy.population
    assert as_rows(run(name, cfg, 8, range(4)).records) != as_rows(a.records)


@pytest.mark.parametrize(
    ("name", "options"),
    [("pnsga3", {}), ("pnsga3", {"second_sort": "size", "cut": "random"}), ("nsga3", {})],
)
def test_resume_from_state_dict_continues_identically(name: str, options: dict) -> None:
    cfg = evo.EvolutionConfig(population=8, generations=3, **options)
    straight = run(name, cfg, 3, range(4))
    ctx = run(name, cfg, 3, range(2))
    state = json.loads(json.dumps(ctx.strategy.state_dict()))
    resumed = STRATEGIES.get(name)(SPACE, cfg)
    resumed.load_state_dict(state)
    for unit in (2, 3):
        resumed.run_unit(ctx, unit)
    assert as_rows(ctx.records) == as_rows(straight.records)
    assert resumed.population == straight.strategy.population
    with pytest.raises(ValueError, match="expected unit 4"):
        resumed.run_unit(ctx, 2)


def test_pnsga3_escapes_the_small_model_trap_on_the_toy() -> None:
    """Same budget and seeds: pNSGA-III's final population holds larger (still improving)
    models than plain NSGA-III's, whose population collapses to small ones."""
    cfg = evo.EvolutionConfig(population=16, generations=6)
    gaps = []
    for seed in range(3):
        sizes = {}
        for name in ("pnsga3", "nsga3"):
            ctx = run(name, cfg, seed, range(cfg.generations + 1))
            sizes[name] = np.mean([ctx.size(g) for g in ctx.strategy.population])
        gaps.append(sizes["pnsga3"] - sizes["nsga3"])
    assert min(gaps) > 0.03, gaps
