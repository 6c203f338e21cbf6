"""Strategies on the table: the query budget is exact, and the controller follows F."""

from __future__ import annotations

import numpy as np
import pytest

from factory.search.config import SearchConfig
from factory.spaces import get_space
from factory.strategies import STRATEGIES
from factory.strategies.annealing import cas_schedule
from factory.strategies.rl import CycleAnnealing, RLConfig
from factory.tabular.context import BudgetSpent, TabularContext
from factory.tabular.run import resolve_tabular, search_table
from factory.tabular.score import FrontScore, exact_front
from factory.tabular.table import load_table


@pytest.fixture(scope="module")
def table():
    return load_table("nb201")


def f_cost_correlation(strategy: CycleAnnealing, cost: dict[int, float], steps) -> float:
    """corr(F, mean sampled cost) over the given controller steps."""
    lo, hi = strategy.resolved["f_min"], strategy.resolved["f_max"]
    target = [cas_schedule(k, strategy.config, lo, hi)[1] for k in steps]
    return float(np.corrcoef(target, [cost[k] for k in steps])[0, 1])


def test_repeats_and_cheap_look_ups_spend_no_queries(table) -> None:
    space = get_space("nb201")
    ctx = TabularContext(space, table, "pixel3", budget=2, rng=np.random.default_rng(0))
    a, b, c = (0,) * 6, (3,) * 6, (2,) * 6
    ctx.evaluate([a, a, b], "x", 0)
    ctx.evaluate([a], "x", 1, record=False)
    cheap = ctx.evaluate([c], "x", 1, cheap=True)[0]
    assert [r.genotype for r in ctx.queries] == [a, b] and len(ctx.log) == 3
    # an unqueried architecture: its latency, and the mean accuracy of the queries so far
    assert cheap.value("latency_ms") == table.latency_ms["pixel3"][table.row(c)]
    assert cheap.value("accuracy") == pytest.approx(
        np.mean(table.accuracy[[table.row(a), table.row(b)]])
    )
    with pytest.raises(BudgetSpent):
        ctx.evaluate([c], "x", 2)
    assert len(ctx.queries) == 2


@pytest.mark.parametrize("name", STRATEGIES.names())
def test_every_strategy_gets_exactly_its_queries(table, name: str) -> None:
    config = SearchConfig(space="nb201", strategy=name, target="fpga", benchmark="nb201",
                          queries=40, seed=3)  # fmt: skip
    config, _ = resolve_tabular(config)
    ctx, _, stopped = search_table(config, table)
    again, _, _ = search_table(config, table)
    assert stopped is None and len(ctx.queries) == 40
    assert len({r.arch_id for r in ctx.queries}) == 40
    assert [r.genotype for r in ctx.queries] == [r.genotype for r in again.queries]


def test_exact_front_scores_one_and_random_scores_less(table) -> None:
    score = FrontScore(table, "raspi4")
    front = exact_front(table, "raspi4")
    assert score.of_rows(front) == pytest.approx(1.0)
    assert score.of_rows(np.arange(len(table.accuracy))) == pytest.approx(1.0)
    assert 0.9 < score.of_rows(np.random.default_rng(0).permutation(15_625)[:100]) < 0.99


def test_controller_follows_a_moving_target_on_the_table(table) -> None:
    """F holds at F_min for 12 steps, then climbs to F_max over 30 (half a slow cycle of
    T = 60). The mean sampled latency must climb with it. With the old controller (one
    update of lr 1e-3 per step, no inner updates) the same run measured corr 0.14 and climbed
    11 ms of the 19 required; with 15 cheap inner updates per step, corr 0.91, and 0.97 once
    the controller also read F (the default since)."""
    space = get_space("nb201")
    cfg = RLConfig(n_warm=12, n_slow=30, n_fast=1, period=60, samples_per_step=8,
                   inner_updates=15, controller_lr=0.003, child_epochs_per_step=0.0)  # fmt: skip
    ctx = TabularContext(space, table, "raspi4", 10_000, np.random.default_rng(1))
    strategy = CycleAnnealing(space, cfg)
    for unit in range(42):
        strategy.run_unit(ctx, unit)
    lo, hi = strategy.resolved["f_min"], strategy.resolved["f_max"]
    cost = ctx.mean_cost_by_step()
    assert f_cost_correlation(strategy, cost, range(12, 42)) >= 0.6
    warm_end, climb_end = (
        np.mean([cost[k] for k in range(8, 12)]),
        np.mean([cost[k] for k in range(38, 42)]),
    )
    assert climb_end > warm_end + 0.4 * (hi - lo)


