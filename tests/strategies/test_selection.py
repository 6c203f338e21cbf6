"""pNSGA-III and NSGA-III survival against pymoo's own NSGA-III survival, and the trap."""

from __future__ import annotations

import numpy as np
import pytest
from pymoo.algorithms.moo.nsga3 import ReferenceDirectionSurvival
from pymoo.core.population import Population
from pymoo.core.problem import Problem
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from factory.strategies.selection import (
    nsga3_select,
    pnsga3_select,
    reference_directions,
)


def pymoo_survivors(F: np.ndarray, n_survive: int, seed: int) -> set[int]:
    """What pymoo's NSGA-III keeps, called the way its GeneticAlgorithm calls it."""
    ref_dirs = reference_directions(F.shape[1], n_survive)
    kept = ReferenceDirectionSurvival(ref_dirs).do(
        Problem(n_var=1, n_obj=F.shape[1]),
        Population.new("F", F),
        n_survive=n_survive,
        random_state=np.random.default_rng(seed),
        return_indices=True,
    )
    return {int(i) for i in kept}


def random_F(seed: int) -> tuple[np.ndarray, int]:
    rng = np.random.default_rng(seed)
    n, m = int(rng.integers(8, 70)), int(rng.integers(2, 4))
    F = rng.random((n, m))
    if seed % 3 == 0:  # coarse values: ties and exact duplicates
        F = np.round(F, 1)
    return F, int(rng.integers(1, n))


@pytest.mark.parametrize("seed", range(40))
def test_pnsga3_with_f2_equal_f1_is_pymoo_nsga3(seed: int) -> None:
    F, n_survive = random_F(seed)
    expected = pymoo_survivors(F, n_survive, seed)
    got = pnsga3_select(F, F.copy(), n_survive, np.random.default_rng(seed))
    assert len(got) == len(set(got.tolist())) == n_survive
    assert set(got.tolist()) == expected
    plain = nsga3_select(F, n_survive, np.random.default_rng(seed))
    assert set(plain.tolist()) == expected


def test_equivalence_covers_multi_front_niching() -> None:
    """The cases above must include cuts after whole fronts were taken (non-trivial counts)."""
    cuts_after_fronts = 0
    for seed in range(40):
        F, n_survive = random_F(seed)
        fronts = NonDominatedSorting().do(F)
        sizes = np.cumsum([len(f) for f in fronts])
        k = int(np.searchsorted(sizes, n_survive))
        cuts_after_fronts += k > 0 and sizes[k] > n_survive
    assert cuts_after_fronts >= 10


def small_model_trap(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """20 small models, accurate now but saturated; 20 large ones, worse now, improving fast.

    Returns F1 = (-acc, macs), F2 = (-acc_speed, macs) and a mask of the large models.
    """
    rng = np.random.default_rng(seed)
    acc = np.concatenate([rng.uniform(0.80, 0.85, 20), rng.uniform(0.70, 0.78, 20)])
    speed = np.concatenate([rng.normal(0.0, 0.003, 20), rng.normal(0.05, 0.005, 20)])
    macs = np.concatenate([rng.uniform(5e6, 20e6, 20), rng.uniform(60e6, 120e6, 20)])
    large = np.arange(40) >= 20
    return np.column_stack([-acc, macs]), np.column_stack([-speed, macs]), large


@pytest.mark.parametrize("cut", ["niching", "random"])
def test_small_model_trap(cut: str) -> None:
    for seed in range(5):
        F1, F2, large = small_model_trap(seed)
        protected = pnsga3_select(F1, F2, 20, np.random.default_rng(seed), cut=cut)  # type: ignore[arg-type]
        plain = nsga3_select(F1, 20, np.random.default_rng(seed))
        assert large[plain].sum() == 0  # every large model is dominated in F1
        assert large[protected].sum() >= 3
        assert large[protected].sum() - large[plain].sum() >= 3


def test_stages_are_unions_of_fronts_taken_whole() -> None:
    # F1 front 0 = {0, 1}; F2 front 0 = {3}: stage 0 = {0, 1, 3}, taken whole before row 2.
    F1 = np.array([[0.0, 1.0], [1.0, 0.0], [0.5, 1.5], [2.0, 2.0], [3.0, 3.0]])
    F2 = np.array([[1.0, 1.0], [1.0, 1.0], [1.0, 1.0], [0.0, 0.0], [2.0, 2.0]])
    got = pnsga3_select(F1, F2, 3, np.random.default_rng(0))
    assert got.tolist() == [0, 1, 3]
    got = pnsga3_select(F1, F2, 4, np.random.default_rng(0))
    assert got.tolist() == [0, 1, 3, 2]


def test_random_cut_draws_only_from_the_overflowing_stage() -> None:
    F1, F2, _ = small_model_trap(1)
    fronts1, fronts2 = NonDominatedSorting().do(F1), NonDominatedSorting().do(F2)
    stage0 = set(fronts1[0].tolist()) | set(fronts2[0].tolist())
    stage1 = (set(fronts1[1].tolist()) | set(fronts2[1].tolist())) - stage0
    n_survive = len(stage0) + len(stage1) // 2
    draws = set()
    for seed in range(10):
        got = pnsga3_select(F1, F2, n_survive, np.random.default_rng(seed), cut="random")
        again = pnsga3_select(F1, F2, n_survive, np.random.default_rng(seed), cut="random")
        assert got.tolist() == again.tolist()
        assert len(set(got.tolist())) == n_survive
        assert stage0 <= set(got.tolist()) <= stage0 | stage1
        draws.add(tuple(sorted(got.tolist())))
    assert len(draws) > 1  # the cut really is random


def test_edge_sizes_and_bad_input() -> None:
    F = np.random.default_rng(0).random((6, 2))
    rng = np.random.default_rng(0)
    assert pnsga3_select(F, F, 6, rng).tolist() == list(range(6))
    assert pnsga3_select(F, F, 10, rng).tolist() == list(range(6))
    assert pnsga3_select(F, F, 0, rng).size == 0
    with pytest.raises(ValueError, match="rows"):
        pnsga3_select(F, F[:5], 3, rng)
    with pytest.raises(ValueError, match="cut"):
        pnsga3_select(F, F, 3, rng, cut="first")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="NaN"):
        pnsga3_select(np.full((3, 2), np.nan), F[:3], 2, rng)


def test_reference_directions_fit_the_survivors() -> None:
    assert reference_directions(2, 16).shape == (16, 2)
    assert reference_directions(3, 16).shape == (15, 3)  # Das-Dennis: 15 fit, 21 do not
    assert reference_directions(2, 1).shape == (2, 2)  # at least the corners
