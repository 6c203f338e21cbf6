"""Challengers: cheaper one-decision neighbours of the hand-designed network a user would
otherwise pick, rescored beside the search's own best candidates.

Why: the question a user asks of a front is whether it holds a model faster than, and as
accurate as, that network (MobileNetV2@0.5 on x86-cpu, issue #7). A search can end with no
candidate near it: in default run `r6` the closest front model was 0.42 points below it
after rescoring. Yet the space holds cheaper variants of it that train to its accuracy or
better (three of four trimmed MobileNetV2@0.5 variants, docs/trimmed_mobilenet.md). The
search rescores a few of its cheaper neighbours, so the same score that decides the front
judges them and every run makes that comparison. They are not screened one-shot first:
one-shot scores disfavour a stage made shorter (the next layers' shared weights were
trained on the full stage's output), the very variants that trained best alone (run `r8`
screened four such and rescored none of them).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from factory.spaces.base import Genotype, SearchSpace

PER_DECISION = 2  # random other options of each decision costed (a MAC count: ~0.1 s)
# a challenger saves at least this share of the MACs: in run `r8` a neighbour with 3 % fewer
# MACs timed level with MobileNetV2@0.5 (0.1428 vs 0.1426 ms), no model a timing shows faster
MIN_SAVING = 0.05


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