def test_evolution_on_the_table_beats_random_search(table) -> None:
    """Evolution breeds by mutation and crossover only on a table, so at 200 queries on fpga
    every pNSGA-III seed scores above every random-search seed (measured: 0.977-0.983
    against 0.956-0.975). With the supernet preset's half of fresh random children and
    p = 0.5 one seed scored 0.938 and the means were 0.968 against 0.963."""
    score = FrontScore(table, "fpga")

    def hypervolumes(name: str) -> list[float]:
        out = []
        for seed in range(4):
            config = SearchConfig(space="nb201", strategy=name, target="fpga",
                                  benchmark="nb201", queries=200, seed=seed)  # fmt: skip
            ctx, _, _ = search_table(resolve_tabular(config)[0], table)
            out.append(score.of_rows(np.array([table.row(r.genotype) for r in ctx.queries])))
        return out

    assert min(hypervolumes("pnsga3")) > max(hypervolumes("random"))


def test_cycle_annealing_imitating_its_front_beats_plain_cycle_annealing(table) -> None:
    """At 300 queries on fpga, imitating the front (the default) scores above the same seed
    without it, on each of 3 seeds, and by at least half a point on average (measured on an
    AMD EPYC: 0.979-0.987 against 0.972-0.975; on a Xeon: 0.979-0.992 against 0.971-0.980,
    where seed 1 with imitation fell below seed 2 without: the controller's floating point
    differs between CPUs, so seeds are compared with themselves). Without imitation cycle
    annealing samples near F's cost but not near the best models there."""
    score = FrontScore(table, "fpga")

    def hypervolumes(imitate_front: int) -> list[float]:
        out = []
        for seed in range(3):
            config = SearchConfig(space="nb201", strategy="cycle-annealing", target="fpga",
                                  benchmark="nb201", queries=300, seed=seed,
                                  strategy_config={"imitate_front": imitate_front})  # fmt: skip
            ctx, _, _ = search_table(resolve_tabular(config)[0], table)
            out.append(score.of_rows(np.array([table.row(r.genotype) for r in ctx.queries])))
        return out

    imitating, plain = hypervolumes(2), hypervolumes(0)
    assert all(a > b for a, b in zip(imitating, plain, strict=True)), (imitating, plain)
    assert np.mean(imitating) - np.mean(plain) >= 0.005, (imitating, plain)


def test_cycle_annealing_follows_f_over_a_whole_run(table) -> None:
    """A default 500-query run on raspi4: the mean sampled latency per anneal step tracks F
    (seeds 0-2 measured corr 0.74 / 0.86 / 0.78). The controller reading F buys most of it:
    with neither `condition_on_target` nor imitation the same runs measured -0.02 / 0.15 /
    -0.08 (imitation alone: 0.61 / 0.43 / 0.55)."""

    def corr(settings: dict) -> float:
        config = SearchConfig(space="nb201", strategy="cycle-annealing", target="raspi4",
                              benchmark="nb201", queries=500, seed=0,
                              strategy_config=settings)  # fmt: skip
        ctx, strategy, _ = search_table(resolve_tabular(config)[0], table)
        cost = ctx.mean_cost_by_step()
        return f_cost_correlation(strategy, cost, [k for k in cost if k >= strategy.config.n_warm])

    assert corr({}) >= 0.7
    assert corr({"condition_on_target": False, "imitate_front": 0}) < 0.3
