"""The searched front against hand-designed networks, trained and measured alike.

Two steps, so the training can run where it is fast and the timing where it counts:

    # 1. train the baselines with the recipe `factory train` uses (a GPU helps: --device cuda)
    python bench/baselines.py train --epochs 30 --out runs/baselines
    factory train RUN --pareto --epochs 30            # the front, same recipe and epochs
    # 2. on the target (x86-cpu here): export every model to ONNX and time them all in one
    #    run, interleaved round by round, then write docs/baselines.{md,png,json}
    python bench/baselines.py measure --run RUN --baselines runs/baselines

A baseline is dominated when a front network is at least as accurate and shown faster in
alternating pairs (`bench/pairs.py`); the rounds give the table's medians and the plot.

Baselines are torchvision's MobileNetV2, MobileNetV3-Small and ShuffleNetV2 at several width
multipliers with their stems adapted to 28x28 (`factory/baselines.py`). Each is saved like a
trained candidate of a run (`BASELINES/trained/<name>/model.safetensors` + train.json), so
the same code reads both.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DOCS = ROOT / "docs"
# recipe fields that must agree for a fair comparison (threads, device, names may differ)
RECIPE_KEYS = (
    "epochs", "batch_size", "lr", "momentum", "weight_decay", "warmup_epochs",
    "label_smoothing", "hflip", "erase_p", "augment", "train_images", "seed",
)  # fmt: skip


def train(args: argparse.Namespace) -> None:
    """Train each named baseline (default: all) and save it under OUT/trained/<name>/."""
    import torch

    from factory.baselines import default_baselines, parse_baseline
    from factory.data import load_dataset
    from factory.progress import make_progress
    from factory.trained import INFO, train_and_save, trained_dir
    from factory.training import TrainRecipe, build_seeded, limit_splits, resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    chosen = [parse_baseline(b) for b in args.baseline] or default_baselines()
    data = load_dataset("fashion-mnist", seed=args.seed)
    if args.limit_images:
        data = limit_splits(data, args.limit_images, args.limit_images)
    spec = data.info.input_spec()
    recipe = TrainRecipe(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr * args.batch_size / 128,
        erase_p=args.erase,
    )
    for baseline in chosen:
        if (trained_dir(args.out, baseline.name) / INFO).is_file() and not args.force:
            print(f"{baseline.name}: already trained in {args.out} (--force retrains)")
            continue
        model = build_seeded(lambda b=baseline: b.build(spec), args.seed)
        names = (baseline.name, baseline.name, baseline.name)
        with make_progress(disable=args.quiet) as progress:
            info = train_and_save(
                args.out, model, names, "torchvision", data, recipe, args.seed, device, progress
            )
        print(
            f"{baseline.name}: test accuracy {100 * info.test_accuracy:.2f} % after "
            f"{recipe.epochs:g} epochs in {info.train_seconds:.0f} s on {info.recipe['device']}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train the baselines")
    t.add_argument("--baseline", action="append", default=[], help="FAMILY@WIDTH (repeatable)")
    t.add_argument("--epochs", type=float, default=5.0)
    t.add_argument("--batch-size", type=int, default=128)
    t.add_argument("--lr", type=float, default=0.1, help="peak learning rate for batch 128")
    t.add_argument("--erase", type=float, default=0.0, help="random erasing probability")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto")
    t.add_argument("--threads", type=int, default=0)
    t.add_argument("--out", type=Path, default=ROOT / "runs" / "baselines")
    t.add_argument("--force", action="store_true")
    t.add_argument("--quiet", action="store_true")
    t.add_argument("--limit-images", type=int, default=0, help=argparse.SUPPRESS)
    m = sub.add_parser("measure", help="export and time the front and the baselines")
    m.add_argument("--run", type=Path, required=True, help="search run with trained front")
    m.add_argument("--baselines", type=Path, default=ROOT / "runs" / "baselines")
    m.add_argument("--rounds", type=int, default=7)
    m.add_argument("--threads", type=int, default=1)
    m.add_argument("--long", type=Path, help="run trained longer (flagship)")
    m.add_argument("--pairs", type=int, default=15, help="alternating pairs per verdict")
    args = parser.parse_args()
    if args.command == "train":
        train(args)
    else:
        measure(args)


@dataclasses.dataclass
class Point:
    """One trained network, exported to ONNX and timed."""

    name: str
    kind: str  # "searched" or the baseline family
    params: int
    macs: int
    accuracy: float  # on the test split, from train.json
    recipe: dict
    onnx: bytes
    latency_ms: list[float] = dataclasses.field(default_factory=list)  # a median per round

    @property
    def median_ms(self) -> float:
        return statistics.median(self.latency_ms)

    @property
    def spread(self) -> float:
        """(max - min) / median of the per-round medians."""
        from profilers.base import relative_spread

        return relative_spread(self.latency_ms)

    def row(self) -> dict:
        keep = ("name", "kind", "params", "macs", "accuracy", "latency_ms")
        return {k: v for k, v in dataclasses.asdict(self).items() if k in keep} | {
            "median_ms": self.median_ms,
            "spread": self.spread,
            "epochs": self.recipe["epochs"],
        }


def load_points(run: Path, baselines: Path) -> list[Point]:
    """The run's trained front models and every trained baseline, each exported to ONNX.
    Other models trained in the run (a manual architecture, say) are not the search's answer
    and are left out."""
    import torch

    from factory.baselines import parse_baseline
    from factory.trained import INFO, TRAINED, load_trained, open_run

    opened = open_run(run)
    front = {r["arch_id"] for r in json.loads((run / "pareto.json").read_text())["front"]}
    spec = opened.data.info.input_spec()
    images = opened.data.test.take(torch.arange(7))[0].numpy()
    points = []
    for home in (run, baselines):
        for d in sorted(p for p in (home / TRAINED).iterdir() if (p / INFO).is_file()):
            if home == run and d.name not in front:
                continue
            state, info = load_trained(home, d.name)
            if home == run:
                kind, model = "searched", opened.space.build(opened.space.parse(info.genotype))
            else:
                baseline = parse_baseline(d.name)
                kind, model = baseline.family, baseline.build(spec)
            model.load_state_dict(state)
            points.append(_point(d.name, kind, model.eval(), info, images))
            print(f"exported {d.name}", flush=True)
    return points


def _point(name: str, kind: str, model, info, images) -> Point:
    from exporters.fp32 import export_fp32
    from exporters.settings import ExportSettings
    from profilers.flops import count_costs

    costs = count_costs(model, (1, *images.shape[1:]))
    onnx, _ = export_fp32(model, tuple(images.shape[1:]), ExportSettings(), images)
    return Point(name, kind, costs.params, costs.macs, info.test_accuracy, info.recipe, onnx)


def time_all(points: list[Point], rounds: int) -> dict:
    """Every model once per round on x86-cpu, the order rotating from round to round, so a
    change of load touches all of them alike. Returns the first measurement's context."""
    from pairs import TIMING

    from profilers.base import ProfileSettings
    from profilers.paired import time_in_rounds
    from profilers.registry import get_profiler
    from targets import get_target

    target = get_target("x86-cpu")
    settings = ProfileSettings(**TIMING)  # the windows of the paired verdicts
    timed = time_in_rounds(
        get_profiler(target), [p.onnx for p in points], target, rounds, settings,
        on_round=lambda r: print(f"round {r + 1}/{rounds} done", flush=True),
    )  # fmt: skip
    for p, ms in zip(points, timed, strict=True):
        p.latency_ms = [m.latency_ms.median for m in ms]
    m = timed[0][0]
    return {
        "runtime": f"{m.runtime} {m.runtime_version}",
        "provider": m.provider,
        "threads": m.threads,
        "input_shape": list(m.input_shape),
    }


