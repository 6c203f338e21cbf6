"""Rebuild the prebuilt models the package ships, then compare INT8 with FP32 for them.

Runs the product's own commands: `factory search` (unless --run names a finished one),
`factory train` for a small, a medium and a large point of the front, `factory export`
(ONNX + INT8 ONNX, measured on x86-cpu) and `factory push` into the shipped registry. Then
times every shipped model's fp32 and int8 files in alternating pairs (same run, same load)
and writes docs/prebuilt.md.

    python bench/prebuilt.py [--run RUN] [--epochs 3] [--threads 1]
    python bench/prebuilt.py --run RUN --pick small=ID --pick medium=ID --no-train
    python bench/prebuilt.py --compare-only      # only the INT8 vs FP32 table
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SHIPPED = ROOT / "factory" / "registry" / "shipped"
SIZES = ("small", "medium", "large")


def factory(*args: str) -> None:
    """One `factory` command, echoed, stopping the script if it fails."""
    cmd = [sys.executable, "-m", "factory.cli.main", *args]
    print("$ factory", " ".join(args), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


def pick(run: Path) -> dict[str, str]:
    """Small (fastest), large (most accurate) and medium (the front member whose latency is
    closest to their geometric mean) arch_ids of a run's front."""
    front = json.loads((run / "pareto.json").read_text())["front"]
    by_latency = sorted(front, key=lambda r: r["latency_ms"])
    small, large = by_latency[0], max(front, key=lambda r: r["accuracy"])
    middle = (small["latency_ms"] * large["latency_ms"]) ** 0.5
    rest = [r for r in front if r["arch_id"] not in (small["arch_id"], large["arch_id"])]
    medium = min(rest or [large], key=lambda r: abs(r["latency_ms"] - middle))
    return {"small": small["arch_id"], "medium": medium["arch_id"], "large": large["arch_id"]}


def parse_picks(values: list[str]) -> dict[str, str]:
    """`--pick SIZE=ARCH_ID` options as {size: arch_id}."""
    picks = dict(v.split("=", 1) for v in values if "=" in v)
    if len(picks) != len(values) or not all(picks.values()):
        sys.exit(f"--pick takes SIZE=ARCH_ID, got {values}")
    return picks


def rebuild(args: argparse.Namespace) -> None:
    run = args.run
    threads = ["--threads", str(args.threads)]
    if run is None:
        run = ROOT / "runs" / f"prebuilt-{time.strftime('%Y%m%d-%H%M%S')}"
        factory("search", "--out", str(run), "--seed", str(args.seed), *threads)
    chosen = parse_picks(args.pick) or pick(run)
    ids = list(dict.fromkeys(chosen.values()))
    if args.no_train:
        missing = [a for a in ids if not (run / "trained" / a / "model.safetensors").is_file()]
        if missing:
            sys.exit(f"--no-train: {run} has no trained weights for {', '.join(missing)}")
    else:
        factory("train", str(run), *[f"-c{a}" for a in ids], "--epochs", str(args.epochs),
                *threads)  # fmt: skip
    space = json.loads((run / "config.json").read_text())["space"]
    out = run / "export"
    for size, arch_id in chosen.items():
        factory(
            "export", str(run), "-c", arch_id, "--out", str(out), "--force",
            "--name-prefix", f"fmnist-{size}-", "--version", args.version,
        )  # fmt: skip
        factory("push", str(out / f"fmnist-{size}-{space}-{arch_id}"), "--registry",
                str(SHIPPED), "--force")  # fmt: skip


