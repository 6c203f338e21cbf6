"""Accuracy of the latency lookup tables on x86-cpu; writes docs/latency_tables.md.

Run: python bench/lut_accuracy.py [--spaces shufflenet mobilenet vgg] [--archs 50]
     [--biased 30] [--rounds 6] [--out docs/latency_tables.md] [--append] [--render]
(--append adds spaces to the saved --raw results, one process per space; --render only
rewrites the page from them.)

Per space: build a fresh table (in a temp dir; `factory.lut.build_table`), then time fresh
random architectures end to end, independently of the table's code: each one in `--rounds`
rounds whose order alternates, a fresh session per measurement, 1 intra-op thread (the
target's). Predictions are compared with that truth for both statistics the table keeps
(the min over rounds of per-round minima, the median of per-round medians). The truth's
own repeatability (even vs odd rounds) is reported as the noise floor: no predictor can be
judged more finely than that on this machine. Two sets: uniform samples (`space.sample`,
the issue's protocol) and biased samples (`lut.sample_biased`), which span the space's range.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from exporters.onnx_export import export_onnx
from factory import lut
from factory.lut import fit as lut_fit
from factory.spaces import Genotype, SearchSpace, get_space
from profilers.base import ProfileSettings
from profilers.device_info import device_info
from profilers.remote import profiler_for
from targets import get_target
from targets.target import Target

ROOT = Path(__file__).resolve().parents[1]
GOAL_MAPE_PCT, GOAL_TAU = 5.0, 0.9
BLOCKS = lut.LutSettings(warmup_ms=20, min_duration_ms=60, min_iters=10, rounds=4, statistic="min")
TRUTH = ProfileSettings(warmup_ms=30, min_duration_ms=100, min_iters=10)


def truth(space: SearchSpace, archs: list[Genotype], target: Target, rounds: int) -> list[list]:
    """Per arch, per round: (median_ms, min_ms); rounds alternate their order."""
    shape = (1, *space.spec.shape)
    with lut.one_torch_thread():
        models = [export_onnx(space.build(g), shape, check_parity=False).data for g in archs]
    profiler = profiler_for(target)
    runs: list[list] = [[] for _ in archs]
    for r in range(rounds):
        order = range(len(archs)) if r % 2 == 0 else reversed(range(len(archs)))
        for i in order:
            stats = profiler.profile(models[i], target, shape, TRUTH).latency_ms
            runs[i].append((stats.median, stats.min))
    return runs


def combine(runs: list[tuple[float, float]], statistic: str) -> float:
    if statistic == "min":
        return min(r[1] for r in runs)
    return statistics.median(r[0] for r in runs)


def score(space, archs, predicted, runs, statistic) -> dict:
    """Table vs truth, and the truth's repeatability (even vs odd rounds)."""
    measured = [combine(r, statistic) for r in runs]
    rep = lut.report(space, archs, predicted, measured, statistic)
    even = [combine(r[0::2], statistic) for r in runs]
    odd = [combine(r[1::2], statistic) for r in runs]
    floor = lut.report(space, archs, even, odd, statistic)
    spread = statistics.pstdev(measured) / statistics.fmean(measured) * 100
    return {
        "mape": rep.mape_pct,
        "max": rep.max_error_pct,
        "tau": rep.kendall_tau,
        "floor_mape": floor.mape_pct,
        "floor_tau": floor.kendall_tau,
        "spread": spread,
        "range": (min(measured), max(measured)),
        "rows": rep.rows,  # kept in --raw for diagnosis
    }


