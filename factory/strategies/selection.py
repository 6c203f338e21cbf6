"""Survival selection for continuous evolution: pNSGA-III (CARS) and plain NSGA-III.

Non-dominated sorting, reference directions, normalisation and niching are pymoo's; this
module only decides which individuals form each stage. pNSGA-III sorts the candidates twice,
by F1 = (-acc, cost) and by a second objective matrix F2 (CARS: (-acc_speed, cost)), and
takes stage k = front k of F1 ∪ front k of F2 as long as whole stages fit. The second
sorting protects models whose accuracy is still growing fast (large models, which learn
slower) from being evicted by small models that converged early: the small-model trap.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pymoo.algorithms.moo.nsga3 import (
    HyperplaneNormalization,
    ReferenceDirectionSurvival,
    associate_to_niches,
    calc_niche_count,
    niching,
)
from pymoo.core.population import Population
from pymoo.core.problem import Problem
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting
from pymoo.util.ref_dirs import get_reference_directions
from pymoo.util.reference_direction import get_partition_closest_to_points

Cut = Literal["niching", "random"]
CUTS: tuple[str, ...] = ("niching", "random")


def reference_directions(n_objectives: int, n_points: int) -> np.ndarray:
    """Das-Dennis directions: the most that do not exceed `n_points` (at least the corners).

    NSGA-III wants about one direction per survivor; shape (n_dirs, n_objectives).
    """
    n_partitions = max(1, get_partition_closest_to_points(max(n_points, 1), n_objectives))
    return get_reference_directions("das-dennis", n_objectives, n_partitions=n_partitions)


def nsga3_select(
    F: np.ndarray,
    n_survive: int,
    rng: np.random.Generator,
    ref_dirs: np.ndarray | None = None,
) -> np.ndarray:
    """Indices of the `n_survive` rows of F (objectives to minimise) kept by NSGA-III.

    This is pymoo's `ReferenceDirectionSurvival` itself, fresh per call so that its
    normalisation carries no state from earlier generations.
    """
    F = _as_matrix(F)
    if n_survive <= 0 or len(F) == 0:
        return np.empty(0, dtype=int)
    if ref_dirs is None:
        ref_dirs = reference_directions(F.shape[1], n_survive)
    problem = Problem(n_var=1, n_obj=F.shape[1])
    survival = ReferenceDirectionSurvival(ref_dirs)
    kept = survival.do(
        problem,
        Population.new("F", F),
        n_survive=n_survive,
        random_state=rng,
        return_indices=True,
    )
    return np.asarray(kept, dtype=int)


def pnsga3_select(
    F1: np.ndarray,
    F2: np.ndarray,
    n_survive: int,
    rng: np.random.Generator,
    ref_dirs: np.ndarray | None = None,
    cut: Cut = "niching",
) -> np.ndarray:
    """Indices of the `n_survive` rows kept by pNSGA-III, in the order they were taken.

    F1 and F2 have one row per candidate (objectives to minimise). Whole stages are taken
    while they fit; the overflowing stage is cut by NSGA-III niching in F1 space, with the
    individuals already taken counted in the niche counts (`cut="niching"`), or uniformly at
    random (`cut="random"`, the official CARS code). With F2 == F1 this is NSGA-III.
    """
    F1, F2 = _as_matrix(F1), _as_matrix(F2)
    if len(F1) != len(F2):
        raise ValueError(f"F1 has {len(F1)} rows but F2 has {len(F2)}")
    if cut not in CUTS:
        raise ValueError(f"unknown cut {cut!r}; valid: {', '.join(CUTS)}")
    n = len(F1)
    if n_survive >= n:
        return np.arange(n)
    if n_survive <= 0:
        return np.empty(0, dtype=int)
    sorting = NonDominatedSorting()
    fronts1, fronts2 = sorting.do(F1), sorting.do(F2)
    taken: list[int] = []
    is_taken = np.zeros(n, dtype=bool)
    for k in range(max(len(fronts1), len(fronts2))):
        stage = _stage(fronts1, fronts2, k, is_taken)
        room = n_survive - len(taken)
        if len(stage) > room:
            if cut == "random":
                chosen = np.sort(rng.choice(stage, size=room, replace=False))
            else:
                chosen = _niching_cut(
                    F1, fronts1[0], np.asarray(taken, dtype=int), stage, room, rng, ref_dirs
                )
            taken.extend(int(i) for i in chosen)
            break
        taken.extend(int(i) for i in stage)
        is_taken[stage] = True
        if len(taken) == n_survive:
            break
    return np.asarray(taken, dtype=int)


def _stage(
    fronts1: list[np.ndarray], fronts2: list[np.ndarray], k: int, is_taken: np.ndarray
) -> np.ndarray:
    """Front k of both sortings, less what earlier stages took, in ascending index order."""
    parts = [f[k] for f in (fronts1, fronts2) if k < len(f)]
    members = np.unique(np.concatenate(parts)).astype(int)
    return members[~is_taken[members]]


def _niching_cut(
    F1: np.ndarray,
    first_front: np.ndarray,
    taken: np.ndarray,
    stage: np.ndarray,
    n_remaining: int,
    rng: np.random.Generator,
    ref_dirs: np.ndarray | None,
) -> np.ndarray:
    """`n_remaining` members of `stage` chosen by NSGA-III niching in F1 space.

    Normalisation is the one NSGA-III does (ideal point, hyperplane intercepts from the
    first front of F1, over all candidates); niche counts start from the taken individuals.
    """
    if ref_dirs is None:
        ref_dirs = reference_directions(F1.shape[1], len(taken) + n_remaining)
    norm = HyperplaneNormalization(F1.shape[1])
    norm.update(F1, nds=first_front)
    niche, dist, _ = associate_to_niches(F1, ref_dirs, norm.ideal_point, norm.nadir_point)
    niche_count = calc_niche_count(len(ref_dirs), niche[taken])
    picked = niching(stage, n_remaining, niche_count, niche[stage], dist[stage], random_state=rng)
    return stage[np.asarray(picked, dtype=int)]


def _as_matrix(F: np.ndarray) -> np.ndarray:
    """F as a 2-D float array (one row per candidate); NaN objectives are refused."""
    F = np.asarray(F, dtype=float)
    if F.ndim == 1:
        F = F[:, None]
    if F.ndim != 2:
        raise ValueError(f"objective matrix must be 2-D, got shape {F.shape}")
    if np.isnan(F).any():
        raise ValueError("objective matrix contains NaN")
    return F
