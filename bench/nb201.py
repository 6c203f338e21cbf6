"""Every strategy against the exact front of NAS-Bench-201, on measured device latencies.

For each device column, query budget and seed, every strategy runs on the shipped table
(`factory search --benchmark nb201`) and gets exactly the same number of distinct queries.
Scores: hypervolume normalised by the exact front's (reference point: accuracy at the
table's 5th percentile, latency 1.01 x the table's largest), the queries needed to reach 0.99
of it, and for cycle annealing the correlation of F with the mean sampled cost per step in
the anneal phases and how much of [F_min, F_max] its front spans. 95 % bootstrap intervals
over seeds. Writes docs/nb201.md, docs/nb201.json, docs/nb201_hv.png and docs/nb201_f.png.

    python bench/nb201.py [--seeds 20] [--budgets 100,300,1000] [--devices raspi4,pixel3,fpga]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import time
from pathlib import Path

import numpy as np
import torch
from machine import describe_machine
from nb201_page import write_page

from factory.search.config import SearchConfig
from factory.strategies.annealing import WARM, cas_schedule
from factory.tabular.run import CHANCE, resolve_tabular, search_table
from factory.tabular.score import FrontScore
from factory.tabular.table import BenchmarkTable, load_table

DOCS = Path(__file__).resolve().parents[1] / "docs"
STRATEGIES = ("random", "nsga3", "pnsga3", "mnas", "cycle-annealing")
LEVEL = 0.99  # share of the exact front's hypervolume to reach
ALL_DEVICES = ("raspi4", "pixel3", "eyeriss", "fpga", "xeon_gold_6226", "titan_rtx_b1")
CURVE = (10, 20, 30, 50, 75, 100, 150, 200, 300, 400, 500, 700, 1000)


def queries_to(score: FrontScore, rows: np.ndarray, level: float = LEVEL) -> int | None:
    """The fewest leading queries whose normalised hypervolume reaches `level` (None: never)."""
    if len(rows) == 0 or score.of_rows(rows) < level:
        return None
    lo, hi = 1, len(rows)  # hypervolume never drops as queries are added: bisect
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if score.of_rows(rows[:mid]) >= level else (mid + 1, hi)
    return lo


def random_queries_to(score: FrontScore, n_rows: int, seed: int) -> int:
    """Random search's queries to `LEVEL`: a uniform order of the whole table (uniform
    sampling without repeats, as `random` does), so it is never cut off by a budget."""
    order = np.random.default_rng(10_000 + seed).permutation(n_rows)
    return int(queries_to(score, order))


def anneal_stats(ctx, strategy) -> dict[str, float]:
    """Cycle annealing: corr(F, mean sampled cost) over the anneal steps, and the share of
    [F_min, F_max] between the found front's cheapest and dearest member."""
    lo, hi = strategy.resolved["f_min"], strategy.resolved["f_max"]
    by_step = ctx.mean_cost_by_step()
    steps = [k for k in by_step if cas_schedule(k, strategy.config, lo, hi)[0] != WARM]
    f = [cas_schedule(k, strategy.config, lo, hi)[1] for k in steps]
    cost = [by_step[k] for k in steps]
    corr = float(np.corrcoef(f, cost)[0, 1]) if len(steps) > 2 and np.std(cost) > 0 else 0.0
    front = _front_latencies(ctx.queries)
    covered = max(0.0, min(front.max(), hi) - max(front.min(), lo)) if len(front) else 0.0
    return {"corr": corr, "span": covered / (hi - lo), "f_min": lo, "f_max": hi}


def _front_latencies(records) -> np.ndarray:
    """Latencies of the non-dominated records above the chance floor."""
    pts = sorted((r.value("latency_ms"), -r.value("accuracy")) for r in records
                 if CHANCE.keeps(r))  # fmt: skip
    out, best = [], np.inf
    for lat, neg_acc in pts:
        if neg_acc < best:
            best = neg_acc
            out.append(lat)
    return np.asarray(out)


def one_run(table: BenchmarkTable, strategy: str, device: str, budget: int, seed: int):
    config = SearchConfig(space="nb201", strategy=strategy, target=device, benchmark="nb201",
                          queries=budget, seed=seed)  # fmt: skip
    config, _ = resolve_tabular(config)
    ctx, strat, stopped = search_table(config, table)
    rows = np.array([table.row(r.genotype) for r in ctx.queries], dtype=np.int64)
    return ctx, strat, stopped, rows


def bootstrap(values: list[float], rng: np.random.Generator, stat=np.mean) -> list[float]:
    """[statistic, 2.5 %, 97.5 %] over 2000 resamples of the seeds."""
    x = np.asarray(values, dtype=float)
    boot = [stat(x[rng.integers(len(x), size=len(x))]) for _ in range(2000)]
    return [float(stat(x)), *(float(v) for v in np.percentile(boot, [2.5, 97.5]))]


