"""Challengers: cheaper one-decision neighbours of the hand-designed network a user would
otherwise pick, screened one-shot and the best rescored beside the search's own best.

Why: the question a user asks of a front is whether it holds a model faster than, and as
accurate as, that network (MobileNetV2@0.5 on x86-cpu, issue #7). A search can end with no
candidate near it: in default run `r6` the closest front model was 0.42 points below it
after rescoring. Yet the space holds cheaper variants of it that train to its accuracy or
better (three of four trimmed MobileNetV2@0.5 variants, docs/trimmed_mobilenet.md). The
search scores a few of its cheaper neighbours and lets the same rescoring that decides the
front judge the best of them, so every run makes that comparison.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from factory.search.pareto import ChanceFloor, latest_per_arch
from factory.spaces.base import Genotype, SearchSpace
from factory.strategies.base import Record

CHALLENGE = "challenge"  # the records' phase of the one-shot screening
SCREEN = 8  # cheaper neighbours scored one-shot per challenged network
PER_DECISION = 2  # random other options of each decision costed (a MAC count: ~0.1 s)
# a challenger saves at least this share of the MACs: a saving of 1 % is no model a paired
# timing can show faster (medians of 21 pairs move by about 2 %, docs/trimmed_mobilenet.md)
MIN_SAVING = 0.03


def cheaper_neighbours(
    space: SearchSpace,
    g: Genotype,
    macs: Callable[[Genotype], float],
    count: int,
    rng: np.random.Generator,
) -> list[Genotype]:
    """Up to `count` one-decision neighbours of g with at least `MIN_SAVING` fewer MACs,
    spread evenly over their MAC range, the cheapest first. Drawn from up to `PER_DECISION`
    random other options of every decision, so a stage's depth gets its chance beside the
    many layer choices (MobileNetV2@0.5 with a stage two layers shorter trained to 0.21
    points above it, docs/trimmed_mobilenet.md), at a few dozen MAC counts, not hundreds."""
    top = macs(g)
    drawn = [
        (*g[:d], int(option), *g[d + 1 :])
        for d, n in enumerate(space.choices())
        for option in rng.permutation([o for o in range(n) if o != g[d]])[:PER_DECISION]
    ]
    cheaper = sorted(((macs(c), c) for c in drawn), key=lambda mc: mc[0])
    cheaper = [mc for mc in cheaper if mc[0] <= (1 - MIN_SAVING) * top]
    if not cheaper or count <= 0:
        return []
    picks = np.unique(np.linspace(0, len(cheaper) - 1, min(count, len(cheaper))).round())
    return [cheaper[int(k)][1] for k in picks]


def best_challengers(
    space: SearchSpace,
    screened: Sequence[Genotype],
    records: Sequence[Record],
    floor: ChanceFloor,
    count: int,
) -> list[Record]:
    """The `count` most accurate of the `screened` genotypes by their one-shot records (ties
    by arch id, so a resumed run picks the same); those at chance never qualify."""
    ids = {space.arch_id(g) for g in screened}
    scored = [r for r in latest_per_arch(records) if r.arch_id in ids and floor.keeps(r)]
    scored.sort(key=lambda r: (-r.value("accuracy"), r.arch_id))
    return scored[: max(count, 0)]
