"""Refinement after the last unit: cheaper one-decision neighbours placed in the front's
cost gaps, scored with the final weights, recorded, and replayed on resume."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from factory.search.config import SearchConfig
from factory.search.refine import REFINE, gap_neighbours, neighbours, quotas
from factory.search.runner import run_search
from factory.search.store import RunStore
from factory.spaces import get_space
from profilers.flops import count_costs
from targets.errors import UserError
from tests.search.signal_progress import assert_ctrl_c_in_phase_resumes
from tests.tiny_run import FMNIST, TINY


def test_quotas_follow_the_log_of_the_gap() -> None:
    assert quotas([4.0, 2.0, 2.0], 8) == [4, 2, 2]
    assert quotas([1.0, 3.0], 5) == [0, 5]  # a member level with the one below gets nothing
    assert quotas([1.0, 1.0], 5) == [0, 0]
    assert sum(quotas([1.5, 2.7, 9.0, 1.1], 12)) == 12


def test_neighbours_differ_in_exactly_one_decision() -> None:
    space = get_space("mobilenet")
    g = space.manual()["mobilenet_v2@0.5"]
    found = neighbours(space, g)
    assert len(found) == sum(c - 1 for c in space.choices())
    assert all(sum(a != b for a, b in zip(n, g, strict=True)) == 1 for n in found)


def test_gap_neighbours_lie_inside_the_gaps() -> None:
    space = get_space("mobilenet", options={"min_width": "0.5"})
    shape = (1, *space.spec.shape)

    def macs(g: tuple[int, ...]) -> float:
        return count_costs(space.build(g), shape).macs

    small, large = space.manual()["mobilenet_v2@0.5"], space.manual()["mobilenet_v2@1"]
    front = [(small, macs(small)), (large, macs(large))]
    seen = {space.arch_id(small), space.arch_id(large)}
    chosen = gap_neighbours(space, front, macs, seen, 4, np.random.default_rng(0))
    assert 1 <= len(chosen) <= 4
    assert len({space.arch_id(g) for g in chosen}) == len(chosen)
    for g in chosen:
        assert macs(small) <= macs(g) < macs(large)
        assert sum(a != b for a, b in zip(g, large, strict=True)) == 1
        assert space.arch_id(g) not in seen
    # one member: no gap, nothing to refine
    assert gap_neighbours(space, front[:1], macs, seen, 4, np.random.default_rng(0)) == []


def test_refine_must_not_be_negative() -> None:
    from factory.search.resolve import resolve

    with pytest.raises(UserError, match="--refine"):
        resolve(SearchConfig(**{**TINY, "refine": -1}))


def _refining_config() -> SearchConfig:
    """A tiny random search whose front has members to refine, on any CPU and thread count.

    Why batch 32: at TINY's batch 64 the 48 warm-up steps left candidates at 19-31 % on 128
    validation images, a hair above the chance floor (18 %), and a thread count's rounding
    decided whether the front kept two members; 96 steps give 24-39 % whatever the threads.
    """
    settings = {"samples_per_unit": 6, "warmup_epochs": 12}
    return SearchConfig(
        **{
            **TINY,
            "strategy": "random",
            "units": 1,
            "strategy_config": settings,
            "refine": 3,
            "batch_size": 32,
        }
    )


@pytest.mark.skipif(not FMNIST.exists(), reason="needs dataset-fashion-mnist")
def test_a_run_refines_its_front_with_new_architectures(tmp_path: Path) -> None:
    config = _refining_config()
    result = run_search(config, tmp_path / "run", quiet=True)
    with RunStore(tmp_path / "run") as store:
        records = store.records()
    refined = [r for r in records if r.phase == REFINE]
    assert 1 <= len(refined) <= 3
    before = {r.arch_id for r in records if r.phase != REFINE}
    assert not {r.arch_id for r in refined} & before  # only new architectures
    assert all(r.step == result.total_units for r in refined)
    # the same run without refinement records exactly the records before refinement
    plain = run_search(dataclasses.replace(config, refine=0), tmp_path / "plain", quiet=True)
    with RunStore(plain.run_dir) as store:
        assert {r.arch_id for r in store.records()} == before


@pytest.mark.skipif(not FMNIST.exists(), reason="needs dataset-fashion-mnist")
def test_ctrl_c_in_refinement_resumes_to_the_same_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _refining_config()
    run_search(config, tmp_path / "reference", quiet=True)
    with RunStore(tmp_path / "reference") as store:
        refined = sum(r.phase == REFINE for r in store.records())
    assert refined, "the tiny run's front had no gap to refine: nothing to interrupt"
    assert_ctrl_c_in_phase_resumes(config, REFINE, tmp_path, monkeypatch)
