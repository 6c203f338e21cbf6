"""The run's outputs: the rank-0 front over all records (JSON, CSV) and its plot."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from factory.strategies.base import Record, objective_matrix
from targets.atomic import write_atomic

UNITS = {"accuracy": "fraction", "latency_ms": "ms", "macs": "multiply-adds", "params": "count"}


def latest_per_arch(records: Sequence[Record]) -> list[Record]:
    """The most recent evaluation of each architecture (shared weights keep training, so the
    latest accuracy is the best-informed one)."""
    latest: dict[str, Record] = {}
    for r in records:
        latest[r.arch_id] = r
    return list(latest.values())


def pareto_front(records: Sequence[Record], objectives: Sequence[str]) -> list[Record]:
    """Non-dominated architectures, sorted by the first cost (then accuracy)."""
    candidates = latest_per_arch(records)
    if not candidates:
        return []
    F = objective_matrix(candidates, objectives)
    front = NonDominatedSorting().do(F, only_non_dominated_front=True)
    chosen = [candidates[int(i)] for i in front]
    key = objectives[1] if len(objectives) > 1 else objectives[0]
    return sorted(chosen, key=lambda r: (r.value(key), -r.value("accuracy")))


def _row(r: Record, space_format) -> dict[str, Any]:
    return {
        "arch_id": r.arch_id,
        "genotype": space_format(r.genotype),
        **r.objectives,
        "phase": r.phase,
        "step": r.step,
        "latency_how": r.extra.get("latency_how"),
    }


def write_outputs(
    run_dir: Path,
    records: Sequence[Record],
    objectives: Sequence[str],
    space_format,
    references: Mapping[str, Record] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> list[Record]:
    """pareto.json, pareto.csv and pareto.png in run_dir; returns the front."""
    front = pareto_front(records, objectives)
    refs = {name: _row(r, space_format) for name, r in (references or {}).items()}
    doc = {
        "objectives": list(objectives),
        "units": {o: UNITS[o] for o in objectives},
        "evaluations": len(records),
        "architectures": len(latest_per_arch(records)),
        "front": [_row(r, space_format) for r in front],
        "references": refs,
        **dict(meta or {}),
    }
    write_atomic(run_dir / "pareto.json", (json.dumps(doc, indent=2) + "\n").encode())
    buf = io.StringIO()
    fields = ["arch_id", "genotype", *objectives, "phase", "step", "latency_how"]
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    for row in doc["front"]:
        writer.writerow(row)
    write_atomic(run_dir / "pareto.csv", buf.getvalue().encode())
    if len(objectives) > 1:
        plot_front(run_dir / "pareto.png", records, front, objectives[1], refs)
    return front


def plot_front(
    path: Path,
    records: Sequence[Record],
    front: Sequence[Record],
    cost: str,
    references: Mapping[str, Mapping[str, Any]],
) -> None:
    """Accuracy vs one cost: every architecture in grey, the front in colour, manual
    architectures marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    everyone = latest_per_arch(records)
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    ax.scatter(
        [r.value(cost) for r in everyone],
        [100 * r.value("accuracy") for r in everyone],
        s=12,
        c="0.75",
        label=f"evaluated ({len(everyone)})",
    )
    xs = np.array([r.value(cost) for r in front])
    ys = np.array([100 * r.value("accuracy") for r in front])
    ax.plot(xs, ys, "o-", c="tab:blue", ms=5, drawstyle="steps-post", label="Pareto front")
    for name, row in references.items():
        ax.scatter([row[cost]], [100 * row["accuracy"]], marker="*", s=120, zorder=5)
        ax.annotate(
            name,
            (row[cost], 100 * row["accuracy"]),
            fontsize=8,
            xytext=(4, 4),
            textcoords="offset points",
        )
    ax.set_xlabel(f"{cost} ({UNITS[cost]})")
    ax.set_ylabel("validation accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    write_atomic(path, buf.getvalue())
