"""The final rescoring: the best candidates and the manual architectures, each fine-tuned
briefly on its own from the final shared weights, decide the front.

Why: after a CPU-sized supernet training, one-shot scores order architectures barely better
than chance (Kendall tau 0.07-0.30 against training alone over 16 mobilenet
architectures), so the front was picked by noise among models within a point of each
other. A short fine-tune of each path (`EvalSettings.finetune_steps`) ranked them at tau
0.76 in a default run, above the 0.32 at which two standalone trainings agree with each
other (docs/ranking_mobilenet.md). It costs seconds per candidate, so only the best
one-shot candidates get it: the search narrows, the rescoring decides.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from factory.search.pareto import RESCORE, ChanceFloor, latest_per_arch
from factory.strategies.base import Record, objective_matrix

__all__ = ["RESCORE", "rescore_pool"]


def rescore_pool(
    records: Sequence[Record], objectives: Sequence[str], floor: ChanceFloor, count: int
) -> list[Record]:
    """Up to `count` candidates by one-shot score: whole non-dominated layers, the front
    first; from a layer that does not fit, its most accurate members."""
    candidates = [r for r in latest_per_arch(r for r in records if r.phase != RESCORE)
                  if floor.keeps(r)]  # fmt: skip
    if not candidates or count <= 0:
        return []
    layers = NonDominatedSorting().do(objective_matrix(candidates, objectives))
    chosen: list[Record] = []
    for layer in layers:
        members = sorted((candidates[int(i)] for i in np.atleast_1d(layer)),
                         key=lambda r: (-r.value("accuracy"), r.arch_id))  # fmt: skip
        chosen += members[: count - len(chosen)]
        if len(chosen) >= count:
            break
    return chosen
