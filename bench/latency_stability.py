"""Does the search's latency objective rank architectures alike on a quiet and a loaded
machine? Writes docs/latency_stability.{md,json}.

For each space, 50 architectures spread evenly over its MAC range (many samples and the
manual ones, sorted by MACs) get a latency from the search's own `CostModel` in both timing
modes, the modes alternating architecture by architecture: `robust` (windows alternating
with a reference model, the search's default on a local target) and `measure` (the median of
one window, the old default). Once on the quiet machine, once while busy processes (one per
core) keep every core loaded. Per space and mode: Kendall's tau between the two rankings and
the median |loaded - quiet| / quiet. Goal, robust mode, every space: tau >= 0.9 and a median
difference <= 5 %. Run it on an otherwise idle machine: other jobs make "quiet" loaded.

    python bench/latency_stability.py [--archs 50] [--spaces mobilenet,shufflenet,vgg]
    python bench/latency_stability.py --quick     # 8 architectures of one space: smoke test
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from machine import describe_machine

from factory.search.costs import CostModel
from factory.spaces import SPACES, get_space
from factory.spaces.base import Genotype, SearchSpace
from profilers.flops import count_costs
from targets import get_target

ROOT = Path(__file__).resolve().parents[1]
MODES = ("robust", "measure")
GOAL_TAU, GOAL_DIFF = 0.9, 0.05


def spread_over_costs(space: SearchSpace, n: int, rng: np.random.Generator) -> list[Genotype]:
    """n distinct architectures evenly spaced in MACs among the manual ones and 4n samples."""
    pool = {space.arch_id(g): g for g in space.manual().values()}
    for _ in range(4 * n):
        g = space.sample(rng)
        pool.setdefault(space.arch_id(g), g)
    shape = (1, *space.spec.shape)
    ranked = sorted(pool.values(), key=lambda g: count_costs(space.build(g), shape).macs)
    picks = np.unique(np.linspace(0, len(ranked) - 1, n).round().astype(int))
    return [ranked[i] for i in picks]


def latencies(space: SearchSpace, archs: list[Genotype]) -> dict[str, list[float]]:
    """Each architecture's latency objective in every mode, from fresh cost models."""
    target = get_target("x86-cpu")
    models = {mode: CostModel(space, target, ("latency_ms",), mode) for mode in MODES}
    out: dict[str, list[float]] = {mode: [] for mode in MODES}
    for g in archs:
        for mode, costs in models.items():
            out[mode].append(costs.costs(g)[0]["latency_ms"])
    return out


def _spin() -> None:
    while True:
        pass


class Load:
    """One busy process per core while inside the `with` block."""

    def __enter__(self) -> Load:
        self.procs = [multiprocessing.Process(target=_spin, daemon=True) for _ in _cores()]
        for p in self.procs:
            p.start()
        time.sleep(2.0)  # let the scheduler settle
        return self

    def __exit__(self, *exc: object) -> None:
        for p in self.procs:
            p.terminate()
            p.join()


def _cores() -> range:
    return range(os.cpu_count() or 1)


def kendall_tau(xs: list[float], ys: list[float]) -> float:
    """Kendall's tau-a: (concordant - discordant pairs) / all pairs."""
    n = len(xs)
    score = sum(
        np.sign(xs[i] - xs[j]) * np.sign(ys[i] - ys[j]) for i in range(n) for j in range(i + 1, n)
    )
    return float(score) / (n * (n - 1) / 2)


def compare(quiet: list[float], loaded: list[float]) -> dict:
    diffs = [abs(b - a) / a for a, b in zip(quiet, loaded, strict=True)]
    tau, diff = kendall_tau(quiet, loaded), statistics.median(diffs)
    return {"tau": tau, "median_rel_diff": diff, "goal_met": tau >= GOAL_TAU and diff <= GOAL_DIFF}


def load_average() -> float:
    return os.getloadavg()[0]


def bench_space(name: str, n: int, seed: int) -> dict:
    space = get_space(name)
    archs = spread_over_costs(space, n, np.random.default_rng(seed))
    print(f"{name}: {len(archs)} architectures; quiet phase", flush=True)
    started = time.monotonic()
    quiet = latencies(space, archs)
    quiet_load = load_average()
    print(f"{name}: quiet done (load {quiet_load:.2f}); loaded phase", flush=True)
    with Load():
        loaded = latencies(space, archs)
        loaded_load = load_average()
    print(f"{name}: loaded done (load {loaded_load:.2f})", flush=True)
    return {
        "architectures": [space.format(g) for g in archs],
        "load_average_1min": {"quiet": quiet_load, "loaded": loaded_load},
        "seconds": round(time.monotonic() - started, 1),
        "latency_ms": {"quiet": quiet, "loaded": loaded},
        "modes": {m: compare(quiet[m], loaded[m]) for m in MODES},
    }


def report(result: dict) -> str:
    lines = [
        "# Latency objective: the same ranking quiet and under load",
        "",
        f"Generated by `{result['command']}` on {result['date']} ({result['machine']}). "
        "Do not edit by hand.",
        "",
        f"Per space, {result['archs']} architectures spread evenly over the MAC range get a "
        "latency from the search's `CostModel` (x86-cpu, ONNX Runtime, 1 thread, batch 1) in "
        "both modes, alternating: **robust** (10 pairs of ~25 ms windows alternating with the "
        "space's first manual architecture; the ratio's median times the reference's "
        "latency) and **measure** (the median of one 200 ms window). Once quiet, once while "
        f"{result['load_processes']} busy processes keep every core loaded. Goal, robust mode: "
        f"Kendall tau >= {GOAL_TAU} and median |loaded - quiet| / quiet <= {GOAL_DIFF:.0%} "
        "in every space.",
        "",
        "| space | load avg quiet / loaded | mode | Kendall tau | median rel. diff | goal |",
        "|---|---|---|---:|---:|---|",
    ]
    for name, s in result["spaces"].items():
        la = s["load_average_1min"]
        for mode, c in s["modes"].items():
            goal = ("met" if c["goal_met"] else "**not met**") if mode == "robust" else ""
            lines.append(
                f"| {name} | {la['quiet']:.2f} / {la['loaded']:.2f} | {mode} | {c['tau']:.3f} | "
                f"{100 * c['median_rel_diff']:.1f} % | {goal} |"
            )
    met = all(s["modes"]["robust"]["goal_met"] for s in result["spaces"].values())
    lines += ["", f"**Goal {'met' if met else 'not met'}** for the robust mode.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archs", type=int, default=50, help="architectures per space")
    parser.add_argument("--spaces", default=",".join(SPACES.names()))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="8 architectures of one space")
    parser.add_argument("--out", type=Path, help="where the page goes (default docs/)")
    args = parser.parse_args()
    spaces = args.spaces.split(",")
    if args.quick:
        args.archs, spaces = 8, spaces[:1]
    out = args.out or (ROOT / "runs" / "latency_stability-quick" if args.quick else ROOT / "docs")
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)  # export; the timing itself uses the target's thread count
    result = {
        "command": " ".join(["python", *sys.argv]),
        "date": dt.date.today().isoformat(),
        "machine": describe_machine(),
        "archs": args.archs,
        "load_processes": len(_cores()),
        "spaces": {name: bench_space(name, args.archs, args.seed) for name in spaces},
    }
    (out / "latency_stability.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "latency_stability.md").write_text(report(result))
    print(report(result))


if __name__ == "__main__":
    main()
