"""`factory search --benchmark`: a search whose evaluations are look-ups in a benchmark table.

No data, no supernet, no latency measurement: the strategy's loop runs as in a supernet
search, but `TabularContext` answers from the table and ends the run after exactly
`queries` distinct architectures. Seconds instead of hours, and the result can be scored
against the exact front (printed as a normalised hypervolume).
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from factory.search.config import SearchConfig
from factory.search.pareto import ChanceFloor, write_outputs
from factory.search.store import RunStore, save_config
from factory.spaces import SearchSpace, get_space
from factory.strategies import STRATEGIES
from factory.strategies.base import Record, Strategy
from factory.tabular.context import BudgetSpent, TabularContext
from factory.tabular.score import FrontScore
from factory.tabular.table import BenchmarkTable, load_table
from targets.errors import UserError

DEFAULT_QUERIES = 300
POPULATION = 16  # evolution: P for a few hundred queries (CARS's 128 needs thousands)
# evolution's breeding in a table: children by mutation and crossover only, each mutation
# redrawing one of nb201's 6 edges on average. The quick preset's half of fresh random
# children and p = 0.5 (3 edges) spend half the queries on random search; measured on seeds
# 100-119 (not the bench's), 1000 queries, pnsga3 reached 0.99 of the exact front in 306 / 335
# / 196 queries on raspi4 / pixel3 / fpga against 594 / 668 / 411 (docs/nb201_notes.md)
BREEDING = {"mutation_fraction": 0.5, "crossover_fraction": 0.5, "random_fraction": 0.0,
            "mutation_p": 1 / 6}  # fmt: skip
CONTROLLER_SAMPLES = 8  # controller samples per update
# cheap inner updates per step (latency only; `TabularContext.evaluate(cheap=True)`) and the
# controller's lr: measured on seeds 100-102, raspi4, 1000 queries, corr(F, sampled cost)
# 0.00-0.08 without inner updates, 0.33 with 7 at lr 0.003, 0.48-0.68 with 31 (4x the time)
INNER_UPDATES = 7
CONTROLLER_LR = 0.003
STALL_UNITS = 200  # units in a row without a new architecture before a run gives up
# NAS-Bench-201 reports CIFAR-10 test accuracy on 10,000 images, 10 classes
CHANCE = ChanceFloor(num_classes=10, val_images=10_000)


def tabular_settings(strategy: str, queries: int) -> dict[str, Any]:
    """Strategy settings planned for `queries` look-ups (the run stops at exactly that many).

    No shared weights train, so the epoch settings are moot; pNSGA-III's second sort is
    "size" (the official CARS code's (−acc, −cost)), since accuracy speed needs training
    curves the table does not have; evolution breeds by mutation and crossover only
    (`BREEDING`), since every fresh random child is a query spent on random search. A
    controller makes 1 + `INNER_UPDATES` updates a unit."""
    if strategy == "random":
        return {"samples_per_unit": 10, "generations": max(0, math.ceil(queries / 10) - 1)}
    if strategy in ("pnsga3", "nsga3"):
        gens = max(1, math.ceil(queries / POPULATION) - 1)
        return {"population": POPULATION, "generations": gens, "second_sort": "size", **BREEDING}
    steps = max(6, math.ceil(queries / CONTROLLER_SAMPLES))
    phase = max(1, steps // 6)  # the paper's 1:1:4 phases, T = N_slow
    return {
        "n_warm": phase, "n_slow": phase, "n_fast": steps - 2 * phase, "period": phase,
            "samples_per_step": CONTROLLER_SAMPLES, "inner_updates": INNER_UPDATES,
        "controller_lr": CONTROLLER_LR, "child_epochs_per_step": 0.0,
    }  # fmt: skip


def resolve_tabular(config: SearchConfig) -> tuple[SearchConfig, BenchmarkTable]:
    """The config with the device column and strategy settings resolved, and the table."""
    from factory.search.resolve import with_settings, with_units

    if config.space != "nb201":
        raise UserError(f"--benchmark tables cover the nb201 space, not {config.space!r}")
    if tuple(config.objectives) != ("accuracy", "latency_ms"):
        raise UserError("a tabular search has two objectives: accuracy and latency")
    queries = config.queries or DEFAULT_QUERIES
    if queries < 1:
        raise UserError("--queries must be at least 1")
    table = load_table(config.benchmark or "nb201")
    device = table.device(config.target) if config.target else table.devices[0]
    cls = STRATEGIES.get(config.strategy)
    settings = tabular_settings(config.strategy, queries)
    strategy_cfg = cls.Config(**{**dataclasses.asdict(cls.Config.preset("quick")), **settings})
    if config.units is not None:
        strategy_cfg = with_units(strategy_cfg, config.units)
    strategy_cfg = with_settings(strategy_cfg, config.strategy_config)
    space = get_space(config.space)
    for name in config.init:
        space.parse(name)
    resolved = dataclasses.replace(
        config, target=device, queries=queries, cost="latency_ms",
        strategy_config=_jsonable(dataclasses.asdict(strategy_cfg)),
    )  # fmt: skip
    return resolved, table


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return list(value) if isinstance(value, tuple) else value


def search_table(
    config: SearchConfig, table: BenchmarkTable, rng: np.random.Generator | None = None
) -> tuple[TabularContext, Strategy, str | None]:
    """Run a resolved config's strategy on the table until its queries are spent; returns
    the context (its `queries`), the strategy and why it stopped early (None: budget spent)."""
    space = get_space(config.space)
    cls = STRATEGIES.get(config.strategy)
    fields = {f.name: f for f in dataclasses.fields(cls.Config)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in config.strategy_config.items()
              if k in fields}  # fmt: skip
    strategy = cls(space, cls.Config(**values), [space.parse(n) for n in config.init])
    rng = rng if rng is not None else np.random.default_rng(config.seed)
    assert config.queries is not None
    ctx = TabularContext(space, table, config.target, config.queries, rng,
                         (config.f_min, config.f_max))  # fmt: skip
    unit, last_new, seen = 0, 0, 0
    while True:
        try:
            strategy.run_unit(ctx, unit)
        except BudgetSpent:
            return ctx, strategy, None
        unit += 1
        if len(ctx.queries) > seen:
            last_new, seen = unit, len(ctx.queries)
        elif unit - last_new >= STALL_UNITS:
            return ctx, strategy, f"no new architecture in {STALL_UNITS} units"


def run_tabular(config: SearchConfig, run_dir: Path, resume: bool = False) -> dict[str, Any]:
    """Search the table, write the run directory (config, every query, the front) and
    return a summary: queries, device, normalised hypervolume, why it stopped early."""
    if resume:
        raise UserError("a tabular search takes seconds: run it again instead of --resume")
    config, table = resolve_tabular(config)
    run_dir.mkdir(parents=True, exist_ok=True)
    if (run_dir / "config.json").exists():
        raise UserError(f"{run_dir} already holds a run; choose another --out")
    save_config(run_dir, config.to_dict())
    started = time.monotonic()
    ctx, strategy, stopped = search_table(config, table)
    rows = np.array([table.row(r.genotype) for r in ctx.queries], dtype=np.int64)
    score = FrontScore(table, config.target)
    hv = score.of_rows(rows) if len(rows) else 0.0
    with RunStore(run_dir) as store:
        store.add_many(ctx.queries)
    summary = {
        "benchmark": table.name, "device": config.target, "queries": len(ctx.queries),
        "budget": config.queries, "normalised_hypervolume": hv, "stopped": stopped,
        "wall_s": round(time.monotonic() - started, 3),
    }  # fmt: skip
    meta = {"space": config.space, "strategy": config.strategy, "target": config.target,
            "tabular": summary, "units_done": strategy.next_unit, "stopped": stopped}  # fmt: skip
    write_outputs(run_dir, ctx.queries, config.objectives, ctx.space.format,
                  _references(ctx.space, table, config.target), meta, floor=CHANCE)  # fmt: skip
    return summary


def _references(space: SearchSpace, table: BenchmarkTable, device: str) -> dict[str, Record]:
    """The space's manual architectures from the table, for the front's markers (they are
    looked up after the search, so they spend none of its queries)."""
    lookup = TabularContext(space, table, device, budget=len(space.manual()),
                            rng=np.random.default_rng(0))  # fmt: skip
    manual = space.manual()
    return dict(zip(manual, lookup.evaluate(list(manual.values()), "reference", -1), strict=True))