def run_space(name: str, args: argparse.Namespace, target: Target) -> dict:
    space = get_space(name)
    rng = np.random.default_rng(args.seed)
    settings = dataclasses.replace(BLOCKS, max_samples=args.max_samples.get(name, 100))
    start = time.perf_counter()
    table = lut.build_table(space, target, settings, rng, force=True)
    build_s = time.perf_counter() - start
    print(f"[{name}] table: {len(table.blocks)} blocks in {build_s:.0f} s", flush=True)
    seen = [space.parse(c["genotype"]) for c in table.calibration]
    sets = {}
    for sampling, n in (("uniform", args.archs), ("biased", args.biased)):
        if n < 2:
            continue
        archs = lut.distinct_samples(space, n, rng, exclude=seen, sampling=sampling)
        seen += archs
        filled = table.filled_on_demand
        predicted = {s: [table.predict(g, s) for g in archs] for s in lut.STATISTICS}
        filled = table.filled_on_demand - filled
        runs = truth(space, archs, target, args.rounds)
        sets[sampling] = {
            "n": len(archs),
            "filled": filled,
            "runs": runs,  # per arch, per round: (median_ms, min_ms), for diagnosis
            **{s: score(space, archs, predicted[s], runs, s) for s in lut.STATISTICS},
            "ablation": {
                model: score(space, archs, values, runs, "min")
                for model, values in ablation(table, archs).items()
            },
        }
        print(f"[{name}] {sampling}: {sets[sampling]}", flush=True)
    return {
        "table": {"fit": table.fit, **table.build},
        "build_s": build_s,
        "sets": sets,
        "seconds": time.perf_counter() - start,
    }


def ablation(table: lut.LatencyTable, archs: list[Genotype]) -> dict[str, list[float]]:
    """Min-latency predictions of simpler models, from the same blocks and calibration."""
    sums = [table.block_sum(g) for g in archs]
    xs = np.array([c["sum"]["min_ms"] for c in table.calibration])
    ys = np.array([c["measured"]["min_ms"] for c in table.calibration])
    a, b = lut_fit.relative_lstsq(np.column_stack([xs, np.ones_like(xs)]), ys)
    return {
        "sum": [s["min_ms"] + table.overhead.min_ms for s in sums],
        "linear": [a * s["min_ms"] + b for s in sums],
        "table": [table.predict(g, "min") for g in archs],
    }


