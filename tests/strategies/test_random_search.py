"""`random`: fresh uniform genotypes each unit, on the same supernet budget as evolution."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence

import numpy as np
import pytest

import factory.strategies.evolution as evo
import factory.strategies.random_search as rs
from factory.spaces import get_space
from factory.spaces.base import Genotype
from factory.strategies.base import PathSource, Record, Weights
from factory.strategies.registry import STRATEGIES
from targets.errors import UserError

SPACE = get_space("vgg")  # 32 decisions; only its genotype operators run


class ToyContext:
    """A toy stand-in for the supernet (tested elsewhere): accuracy is a closed-form
    function of the genotype and the supernet epochs so far, plus noise drawn from `rng`;
    cost "params" is the sum of the choice indices."""

    def __init__(self, seed: int) -> None:
        self.space = SPACE
        self.rng = np.random.default_rng(seed)
        self.objectives = ("accuracy", "params")
        self.cost = "params"
        self.epochs = 0.0
        self.records: list[Record] = []
        self.trained: list[tuple[PathSource, float]] = []

    def train_supernet(self, paths: PathSource = None, epochs: float = 1.0) -> float:
        self.trained.append((paths, epochs))
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
        assert weights == "current"
        out = []
        for g in genotypes:
            acc = 1 - np.exp(-self.epochs / (1 + np.mean(g))) + self.rng.normal(0, 0.01)
            objectives = {"accuracy": float(np.clip(acc, 0, 1)), "params": float(sum(g))}
            out.append(Record(g, self.space.format(g), objectives, phase, step))
        if record:
            self.records.extend(out)
        return out

    def snapshot_weights(self) -> None:
        raise AssertionError("random search needs no snapshot")

    def cost_range(self) -> tuple[float, float]:
        return 0.0, float(sum(c - 1 for c in SPACE.choices()))


def run(
    config: rs.RandomConfig, seed: int, units: range, **kw
) -> tuple[ToyContext, rs.RandomSearch]:
    ctx = ToyContext(seed)
    strategy = STRATEGIES.get("random")(SPACE, config, **kw)
    for unit in units:
        strategy.run_unit(ctx, unit)
    return ctx, strategy


def test_registered_with_presets() -> None:
    assert STRATEGIES.get("random").Config is rs.RandomConfig
    assert rs.RandomConfig.preset("quick") == rs.RandomConfig()
    paper = rs.RandomConfig.preset("paper")
    assert (paper.warmup_epochs, paper.generations, paper.epochs_per_generation) == (50, 45, 10)
    assert paper.samples_per_unit == 256  # (1 + t)·P of CARS
    with pytest.raises(UserError, match="paper, quick"):
        rs.RandomConfig.preset("tiny")
    with pytest.raises(UserError):
        rs.RandomConfig(samples_per_unit=0)


@pytest.mark.parametrize("preset", ["quick", "paper"])
def test_same_supernet_epochs_as_evolution(preset: str) -> None:
    e, r = evo.EvolutionConfig.preset(preset), rs.RandomConfig.preset(preset)
    cheap = dataclasses.replace(r, samples_per_unit=2)
    ctx, strategy = run(cheap, 0, range(1 + r.generations))
    assert strategy.total_units() == 1 + e.generations
    assert sum(epochs for _, epochs in ctx.trained) == pytest.approx(
        e.warmup_epochs + e.generations * e.epochs_per_generation
    )
    assert all(paths is None for paths, _ in ctx.trained)  # uniform paths throughout


def test_units_evaluate_fresh_uniform_batches_warm_start_first() -> None:
    cfg = rs.RandomConfig(generations=3, samples_per_unit=12)
    vgg11 = SPACE.manual()["vgg11"]
    ctx, _ = run(cfg, 0, range(4), init=[vgg11, vgg11])
    assert ctx.records[0].genotype == vgg11
    genotypes = [r.genotype for r in ctx.records]
    assert len(genotypes) == 4 * 12 and len(set(genotypes)) == len(genotypes)
    assert [(r.phase, r.step) for r in ctx.records[::12]] == [
        ("warmup", 0),
        ("random", 1),
        ("random", 2),
        ("random", 3),
    ]
    assert ctx.trained == [(None, 1.0), (None, 0.5), (None, 0.5), (None, 0.5)]


def test_same_seed_same_records_and_resume() -> None:
    cfg = rs.RandomConfig(generations=3, samples_per_unit=6)
    straight, _ = run(cfg, 5, range(4))
    again, _ = run(cfg, 5, range(4))
    rows = [(r.genotype, r.objectives["accuracy"]) for r in straight.records]
    assert rows == [(r.genotype, r.objectives["accuracy"]) for r in again.records]
    other, _ = run(cfg, 6, range(4))
    assert rows != [(r.genotype, r.objectives["accuracy"]) for r in other.records]

    ctx, first = run(cfg, 5, range(2))
    resumed = rs.RandomSearch(SPACE, cfg)
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))
    for unit in (2, 3):
        resumed.run_unit(ctx, unit)
    assert [(r.genotype, r.objectives["accuracy"]) for r in ctx.records] == rows
