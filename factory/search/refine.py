"""Filling the front's cost gaps after the last unit: cheaper one-decision neighbours.

Why: a search ends with a front of a handful of models and wide cost gaps between them,
often just where the network a user compares against sits (run `d6` in docs/search.md: no
front model between 0.15 and 0.29 ms, MobileNetV2@0.5 at 0.28 ms). The final shared weights
score a neighbour of a front model in seconds, without training, so a few evaluations of
neighbours that are cheaper than a front model, but not cheaper than the next cheaper one,
put models into those gaps. Members with wider gaps get more of the evaluations.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from factory.spaces.base import Genotype, SearchSpace

REFINE = "refine"  # the records' phase
CANDIDATES_PER_MEMBER = 32  # neighbours costed per front member (a MAC count: 0.1-0.2 s)


def quotas(gaps: Sequence[float], count: int) -> list[int]:
    """`count` evaluations split in proportion to log(gap) (largest remainders first);
    gaps are cost ratios >= 1 to the next cheaper member, and a ratio of 1 gets nothing."""
    weights = [math.log(g) if g > 1 else 0.0 for g in gaps]
    total = sum(weights)
    if count <= 0 or total <= 0:
        return [0] * len(gaps)
    exact = [count * w / total for w in weights]
    share = [int(e) for e in exact]
    by_remainder = sorted(range(len(gaps)), key=lambda i: exact[i] - share[i], reverse=True)
    for i in by_remainder[: count - sum(share)]:
        share[i] += 1
    return share


def neighbours(space: SearchSpace, g: Genotype) -> list[Genotype]:
    """Every genotype that differs from g in exactly one decision."""
    return [
        (*g[:d], option, *g[d + 1 :])
        for d, n in enumerate(space.choices())
        for option in range(n)
        if option != g[d]
    ]


def gap_neighbours(
    space: SearchSpace,
    front: Sequence[tuple[Genotype, float]],
    macs: Callable[[Genotype], float],
    seen: set[str],
    count: int,
    rng: np.random.Generator,
) -> list[Genotype]:
    """Up to `count` new genotypes for the front's gaps.

    `front`: (genotype, cost) of the front's members; `macs`: a genotype's MAC count, the
    proxy that places an unmeasured neighbour inside a gap; `seen`: arch ids already
    evaluated. Each member with a cheaper member below it gets its share of `count`, filled
    with neighbours whose MACs lie between the two members', spread evenly over that range.
    """
    members = sorted(front, key=lambda m: m[1])
    chosen: list[Genotype] = []
    taken = set(seen)
    gaps = [members[i][1] / max(members[i - 1][1], 1e-12) for i in range(1, len(members))]
    pairs = zip(members[1:], members[:-1], quotas(gaps, count), strict=True)
    for (g, _), (below, _), quota in pairs:
        if quota == 0:
            continue
        top, floor = macs(g), macs(below)
        pool = neighbours(space, g)
        picks = rng.permutation(len(pool))[:CANDIDATES_PER_MEMBER]
        inside: dict[str, tuple[float, Genotype]] = {}
        for i in picks:
            cand = pool[int(i)]
            key = space.arch_id(cand)
            if key in taken or key in inside:
                continue
            m = macs(cand)
            # MACs need not follow latency: below a member with fewer MACs than the member
            # under it, every cheaper neighbour is in the gap
            if (floor if floor < top else 0.0) <= m < top:
                inside[key] = (m, cand)
        ordered = sorted(inside.items(), key=lambda kv: kv[1][0])
        for k in np.linspace(0, len(ordered) - 1, min(quota, len(ordered))).round().astype(int):
            key, (_, cand) = ordered[int(k)]
            if key not in taken:
                taken.add(key)
                chosen.append(cand)
    return chosen
