"""VGG-Lite's claim in miniature: a search started from VGG-11 against one started at random.

Bao et al. start their chain search from VGG-11 instead of random networks, which removed
most useless early candidates. Here pairs of pNSGA-III runs on the `vgg` space differ only in
`--init vgg11` (VGG-11 and near variants of it fill half the first population; the rest is
random as usual), with the same seed, supernet budget and evaluations, over several seeds.
Reported: the best validation accuracy after each evaluation, the evaluations each run needed
to reach shares of the best accuracy any run saw, and the share of useless candidates (under
half that best) after the warm-up. Cost is MACs, so no timing noise enters. Writes
docs/vgg_lite.{md,png,json}.

    python bench/vgg_lite.py [--generations 5] [--population 12] [--train-size 6000] [--seeds 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from plots import new_axes, save

from factory.search.config import SearchConfig
from factory.search.runner import run_search
from factory.search.store import RunStore

DOCS = Path(__file__).resolve().parents[1] / "docs"
OBJECTIVES = ("accuracy", "macs")
SHARES = (0.9, 0.95, 0.99)  # of the best accuracy seen in either run
RUNS = {"from VGG-11": ("vgg11",), "random start": ()}


def best_so_far(records) -> list[float]:
    best, out = 0.0, []
    for r in records:
        best = max(best, r.value("accuracy"))
        out.append(best)
    return out


def evaluations_to_reach(curve: list[float], level: float) -> int | None:
    """1-based index of the first evaluation at or above `level`; None if never."""
    return next((i + 1 for i, v in enumerate(curve) if v >= level), None)


def median_evals(values: list[int | None]) -> float | None:
    """Median over seeds, a run that never got there counting as infinitely many."""
    ordered = sorted(v if v is not None else float("inf") for v in values)
    mid = len(ordered) // 2
    m = ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
    return None if m == float("inf") else m


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generations", type=int, default=5)
    parser.add_argument("--population", type=int, default=12)
    parser.add_argument("--train-size", type=int, default=6000)
    parser.add_argument("--seeds", type=int, default=3, help="run pairs, seeds 0..N-1")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=Path, default=None, help="keep run dirs here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    root = args.runs or Path(tempfile.mkdtemp(prefix="emf-vgg-"))
    settings = {"population": args.population, "generations": args.generations}
    records: dict[str, list] = {n: [] for n in RUNS}
    walls: dict[str, list[float]] = {n: [] for n in RUNS}
    for seed in range(args.seeds):
        for i, (name, init) in enumerate(RUNS.items()):
            config = SearchConfig(space="vgg", strategy="pnsga3", objectives=OBJECTIVES,
                                  cost="macs", seed=seed, train_size=args.train_size,
                                  init=init, strategy_config=settings)  # fmt: skip
            start = time.perf_counter()
            run_search(config, root / f"seed{seed}-run{i}", quiet=True)
            walls[name].append(time.perf_counter() - start)
            with RunStore(root / f"seed{seed}-run{i}") as store:
                records[name].append(store.records())
            print(f"seed {seed} {name:12s} {walls[name][-1]:7.1f} s", flush=True)
    curves = {n: [best_so_far(recs) for recs in runs] for n, runs in records.items()}
    top = max(max(c) for runs in curves.values() for c in runs)
    searched = {n: [r for recs in runs for r in recs if r.step > 0] for n, runs in records.items()}
    summary = {
        "command": " ".join(["python", *sys.argv]),
        "date": dt.date.today().isoformat(),
        "seeds": args.seeds,
        "best_accuracy": {n: [max(c) for c in runs] for n, runs in curves.items()},
        "evaluations": {n: len(runs[0]) for n, runs in curves.items()},
        "to_reach": {
            f"{share:.0%} of {100 * top:.1f} %": {
                n: {"median": median_evals(per), "per_seed": per}
                for n, runs in curves.items()
                for per in [[evaluations_to_reach(c, share * top) for c in runs]]
            }
            for share in SHARES
        },
        "useless_after_warmup": {
            n: sum(r.value("accuracy") < top / 2 for r in rs) / len(rs)
            for n, rs in searched.items()
        },
        "wall_s": {n: sum(w) for n, w in walls.items()},
        "curves": curves,
    }
    (DOCS / "vgg_lite.json").write_text(json.dumps(summary, indent=2) + "\n")
    _plot(curves, DOCS / "vgg_lite.png")
    (DOCS / "vgg_lite.md").write_text(_report(summary, args))
    print(json.dumps({k: summary[k] for k in ("best_accuracy", "to_reach")}, indent=2))


def _report(s: dict, args: argparse.Namespace) -> str:
    names = list(RUNS)

    def evals(cell: dict) -> str:
        per = ", ".join(str(v) if v is not None else "never" for v in cell["per_seed"])
        median = f"{cell['median']:g}" if cell["median"] is not None else "never"
        return f"{median} ({per})"

    lines = [
        "# VGG-Lite in miniature: starting from VGG-11 vs starting at random",
        "",
        f"Generated by `{s['command']}` on {s['date']}. Do not edit by hand.",
        "",
        f"Space vgg, pNSGA-III, population {args.population}, {args.generations} generations, "
        f"Fashion-MNIST ({args.train_size} training images, 500 validation), objectives "
        f"accuracy and MACs, seeds 0-{args.seeds - 1}; the two runs of a seed differ only in "
        "`--init vgg11` (VGG-11 plus near variants of it as half the first population). "
        "Accuracies are the shared supernet's on 500 validation images.",
        "",
        f"| median over seeds (per seed) | {' | '.join(names)} |",
        f"|---|{'---:|' * len(names)}",
        f"| evaluations per run | {' | '.join(str(s['evaluations'][n]) for n in names)} |",
        "| best accuracy | "
        + " | ".join(
            ", ".join(f"{100 * v:.1f}" for v in s["best_accuracy"][n]) + " %" for n in names
        )
        + " |",
    ]
    for level, reached in s["to_reach"].items():
        lines.append(
            f"| evaluations to reach {level} | {' | '.join(evals(reached[n]) for n in names)} |"
        )
    useless = s["useless_after_warmup"]
    lines += [
        "| useless candidates after warm-up (< half the best) | "
        + " | ".join(f"{100 * useless[n]:.0f} %" for n in names)
        + " |",
        "| wall time, all seeds | " + " | ".join(f"{s['wall_s'][n]:.0f} s" for n in names) + " |",
        "",
        "![best accuracy after each evaluation](vgg_lite.png)",
        "",
    ]
    return "\n".join(lines)


def _plot(curves: dict[str, list[list[float]]], path: Path) -> None:
    fig, ax = new_axes(height=4.0)
    for (name, runs), color in zip(curves.items(), ("crimson", "tab:blue"), strict=False):
        for k, curve in enumerate(runs):
            ax.plot(range(1, len(curve) + 1), [100 * v for v in curve], color=color, alpha=0.8,
                    label=name if k == 0 else None)  # fmt: skip
    save(fig, ax, path, "evaluations", "best validation accuracy so far (%)")


if __name__ == "__main__":
    main()