def write_markdown(results: dict, args: dict, meta: dict) -> str:
    info = meta["device"]
    lines = [
        "# Latency lookup tables: accuracy on x86-cpu",
        "",
        "Written by `bench/lut_accuracy.py` (re-run it to refresh this page).",
        "",
        f"- Date: {meta['date']}; bench took {meta['minutes']:.1f} min",
        f"- Commands: {'; '.join(f'`{c}`' for c in meta['commands'])}",
        f"- Machine: {info.get('cpu')}, {info.get('cores_usable')} usable cores, "
        f"{info.get('os')}; onnxruntime {ort.__version__}, torch {torch.__version__}",
        f"- Load average (1 min) at the start and end of each command: "
        f"{', '.join(f'{x:.1f}' for x in meta['loads'])}",
        f"- Target x86-cpu: CPUExecutionProvider, fp32, 1 intra-op thread. Blocks: "
        f"{BLOCKS.rounds} interleaved rounds of {BLOCKS.warmup_ms:g} ms warm-up + "
        f"{BLOCKS.min_duration_ms:g} ms; truth: {args['rounds']} rounds of "
        f"{TRUTH.warmup_ms:g} + {TRUTH.min_duration_ms:g} ms per architecture.",
        "",
        "## Results",
        "",
        "MAPE and max error in %, τ = Kendall tau-b. *Floor* = the same numbers between two "
        "halves of the truth's own rounds (even vs odd): how far the measurement agrees with "
        "itself. Goal (issue #3): MAPE ≤ 5 %, τ ≥ 0.9.",
        "",
        "| space | set | n | stat | MAPE | max | τ | floor MAPE | floor τ | truth spread (CV) |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, res in results.items():
        for sampling, s in res["sets"].items():
            for stat in lut.STATISTICS:
                r = s[stat]
                lines.append(
                    f"| {name} | {sampling} | {s['n']} | {stat} | {r['mape']:.1f} | "
                    f"{r['max']:.1f} | {r['tau']:.3f} | {r['floor_mape']:.1f} | "
                    f"{r['floor_tau']:.3f} | {r['spread']:.1f} % |"
                )
    lines += [
        "",
        "## Which model (min latency)",
        "",
        "MAPE % / τ of three predictors from the same block times: the plain sum of blocks "
        "plus one call overhead; a·Σ + b fitted on the calibration architectures; the "
        "table's model a·Σ + c·Mparams + b (the c term kept only when it cuts the error on "
        "left-out calibration architectures by 10 %).",
        "",
        "| space | set | Σ blocks + overhead | a·Σ + b | a·Σ + c·Mparams + b |",
        "|---|---|---:|---:|---:|",
    ]
    for name, res in results.items():
        for sampling, s in res["sets"].items():
            cells = [f"{s['ablation'][m]['mape']:.1f} / {s['ablation'][m]['tau']:.3f}"
                     for m in ("sum", "linear", "table")]  # fmt: skip
            lines.append(f"| {name} | {sampling} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Tables",
        "",
        "| space | blocks | complete | filled on demand (validation) | build s | fit (min) | "
        "fit (median) |",
        "|---|---:|---|---:|---:|---|---|",
    ]
    for name, res in results.items():
        t = res["table"]
        filled = sum(s["filled"] for s in res["sets"].values())
        fits = [_fit_text(t["fit"][s]) for s in ("min", "median")]
        lines.append(
            f"| {name} | {t['blocks_profiled']} | {t['complete']} | {filled} | "
            f"{res['build_s']:.0f} | {fits[0]} | {fits[1]} |"
        )
    return "\n".join(lines) + "\n"


def _fit_text(fit: dict) -> str:
    if fit["degenerate"]:
        return f"degenerate: Σ + {fit['b']:.3f}"
    c = f" + {fit['c_ms_per_mparam']:.3f}·Mparams" if fit["c_ms_per_mparam"] else ""
    return f"{fit['a']:.3f}·Σ{c} + {fit['b']:.3f} (LOO {fit['loo_error_pct']:.1f} %)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spaces", nargs="+", default=["shufflenet", "mobilenet", "vgg"])
    parser.add_argument("--archs", type=int, default=50, help="uniform random archs per space")
    parser.add_argument("--biased", type=int, default=30, help="biased random archs per space")
    parser.add_argument("--rounds", type=int, default=6, help="truth rounds per architecture")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "latency_tables.md")
    parser.add_argument("--raw", type=Path, default=Path("/tmp/lut_accuracy.json"))
    parser.add_argument("--render", action="store_true", help="only re-render --raw")
    parser.add_argument("--append", action="store_true", help="keep other spaces in --raw")
    args = parser.parse_args()
    args.max_samples = {"vgg": 0}  # vgg's blocks depend on earlier choices: fill on demand
    if not args.render:
        measure(args)
    raw = json.loads(args.raw.read_text())
    text = write_markdown(raw["results"], raw["args"], raw["meta"]) + FINDINGS
    args.out.write_text(text)
    print(text)


def measure(args: argparse.Namespace) -> None:
    """Run the spaces, saving after each; --append keeps spaces already in --raw (one
    process per space survives a shared machine better)."""
    start, load0 = time.perf_counter(), os.getloadavg()[0]
    target = dataclasses.replace(get_target("x86-cpu"), latency_table=tempfile.mkdtemp())
    old = json.loads(args.raw.read_text()) if args.append and args.raw.exists() else {}
    results, meta = old.get("results", {}), old.get("meta", {})
    command = "python " + " ".join(["bench/lut_accuracy.py", *sys.argv[1:]])
    commands = [*meta.get("commands", []), command]
    minutes, loads = meta.get("minutes", 0.0), meta.get("loads", [])
    for name in args.spaces:
        results[name] = run_space(name, args, target)
        meta = {
            "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "minutes": minutes + (time.perf_counter() - start) / 60,
            "commands": commands,
            "device": device_info(),
            "loads": [*loads, load0, os.getloadavg()[0]],
        }
        saved = {"rounds": args.rounds}
        args.raw.write_text(json.dumps({"results": results, "args": saved, "meta": meta}))