_TABLE: BenchmarkTable | None = None  # one per worker process


def _cell(job: tuple[str, str, int, int, bool]) -> dict:
    """One (strategy, device, budget, seed) run, scored in the worker (results pickle)."""
    global _TABLE
    name, device, budget, seed, longest = job
    if _TABLE is None:
        torch.set_num_threads(1)
        _TABLE = load_table("nb201")
    score = FrontScore(_TABLE, device)
    ctx, strat, stopped, rows = one_run(_TABLE, name, device, budget, seed)
    out: dict = {"hv": score.of_rows(rows), "stopped": None}
    if stopped or len(rows) != budget:
        out["stopped"] = f"{name} {budget} seed {seed}: {stopped}"
    if longest:
        out["curve"] = [score.of_rows(rows[:k]) for k in CURVE if k <= budget]
        out["reach"] = queries_to(score, rows)
        if name == "cycle-annealing":
            out["anneal"] = anneal_stats(ctx, strat)
    return out


def run_device(table, device, budgets, seeds, strategies, rng, pool) -> dict:
    score = FrontScore(table, device)
    out: dict = {"hv": {}, "to_level": {}, "curve": {}, "anneal": [], "stopped": []}
    for name in strategies:
        for budget in budgets:
            longest = budget == max(budgets)
            cells = pool.map(_cell, [(name, device, budget, s, longest) for s in seeds])
            out["stopped"] += [c["stopped"] for c in cells if c["stopped"]]
            hvs = [c["hv"] for c in cells]
            out["hv"].setdefault(name, {})[str(budget)] = bootstrap(hvs, rng)
            if longest:
                out["curve"][name] = np.mean([c["curve"] for c in cells], axis=0).tolist()
                out["to_level"][name] = _reach_stats([c["reach"] for c in cells], budget, rng)
                out["anneal"] += [c["anneal"] for c in cells if "anneal" in c]
            print(f"{device:15s} {name:16s} {budget:5d} hv {np.mean(hvs):.4f}", flush=True)
    full = [random_queries_to(score, len(table.accuracy), s) for s in seeds]
    out["to_level"]["random (whole table)"] = _reach_stats(full, len(table.accuracy), rng)
    out["exact_front"] = {"hypervolume": score.exact, "ref": list(score.ref)}
    return out


def _reach_stats(reach: list[int | None], cap: int, rng) -> dict:
    """Median queries to the level with a bootstrap interval; runs that never reached it
    count as infinite (so a median can be 'never')."""
    x = [np.inf if r is None else float(r) for r in reach]
    med = bootstrap(x, rng, stat=np.median)
    return {"median": med, "reached": sum(r is not None for r in reach), "runs": len(reach),
            "cap": cap}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--budgets", default="100,300,1000")
    parser.add_argument("--devices", default=",".join(ALL_DEVICES))
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--out", type=Path, default=DOCS)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    torch.set_num_threads(1)
    table = load_table("nb201")
    budgets = [int(b) for b in args.budgets.split(",")]
    seeds = list(range(args.seeds))
    rng = np.random.default_rng(0)
    started = time.monotonic()
    with mp.get_context("spawn").Pool(args.workers) as pool:
        results = {d: run_device(table, d, budgets, seeds, args.strategies.split(","), rng, pool)
                   for d in args.devices.split(",")}  # fmt: skip
    doc = {
        "command": f"python bench/nb201.py --seeds {args.seeds} --budgets {args.budgets} "
        f"--devices {args.devices} --strategies {args.strategies}",
        "machine": describe_machine(), "date": time.strftime("%Y-%m-%d"),
        "wall_s": round(time.monotonic() - started, 1), "level": LEVEL, "budgets": budgets,
        "seeds": args.seeds, "curve_queries": list(CURVE), "devices": results,
    }  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "nb201.json").write_text(json.dumps(doc, indent=1) + "\n")
    _f_trace(table, args.devices.split(",")[0], max(budgets), args.out / "nb201_f.png")
    print(write_page(doc, args.out))


def _f_trace(table, device: str, budget: int, path: Path) -> None:
    """F and the mean sampled cost per step of one cycle-annealing run (seed 0)."""
    from plots import new_axes, save

    ctx, strat, _, _ = one_run(table, "cycle-annealing", device, budget, 0)
    lo, hi = strat.resolved["f_min"], strat.resolved["f_max"]
    by_step = ctx.mean_cost_by_step()
    steps = list(by_step)
    fig, ax = new_axes()
    ax.plot(steps, [cas_schedule(k, strat.config, lo, hi)[1] for k in steps], label="target F")
    ax.plot(steps, list(by_step.values()), ".", ms=4, label="mean sampled cost")
    save(fig, ax, path, "controller step", f"latency on {device} (ms)")


if __name__ == "__main__":
    main()