def front_of(points: list[Point]) -> list[Point]:
    """The searched points no other searched point beats on both accuracy and latency."""
    searched = [p for p in points if p.kind == "searched"]
    return [
        p
        for p in searched
        if not any(
            q.accuracy >= p.accuracy
            and q.median_ms <= p.median_ms
            and q is not p
            and (q.accuracy > p.accuracy or q.median_ms < p.median_ms)
            for q in searched
        )
    ]


def _median(p: Point) -> float:
    return p.median_ms


def dominance(baseline: Point, front: list[Point], pairs: int) -> dict | None:
    """The fastest front network at least as accurate as the baseline, timed against it in
    alternating pairs; None when no front network is as accurate."""
    from pairs import paired, shown_faster

    rivals = sorted((p for p in front if p.accuracy >= baseline.accuracy), key=_median)
    if not rivals:
        return None
    timing = paired(rivals[0].onnx, baseline.onnx, pairs)
    print(f"{rivals[0].name} vs {baseline.name}: ratio {timing['ratio']:.3f}", flush=True)
    return {"by": rivals[0].name, "timing": timing, "dominated": shown_faster(timing)}


def recipe_mismatches(points: list[Point]) -> list[str]:
    """Recipe fields on which some network differs from the first one."""
    first = points[0].recipe
    return [
        f"{k}: {p.name} has {p.recipe.get(k)!r}, {points[0].name} {first.get(k)!r}"
        for p in points[1:]
        for k in RECIPE_KEYS
        if p.recipe.get(k) != first.get(k)
    ]


