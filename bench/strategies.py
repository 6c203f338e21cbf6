"""Every strategy under the same budget on a Fashion-MNIST subset, measured on x86-cpu.

For each strategy and seed: hypervolume of the (accuracy, latency) front, evaluations, wall
time; for NSGA-III vs pNSGA-III also the population's cost spread per generation (the
small-model trap, seed 0). Budgets are matched exactly: the same supernet epochs and the same
number of evaluations for every strategy. Hypervolumes are compared within a seed (one
latency scale per seed), and the ratios to random search summarised over seeds. Writes
docs/strategies.{md,json,png}.

    python bench/strategies.py [--generations 2] [--population 8] [--train-size 4000] [--seeds 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from machine import describe_machine
from plots import new_axes, save
from pymoo.indicators.hv import HV
from searches import search_or_exit

from factory.search.config import SearchConfig
from factory.search.pareto import latest_per_arch, pareto_front
from factory.search.store import RunStore
from factory.strategies.evolution import EvolutionConfig

DOCS = Path(__file__).resolve().parents[1] / "docs"
STRATEGIES = ("random", "nsga3", "pnsga3", "mnas", "cycle-annealing")
OBJECTIVES = ("accuracy", "latency_ms")


def budgets(generations: int, population: int) -> dict[str, dict[str, object]]:
    """Strategy settings with equal supernet epochs and exactly equal evaluation counts.

    Evolution evaluates P in its warm-up and 2P (survivors re-scored + offspring) per
    generation: P(1 + 2G). Random search runs 2G units of P after a warm-up of P, each unit
    half a generation's epochs; the controllers take that many evaluations in steps of a
    divisor of it."""
    base = EvolutionConfig()  # the epochs nsga3/pnsga3 run with
    evals = population * (1 + 2 * generations)
    epochs = base.warmup_epochs + base.epochs_per_generation * generations
    evo = {"population": population, "generations": generations}
    samples = next((d for d in range(8, 3, -1) if evals % d == 0 and evals // d >= 6), None)
    if samples is None:
        raise SystemExit(f"{evals} evaluations split into no 6+ controller steps of 4-8 samples")
    steps = evals // samples
    phase = max(1, steps // 6)
    rl = {
        "n_warm": phase,
        "n_slow": phase,
        "n_fast": steps - 2 * phase,
        "period": phase,
        "samples_per_step": samples,
        "child_epochs_per_step": epochs / steps,
    }
    random = {
        "generations": 2 * generations,
        "samples_per_unit": population,
        "warmup_epochs": base.warmup_epochs,
        "epochs_per_generation": base.epochs_per_generation / 2,
    }
    return {"random": random, "nsga3": evo, "pnsga3": evo, "mnas": rl, "cycle-annealing": rl}


def hypervolume(records, cost_ref: float, cost: str = "latency_ms") -> float:
    """HV of the front in (error, cost / cost_ref) space with reference point (1, 1)."""
    front = pareto_front(records, ("accuracy", cost))
    F = np.array([[1 - r.value("accuracy"), r.value(cost) / cost_ref] for r in front])
    return float(HV(ref_point=np.array([1.0, 1.0]))(F))


def population_spread(records, population: int) -> list[tuple[int, float, float, float]]:
    """(generation, min, median, max latency) of the population each generation started with."""
    by_step: dict[int, list] = {}
    for r in records:
        by_step.setdefault(r.step, []).append(r)
    rows = []
    for step in sorted(by_step):
        lat = [r.value("latency_ms") for r in by_step[step][:population]]
        rows.append((step, min(lat), statistics.median(lat), max(lat)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="shufflenet")
    parser.add_argument("--generations", type=int, default=2)
    parser.add_argument("--population", type=int, default=8)
    parser.add_argument("--train-size", type=int, default=4000)
    parser.add_argument("--val-size", type=int, default=2000, help="images scoring a candidate")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1")
    parser.add_argument("--runs", type=Path, default=None, help="keep run dirs here")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    root = args.runs or Path(tempfile.mkdtemp(prefix="emf-bench-"))
    plan = budgets(args.generations, args.population)
    seeds: list[dict[str, tuple[list, float]]] = []
    for seed in range(args.seeds):
        results = {}
        for name, settings in plan.items():
            config = SearchConfig(space=args.space, refine=0, strategy=name, objectives=OBJECTIVES,
                                  cost="latency_ms", seed=seed, train_size=args.train_size,
                                  val_size=args.val_size, strategy_config=settings)  # fmt: skip
            run_dir = root / f"seed{seed}-{name}"
            start = time.perf_counter()
            search_or_exit(config, run_dir)
            wall = time.perf_counter() - start
            with RunStore(run_dir) as store:
                results[name] = (store.records(), wall)
            print(f"seed {seed} {name:16s} {len(results[name][0]):4d} evaluations "
                  f"{wall:7.1f} s  load {os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip
        seeds.append(results)
    summary = _summary(seeds, args)
    (DOCS / "strategies.json").write_text(json.dumps(summary, indent=2) + "\n")
    _plot(seeds[0], DOCS / "strategies.png")
    text = _report(summary, seeds[0], args)
    (DOCS / "strategies.md").write_text(text)
    print(text)


def _summary(seeds: list[dict[str, tuple[list, float]]], args: argparse.Namespace) -> dict:
    """Per seed and strategy: evaluations, architectures, front size, hypervolume (latency
    scaled by 1.1 x the largest latency any strategy saw in that seed) and wall time."""
    per_seed = []
    for results in seeds:
        lat_ref = 1.1 * max(r.value("latency_ms") for recs, _ in results.values() for r in recs)
        per_seed.append({
            name: {
                "evaluations": len(recs),
                "architectures": len(latest_per_arch(recs)),
                "front": len(pareto_front(recs, OBJECTIVES)),
                "hypervolume": hypervolume(recs, lat_ref),
                "wall_s": wall,
                "latency_ref_ms": lat_ref,
            }
            for name, (recs, wall) in results.items()
        })  # fmt: skip
    ratios = {
        name: [s[name]["hypervolume"] / s["random"]["hypervolume"] for s in per_seed]
        for name in per_seed[0]
    }
    return {
        "command": " ".join(["python", "bench/strategies.py", *sys.argv[1:]]),
        "date": dt.date.today().isoformat(),
        "machine": describe_machine(),
        "space": args.space,
        "per_seed": per_seed,
        "vs_random": {
            n: {"median": statistics.median(r), "per_seed": r} for n, r in ratios.items()
        },
    }


def _report(s: dict, seed0: dict[str, tuple[list, float]], args: argparse.Namespace) -> str:
    first = s["per_seed"][0]
    rand = budgets(args.generations, args.population)["random"]
    epochs = rand["warmup_epochs"] + rand["generations"] * rand["epochs_per_generation"]
    lines = [
        "# Search strategies under one budget",
        "",
        f"- command: `{s['command']}`",
        f"- machine: {s['machine']}, date {s['date']}; one torch thread, runs one at a time",
        f"- space {args.space}; {len(s['per_seed'])} seeds; every strategy gets exactly the same "
        f"evaluations ({first['random']['evaluations']}) and supernet epochs "
        f"({epochs:g}) on {args.train_size} training images",
        f"- objectives: validation accuracy (supernet, {args.val_size} images) and the search's "
        "latency objective on x86-cpu (robust mode: paired with a reference model, so machine load "
        "cancels)",
        "- hypervolume in (error, latency / L) space, reference point (1, 1), L = 1.1 × the "
        "largest latency any strategy saw in that seed; ratios to random are within a seed",
        "",
        "| strategy | evaluations | architectures (seed 0) | hypervolume per seed | "
        "vs random | vs random per seed | wall s (all seeds) |",
        "|---|---:|---:|---|---:|---|---:|",
    ]
    for name, ratio in s["vs_random"].items():
        hvs = ", ".join(f"{p[name]['hypervolume']:.4f}" for p in s["per_seed"])
        per = ", ".join(f"{r:.3f}" for r in ratio["per_seed"])
        wall = sum(p[name]["wall_s"] for p in s["per_seed"])
        lines.append(
            f"| {name} | {first[name]['evaluations']} | {first[name]['architectures']} | {hvs} "
            f"| {ratio['median']:.3f}× | {per} | {wall:.0f} |"
        )
    lines += [
        "",
        "Goal: pnsga3 and cycle-annealing >= 1.1× the hypervolume of random (median of seeds).",
        "",
        "## Population latency per generation (the small-model trap, seed 0)",
        "",
        "| generation | nsga3 min / median / max ms | pnsga3 min / median / max ms |",
        "|---:|---|---|",
    ]
    spreads = {n: population_spread(seed0[n][0], args.population) for n in ("nsga3", "pnsga3")}
    for a, b in zip(spreads["nsga3"], spreads["pnsga3"], strict=False):
        cells = [" / ".join(f"{v:.3f}" for v in row[1:]) for row in (a, b)]
        lines.append(f"| {a[0]} | {cells[0]} | {cells[1]} |")
    lines += ["", "![fronts, seed 0](strategies.png)", ""]
    return "\n".join(lines)


def _plot(results, path: Path) -> None:
    fig, ax = new_axes()
    for name, (recs, _) in results.items():
        front = pareto_front(recs, OBJECTIVES)
        ax.plot(
            [r.value("latency_ms") for r in front],
            [100 * r.value("accuracy") for r in front],
            "o-",
            ms=4,
            drawstyle="steps-post",
            label=name,
        )
    save(fig, ax, path, "latency on x86-cpu (ms)", "validation accuracy (%)")


if __name__ == "__main__":
    main()
