"""Every strategy under the same budget on a Fashion-MNIST subset, measured on x86-cpu.

For each strategy: hypervolume of the (accuracy, latency) front, evaluations, wall time;
for NSGA-III vs pNSGA-III also the population's cost spread per generation (the small-model
trap). Budgets are matched: the same supernet epochs and the same number of evaluated
candidates. Writes docs/strategies.md and docs/strategies.png.

    python bench/strategies.py [--generations 4] [--train-size 6000] [--seed 0]
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from plots import new_axes, save
from pymoo.indicators.hv import HV

from factory.search.config import SearchConfig
from factory.search.pareto import latest_per_arch, pareto_front
from factory.search.runner import run_search
from factory.search.store import RunStore

DOCS = Path(__file__).resolve().parents[1] / "docs"
STRATEGIES = ("random", "nsga3", "pnsga3", "mnas", "cycle-annealing")
OBJECTIVES = ("accuracy", "latency_ms")


def budgets(generations: int, population: int) -> dict[str, dict[str, object]]:
    """Strategy settings with equal supernet epochs and equal evaluation counts."""
    evals = population + 2 * population * generations
    epochs = 1.0 + 0.5 * generations
    evo = {"population": population, "generations": generations}
    samples = 6
    steps = max(6, round(evals / samples))
    rl = {
        "n_warm": max(1, steps // 6),
        "n_slow": max(1, steps // 6),
        "n_fast": steps - 2 * max(1, steps // 6),
        "period": max(2, steps // 6),
        "samples_per_step": samples,
        "child_epochs_per_step": epochs / steps,
    }
    return {
        "random": {"generations": generations, "samples_per_unit": 2 * population},
        "nsga3": evo,
        "pnsga3": evo,
        "mnas": rl,
        "cycle-annealing": rl,
    }


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
    parser.add_argument("--generations", type=int, default=4)
    parser.add_argument("--population", type=int, default=16)
    parser.add_argument("--train-size", type=int, default=6000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", type=Path, default=None, help="keep run dirs here")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    root = args.runs or Path(tempfile.mkdtemp(prefix="emf-bench-"))
    results = {}
    for name, settings in budgets(args.generations, args.population).items():
        config = SearchConfig(
            space=args.space,
            strategy=name,
            objectives=OBJECTIVES,
            cost="latency_ms",
            seed=args.seed,
            train_size=args.train_size,
            strategy_config=settings,
        )
        start = time.perf_counter()
        run_search(config, root / name, quiet=True)
        wall = time.perf_counter() - start
        with RunStore(root / name) as store:
            records = store.records()
        results[name] = (records, wall)
        print(f"{name:16s} {len(records):4d} evaluations  {wall:7.1f} s", flush=True)
    lat_ref = 1.1 * max(r.value("latency_ms") for recs, _ in results.values() for r in recs)
    hv = {name: hypervolume(recs, lat_ref) for name, (recs, _) in results.items()}
    lines = [
        "# Search strategies under one budget",
        "",
        f"- command: `python bench/strategies.py --space {args.space} --generations "
        f"{args.generations} --population {args.population} --train-size {args.train_size} "
        f"--seed {args.seed} --threads {args.threads}`",
        f"- machine: {platform.processor() or platform.machine()}, date {dt.date.today()}",
        "- objectives: validation accuracy (500 images) and latency measured on x86-cpu "
        "(ONNX Runtime, 1 thread, median of >= 200 ms)",
        "- hypervolume in (error, latency / L) space, reference point (1, 1), "
        f"L = 1.1 × the largest latency seen = {lat_ref:.3f} ms",
        "",
        "| strategy | evaluations | architectures | front | hypervolume | vs random | wall s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, (recs, wall) in results.items():
        front = pareto_front(recs, OBJECTIVES)
        lines.append(
            f"| {name} | {len(recs)} | {len(latest_per_arch(recs))} | {len(front)} | "
            f"{hv[name]:.4f} | {hv[name] / hv['random']:.3f}× | {wall:.0f} |"
        )
    lines += ["", "Goal: pnsga3 and cycle-annealing >= 1.1× the hypervolume of random.", ""]
    lines += ["## Population latency per generation (the small-model trap)", ""]
    lines += ["| generation | nsga3 min / median / max ms | pnsga3 min / median / max ms |"]
    lines += ["|---:|---|---|"]
    spreads = {n: population_spread(results[n][0], args.population) for n in ("nsga3", "pnsga3")}
    for a, b in zip(spreads["nsga3"], spreads["pnsga3"], strict=False):
        cells = [" / ".join(f"{v:.3f}" for v in row[1:]) for row in (a, b)]
        lines.append(f"| {a[0]} | {cells[0]} | {cells[1]} |")
    _plot(results, DOCS / "strategies.png")
    lines += ["", "![fronts](strategies.png)", ""]
    (DOCS / "strategies.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


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