FINDINGS = """
## Reading these figures

- **Goal (min latency, uniform sets: the issue's protocol).** shufflenet MAPE 4.6 % and
  mobilenet 3.5 % meet ≤ 5 %; mobilenet's τ 0.91 meets ≥ 0.9. shufflenet's τ (0.59) is
  bounded by the measurement, not the table: its random archs differ by a CV of ~8 %, about
  the noise, and two halves of the same measurement rank them only to the floor τ (0.22).
  vgg misses both (16 % MAPE, τ 0.85; the truth itself agrees to 5.5 % / 0.93).
- **Run to run.** Two earlier full runs of the same protocol gave shufflenet 3.7 and 4.1 %,
  mobilenet 4.2 and 4.4 % (τ 0.88 and 0.90), vgg 14.5 and 24.8 % (τ 0.92 and 0.87): the
  first two spaces meet the MAPE goal each time, mobilenet's τ sits at the goal, vgg misses.
- **vgg** networks are tiny at 1×28×28 (median 0.07 ms: many layers are `zero`, widths
  start at 8): error 10 % above 0.1 ms and 21 % below, where the effects below weigh most.
  Its blocks depend on earlier choices, so most of them are profiled on demand.
- **Median.** Medians measured while building and medians measured minutes later differ
  by the change in machine load (load average 1–9 during this work), so median-based
  predictions carry that offset (mobilenet 16 % MAPE vs 3.5 % for minima). Minima move
  far less with the load, which is why `predict` defaults to them; on a quiet device the
  two differ by a small steady factor.

## What limits a sum of blocks here (investigation)

1. **Per-call overhead.** One `session.run` of an identity model costs 7–12 µs here, while
   blocks at 28×28 cost 5–100 µs. It is subtracted from every block (floored at 0) and
   enters once through b; `skip` and zero-without-pool blocks export to an Identity-only
   graph and cost exactly 0 without being timed.
2. **Fusion across blocks.** ONNX Runtime's CPU provider runs convs in a blocked layout
   (NCHWc) and inserts ReorderInput/ReorderOutput where a graph leaves it. A block timed
   alone pays a reorder at both ends; in a network, consecutive convs stay blocked and the
   residual Add/ReLU fuse into the conv. ORT per-op profile, kernel ms per run: all-g1
   shufflenet, blocks vs network: ReorderInput 0.19 vs 0.04, ReorderOutput 0.16 vs 0.08,
   Add 0.15 vs 0.04, Relu 0.17 vs 0.07 (sums 1.60 vs 1.46 ms); a vgg net 0.194 vs
   0.132 ms, of which reorders 0.065 vs 0.010. Grouped 1×1 convs (shufflenet g > 1) stay in
   NCHW, so there the boundaries cost the same alone and in a network. The fitted a and b
   absorb the average effect (the plain sum is 10–27 % off on mobilenet and vgg, the fit
   3.5–16 %); what remains depends on which neighbours fuse. Tried: splitting each block's
   time into reorders and the rest (from a per-op profile of every block) and fitting the
   two separately: no better on vgg (10.3 % vs 8.5 % MAPE, 16 archs, fit on 10), because
   the reorder share is nearly proportional to Σ. Timing pairs of neighbouring blocks
   would capture it, at the cost of a table per pair of choices.
3. **Cache.** A block timed alone keeps its weights in cache; a network streams every
   block's weights in. On mobilenet the ratio measured / Σblocks rose with the network's
   parameters (correlation 0.78 over 30 archs, ratios 1.09–1.72 at high load). Hence the
   optional c·Mparams term, kept only when it cuts the error on left-out calibration archs
   by 10 % (it did for vgg in one run: 14.5 % instead of 17 %; not in this one).
4. **Noise and drift.** This 2-core machine is shared: whole 100 ms windows run up to 2×
   slower, their fastest run included, so blocks and networks are timed in interleaved
   rounds (order reversed every other round) and the minimum over rounds is kept. In a run
   where the calibration networks were timed in a phase of their own after the blocks, a
   slow spell during that phase gave mobilenet a = 1.63 and 37 % MAPE while the plain sum
   stayed at 8.5 %: calibration networks are now shuffled in among the blocks, in the
   same timing run. Relative least squares (rows weighted by 1 / measured) keeps the
   small networks from being sacrificed to the large ones (vgg 24.8 → 14.5 % with the c
   term, in the run that introduced both).

The design's rule stands: use the table to rank candidates, and measure the final
Pareto models end to end on the device.
"""

if __name__ == "__main__":
    main()