def compare(rounds: int, run: Path | None) -> list[str]:
    """INT8 vs FP32 of every shipped model: alternating pairs on x86-cpu, 1 thread."""
    from factory.registry import pull
    from profilers.base import ProfileSettings
    from profilers.registry import get_profiler
    from targets import get_target

    target = get_target("x86-cpu")
    profiler = get_profiler(target)
    settings = ProfileSettings(warmup_ms=200, min_duration_ms=1000, min_iters=20, batch=1)
    index = json.loads((SHIPPED / "index.json").read_text())
    rows = [
        "| model | params | MACs | search ms | fp32 acc | int8 acc | Δ points | fp32 ms "
        "| int8 ms | int8/fp32 (spread) | fp32 / int8 size |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for entry in index["models"]:
        bundle = pull(f"{entry['name']}:{entry['version']}", SHIPPED).bundle.path
        manifest = json.loads((bundle / "manifest.json").read_text())
        fp32, int8 = bundle / "model.onnx", bundle / "model.int8.onnx"
        pair = profiler.compare(int8, fp32, target, rounds, settings)
        ms_int8 = sorted(a.latency_ms.median for a, _ in pair.pairs)[len(pair.pairs) // 2]
        ms_fp32 = sorted(b.latency_ms.median for _, b in pair.pairs)[len(pair.pairs) // 2]
        acc = {k: v["test_accuracy"] for k, v in manifest["metrics"].items()}
        delta = 100 * (acc["model.int8.onnx"] - acc["model.onnx"])
        rows.append(
            f"| {entry['name']} | {manifest['params']:,} | {manifest['macs'] / 1e6:.2f} M "
            f"| {search_latency(manifest, run)} "
            f"| {100 * acc['model.onnx']:.2f} % | {100 * acc['model.int8.onnx']:.2f} % "
            f"| {delta:+.2f} | {ms_fp32:.3f} | {ms_int8:.3f} | {pair.ratio:.2f}× "
            f"({100 * pair.spread:.0f} %) | {fp32.stat().st_size // 1024} / "
            f"{int8.stat().st_size // 1024} KiB |"
        )
        print(rows[-1], flush=True)
    return rows


def search_latency(manifest: dict, run: Path | None) -> str:
    """The latency the search measured for this architecture (from the run's pareto.json)."""
    path = run / "pareto.json" if run else None
    if path is None or not path.is_file():
        return "?"
    arch_id = manifest["architecture"]["arch_id"]
    row = next((r for r in json.loads(path.read_text())["front"] if r["arch_id"] == arch_id), None)
    return f"{row['latency_ms']:.3f}" if row else "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a finished search run to take the front from")
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--version", default="1.0.0")
    parser.add_argument("--rounds", type=int, default=7, help="alternating INT8/FP32 pairs")
    parser.add_argument("--compare-only", action="store_true")
    parser.add_argument("--pick", action="append", default=[], metavar="SIZE=ARCH_ID",
                        help="ship this front model under this size name (repeatable); "
                        "default: the fastest, the most accurate and one between")  # fmt: skip
    parser.add_argument(
        "--no-train", action="store_true", help="export the run's trained weights as they are"
    )
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    if not args.compare_only:
        rebuild(args)
    rows = compare(args.rounds, args.run)
    load = os.getloadavg()[0]
    lines = [
        "# Prebuilt models: INT8 vs FP32 on x86-cpu",
        "",
        "The models `factory models` lists by default, searched, trained and exported by "
        "`bench/prebuilt.py` with the factory's own commands.",
        "",
        f"- command: `python bench/prebuilt.py {' '.join(sys.argv[1:])}`; models shipped by "
        "earlier runs of the script keep their rows (each manifest records the run and the "
        "training epochs it came from)",
        f"- machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load average {load:.1f} at the end; date {dt.date.today()}",
        "- accuracy: the whole Fashion-MNIST test split (10,000 images), from each manifest",
        f"- latency: batch 1, ONNX Runtime CPU, 1 thread; {args.rounds} alternating pairs "
        "(int8, fp32 / fp32, int8, ...) of 200 ms warm-up + ≥ 1 s; medians of the per-round "
        "medians; ratio = median of the per-pair ratios, spread = (max − min) / median",
        "",
        *rows,
        "",
        "`search ms` is the latency the search measured for the architecture (one short "
        "window, while other jobs shared the machine); small, medium and large name the "
        "points' places on that front. The fp32 column re-measures the exported files in "
        "this run; where the two disagree, the search's measurement was taken under load.",
        "",
    ]
    (DOCS / "prebuilt.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