def measure(args: argparse.Namespace) -> None:
    import torch
    from baselines_page import plot, report, verdict_cell
    from machine import describe_machine

    torch.set_num_threads(args.threads)
    points = load_points(args.run, args.baselines)
    context = time_all(points, args.rounds)
    front = front_of(points)
    baselines = [p for p in points if p.kind != "searched"]
    verdicts = {p.name: dominance(p, front, args.pairs) for p in baselines}
    rows = [
        "| network | kind | params | MACs | test acc | latency ms (median) | spread | "
        "dominated by (front; paired ratio, pairs faster) |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    best = max(p.accuracy for p in front)
    for p in sorted(points, key=lambda p: p.median_ms):
        mark = " **front**" if p in front else ""
        rows.append(
            f"| {p.name}{mark} | {p.kind} | {p.params / 1e6:.3f} M | {p.macs / 1e6:.2f} M | "
            f"{100 * p.accuracy:.2f} % | {p.median_ms:.3f} | {100 * p.spread:.0f} % | "
            f"{verdict_cell(verdicts.get(p.name), None if p in front else best)} |"
        )
    plot(points, front, DOCS / "baselines.png")
    result = {
        "command": " ".join(["python", *sys.argv]),
        "date": dt.date.today().isoformat(),
        "machine": describe_machine(),
        "measurement": context | {"rounds": args.rounds, "pairs": args.pairs},
        "recipe": points[0].recipe,
        "recipe_mismatches": recipe_mismatches(points),
        "points": [p.row() for p in points],
        "front": [p.name for p in front],
        "dominance": verdicts,
        "baselines_dominated": sum(bool(v and v["dominated"]) for v in verdicts.values()),
        "baselines": len(baselines),
        "flagship": flagship(args.long, points, args.pairs) if args.long else None,
    }
    (DOCS / "baselines.json").write_text(json.dumps(result, indent=2) + "\n")
    (DOCS / "baselines.md").write_text(report(result, rows))
    print("\n".join(rows))
    print(f"front dominates {result['baselines_dominated']} of {len(baselines)} baselines")


def flagship(long_run: Path, points: list[Point], pairs: int) -> dict:
    """The stretch goal: the most accurate long-trained searched model against
    MobileNetV2@0.35 in alternating pairs (>= 94 % and shown faster)."""
    from baselines_page import FLAGSHIP_RIVAL
    from pairs import paired

    from factory.trained import INFO, TRAINED, load_trained

    by_name = {p.name: p for p in points}
    trained = [load_trained(long_run, d.name)[1] for d in (long_run / TRAINED).iterdir()
               if (d / INFO).is_file() and d.name in by_name]  # fmt: skip
    best = max(trained, key=lambda i: i.test_accuracy)
    theirs = by_name[FLAGSHIP_RIVAL]
    return {
        "arch_id": best.arch_id,
        "epochs": best.epochs,
        "test_accuracy": best.test_accuracy,
        "params": by_name[best.arch_id].params,
        "device": best.recipe.get("device"),
        "train_seconds": best.train_seconds,
        "others": {i.arch_id: i.test_accuracy for i in trained},
        "vs": theirs.name,
        "timing": paired(by_name[best.arch_id].onnx, theirs.onnx, pairs),
    }


if __name__ == "__main__":
    main()
