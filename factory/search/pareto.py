"""The run's outputs: the rank-0 front over all records (JSON, CSV) and its plot."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from factory.strategies.base import Record, objective_matrix
from targets.atomic import write_atomic

if TYPE_CHECKING:
    from factory.search.remeasure import FinalLatencies

RESCORE = "rescore"  # the phase of the final rescoring's records (rescore.py)
UNITS = {"accuracy": "fraction", "latency_ms": "ms", "macs": "multiply-adds", "params": "count"}


def latest_per_arch(records: Sequence[Record]) -> list[Record]:
    """The most recent evaluation of each architecture (shared weights keep training, so the
    latest accuracy is the best-informed one)."""
    latest: dict[str, Record] = {}
    for r in records:
        latest[r.arch_id] = r
    return list(latest.values())


def comparable(records: Sequence[Record]) -> list[Record]:
    """The records whose accuracies compare with each other: the rescored ones once a run
    has any (a fine-tuned score is several points above a one-shot score of the same
    network, rescore.py), else all."""
    rescored = [r for r in records if r.phase == RESCORE]
    return rescored or list(records)


@dataclass(frozen=True)
class ChanceFloor:
    """The accuracy a candidate must reach to be told apart from guessing.

    Guessing scores p = 1/K on K classes; measured on n validation images its accuracy has
    the binomial standard error sqrt(p (1 - p) / n). A candidate must beat p by 3 standard
    errors (one-sided, a guesser passes about once in 740 tries) and by at least 5 points,
    since on large validation sets 3 standard errors shrink below anything useful. With 10
    classes: 0.180 on 128 images, 0.150 on 500, 0.150 on 5,000.
    """

    num_classes: int
    val_images: int
    sigmas: ClassVar[float] = 3.0
    min_margin: ClassVar[float] = 0.05

    @property
    def chance(self) -> float:
        return 1.0 / self.num_classes

    @property
    def threshold(self) -> float:
        p = self.chance
        return p + max(self.min_margin, self.sigmas * math.sqrt(p * (1 - p) / self.val_images))

    @property
    def rule(self) -> str:
        return (
            f"accuracy >= 1/K + max({self.min_margin:g}, {self.sigmas:g} sqrt(p (1 - p) / n)) "
            f"with K = {self.num_classes} classes, p = 1/K, n = {self.val_images} validation images"
        )

    def keeps(self, r: Record) -> bool:
        return r.value("accuracy") >= self.threshold


@dataclass(frozen=True)
class ScoreError:
    """How far apart two rescored accuracies must be before the front may drop the worse.

    Two candidates scored on the same n held-out images differ by sampling error alone
    with standard error sqrt((a (1 - a) + b (1 - b)) / n): 0.84 points at 77 % on 5,000
    images, more than the gaps between the networks a rescored front chooses among (0.42
    on 20,000, `SearchConfig.rescore_images`). So the rescored front keeps a model unless
    one at most as costly scores more than `sigmas` such errors above it: it drops only what
    the scores show to be worse (a cheaper variant of MobileNetV2@0.5 that trained above it
    had been dropped for 0.46 points, docs/search.md).
    """

    val_images: int
    spare: bool = False  # training images the search left out were scored on too
    sigmas: ClassVar[float] = 1.0

    @classmethod
    def of(cls, images: int, val_images: int) -> ScoreError:
        """The error of scores on `images`: more than the run's `val_images` means the
        rescoring added training images the search left out (`--rescore-images`)."""
        return cls(images, images > val_images)

    @property
    def kind(self) -> str:
        """What the scored images were, in the words reports use."""
        return "held-out" if self.spare else "validation"

    @property
    def rule(self) -> str:
        return (
            f"kept unless a model costing no more scores {self.sigmas:g} "
            f"sqrt((a (1 - a) + b (1 - b)) / n) higher, n = {self.val_images} {self.kind} images"
        )

    def margin(self, a: float, b: float) -> float:
        return self.sigmas * math.sqrt((a * (1 - a) + b * (1 - b)) / self.val_images)

    def beats(self, a: Record, b: Record, costs: Sequence[str]) -> bool:
        """Whether `a` costs at most what `b` does and scores clearly above it."""
        x, y = a.value("accuracy"), b.value("accuracy")
        return all(a.value(c) <= b.value(c) for c in costs) and x - y > self.margin(x, y)


def pareto_front(
    records: Sequence[Record],
    objectives: Sequence[str],
    floor: ChanceFloor | None = None,
    error: ScoreError | None = None,
) -> list[Record]:
    """Non-dominated architectures, sorted by the first cost (then accuracy); with a floor,
    only among those whose accuracy is clearly above chance. With `error`, a rescored front
    also keeps the models no other beats by more than the score's error; one-shot scores
    are not widened so (their supernet's bias, not sampling, sets their error)."""
    candidates = latest_per_arch(comparable(records))
    if floor is not None:
        candidates = [r for r in candidates if floor.keeps(r)]
    if not candidates:
        return []
    if error is not None and candidates[0].phase == RESCORE:
        costs = [o for o in objectives if o != "accuracy"]
        chosen = [b for b in candidates if not any(error.beats(a, b, costs) for a in candidates)]
    else:
        F = objective_matrix(candidates, objectives)
        front = NonDominatedSorting().do(F, only_non_dominated_front=True)
        chosen = [candidates[int(i)] for i in front]
    key = objectives[1] if len(objectives) > 1 else objectives[0]
    return sorted(chosen, key=lambda r: (r.value(key), -r.value("accuracy")))


def within_error(front: Sequence[Record], objectives: Sequence[str]) -> dict[str, str]:
    """The front's members kept only by the score's error, each with the member that
    dominates it (the most accurate such): what a report marks as "within error of"."""
    F = objective_matrix(front, objectives)
    out: dict[str, str] = {}
    for j, b in enumerate(front):
        better = [i for i in range(len(front)) if (F[i] <= F[j]).all() and (F[i] < F[j]).any()]
        if better:
            best = max((front[i] for i in better), key=lambda r: r.value("accuracy"))
            out[b.arch_id] = best.arch_id
    return out


def dropped(
    records: Sequence[Record], objectives: Sequence[str], floor: ChanceFloor
) -> dict[str, Any]:
    """What the floor kept out: architectures below it, and how many of them would have been
    on the front without it."""
    below = [r for r in latest_per_arch(records) if not floor.keeps(r)]
    return {
        "count": len(below),
        "from_front": sum(not floor.keeps(r) for r in pareto_front(records, objectives)),
        "rule": floor.rule,
        "threshold": floor.threshold,
    }


def _row(
    r: Record,
    space_format,
    final: FinalLatencies | None = None,
    shadow: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "arch_id": r.arch_id,
        "genotype": space_format(r.genotype),
        **r.objectives,
        "phase": r.phase,
        "step": r.step,
        "latency_how": r.extra.get("latency_how"),
        **(final.row_fields(r.arch_id) if final is not None else {}),
        **({"within_error_of": shadow[r.arch_id]} if shadow and r.arch_id in shadow else {}),
    }


def front_rows(
    front: Sequence[Record], space_format, objectives: Sequence[str]
) -> list[dict[str, Any]]:
    """The rows pareto.json lists for `front` (no final re-measurement)."""
    shadow = within_error(front, objectives)
    return [_row(r, space_format, shadow=shadow) for r in front]


Remeasure = Callable[[list[Record], Mapping[str, Record]], "FinalLatencies"]


def write_outputs(
    run_dir: Path,
    records: Sequence[Record],
    objectives: Sequence[str],
    space_format,
    references: Mapping[str, Record] | None = None,
    meta: Mapping[str, Any] | None = None,
    floor: ChanceFloor | None = None,
    remeasure: Remeasure | None = None,
    error: ScoreError | None = None,
) -> list[Record]:
    """pareto.json, pareto.csv and pareto.png in run_dir; returns the front.

    `floor` keeps chance-level candidates off the front (pareto.json's "dropped" says how
    many); `error` keeps rescored models within the score's error of a better one (each
    row then says which, "within_error_of"); `remeasure(front, references)` adds careful
    final latencies beside the objective.
    """
    references = references or {}
    front = pareto_front(records, objectives, floor, error)
    shadow = within_error(front, objectives)
    final = remeasure(front, references) if remeasure is not None else None
    doc = {
        "objectives": list(objectives),
        "units": {o: UNITS[o] for o in objectives},
        "evaluations": len(records),
        "architectures": len(latest_per_arch(records)),
        "front": [_row(r, space_format, final, shadow) for r in front],
        "references": {name: _row(r, space_format, final) for name, r in references.items()},
        **({"dropped": dropped(records, objectives, floor)} if floor is not None else {}),
        **({"score_error": error.rule} if error is not None and shadow else {}),
        **(final.summary(front) if final is not None else {}),
        **dict(meta or {}),
    }
    write_atomic(run_dir / "pareto.json", (json.dumps(doc, indent=2) + "\n").encode())
    buf = io.StringIO()
    fields = ["arch_id", "genotype", *objectives, "phase", "step", "latency_how"]
    if final is not None and final.latencies:
        fields.append("latency_ms_final")
    if shadow:
        fields.append("within_error_of")
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    for row in doc["front"]:
        writer.writerow(row)
    write_atomic(run_dir / "pareto.csv", buf.getvalue().encode())
    if len(objectives) > 1:
        strict = [r for r in front if r.arch_id not in shadow]
        near = [r for r in front if r.arch_id in shadow]
        plot_front(run_dir / "pareto.png", records, strict, objectives[1], doc["references"], near)
    return front


def plot_front(
    path: Path,
    records: Sequence[Record],
    front: Sequence[Record],
    cost: str,
    references: Mapping[str, Mapping[str, Any]],
    near: Sequence[Record] = (),
) -> None:
    """Accuracy vs one cost: every architecture in grey, the front in colour (those kept
    within the score's error of it as open circles), manual architectures marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    everyone = latest_per_arch(comparable(records))  # one scale: one-shot or rescored
    rescored = any(r.phase == RESCORE for r in everyone)
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    ax.scatter(
        [r.value(cost) for r in everyone],
        [100 * r.value("accuracy") for r in everyone],
        s=12,
        c="0.75",
        label=f"{'rescored' if rescored else 'evaluated'} ({len(everyone)})",
    )
    xs = np.array([r.value(cost) for r in front])
    ys = np.array([100 * r.value("accuracy") for r in front])
    ax.plot(xs, ys, "o-", c="tab:blue", ms=5, drawstyle="steps-post", label="Pareto front")
    if near:
        ax.scatter(
            [r.value(cost) for r in near],
            [100 * r.value("accuracy") for r in near],
            s=30,
            facecolors="none",
            edgecolors="tab:blue",
            label=f"within the score's error ({len(near)})",
        )
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
