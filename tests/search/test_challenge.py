"""Challengers: cheaper one-decision neighbours of the user's yardstick network are screened
one-shot and the best rescored beside the search's own candidates; a Ctrl-C while they are
screened resumes to the same records."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from factory.cli.report_cmd import front_notes
from factory.search.challenge import (
    CHALLENGE,
    MIN_SAVING,
    SCREEN,
    best_challengers,
    cheaper_neighbours,
)
from factory.search.config import SearchConfig
from factory.search.pareto import ChanceFloor
from factory.search.rescore import RESCORE
from factory.search.resolve import resolve
from factory.search.runner import run_search
from factory.search.store import RunStore
from factory.spaces import get_space
from factory.spaces.base import Genotype, SearchSpace
from profilers.flops import count_costs
from targets.errors import UserError
from tests.search.signal_progress import assert_ctrl_c_in_phase_resumes
from tests.tiny_run import FMNIST, TINY


def _macs(space: SearchSpace) -> Callable[[Genotype], float]:
    return lambda g: count_costs(space.build(g), (1, *space.spec.shape)).macs


def test_cheaper_neighbours_differ_in_one_decision_and_cost_less() -> None:
    space = get_space("mobilenet", options={"min_width": "0.5"})
    base = space.manual()["mobilenet_v2@0.5"]
    macs = _macs(space)
    picks = cheaper_neighbours(space, base, macs, 6, np.random.default_rng(0))
    assert len(picks) == 6 and len(set(picks)) == 6
    for g in picks:
        assert sum(a != b for a, b in zip(g, base, strict=True)) == 1
        assert macs(g) <= (1 - MIN_SAVING) * macs(base)  # a saving a timing can show
    costs = [macs(g) for g in picks]
    assert costs == sorted(costs)  # the cheapest first, spread over the cheaper range
    assert costs[0] < costs[-1]
    # every decision has its chance: the depth of a stage (decisions 1-5) among them
    assert any(g[1:6] != base[1:6] for g in picks)
    # the same generator state gives the same picks (a resumed run screens the same)
    assert picks == cheaper_neighbours(space, base, macs, 6, np.random.default_rng(0))
    # the smallest network has no cheaper neighbour
    smallest = space.extremes()[1]
    assert cheaper_neighbours(space, smallest, macs, 6, np.random.default_rng(0)) == []


def test_best_challengers_are_the_most_accurate_screened_above_chance() -> None:
    from tests.search.records import records

    space = get_space("shufflenet")
    recs = records((0.70, 1.0), (0.80, 0.9), (0.12, 0.1), (0.90, 0.5))
    floor = ChanceFloor(num_classes=10, val_images=5000)
    screened = [r.genotype for r in recs[:3]]  # the fourth was not screened
    best = best_challengers(space, screened, recs, floor, 2)
    assert [r.arch_id for r in best] == [recs[1].arch_id, recs[0].arch_id]
    assert [r.arch_id for r in best_challengers(space, screened, recs, floor, 5)] == [
        recs[1].arch_id,
        recs[0].arch_id,
    ]  # the chance-level one (0.12) never qualifies
    # the latest evaluation of an architecture counts
    again = dataclasses.replace(recs[0], objectives={**recs[0].objectives, "accuracy": 0.85})
    assert best_challengers(space, screened, [*recs, again], floor, 1)[0].arch_id == recs[0].arch_id


def test_the_default_challenge_is_the_spaces_yardstick() -> None:
    mobilenet = dict(TINY, space="mobilenet")
    assert resolve(SearchConfig(**mobilenet)).challenge == ()  # TINY rescores nothing
    assert resolve(SearchConfig(**{**mobilenet, "rescore": 2})).challenge == ("mobilenet_v2@0.5",)
    # a space configured without MobileNetV2@0.5 has no default challenge
    narrow = {**mobilenet, "rescore": 2, "space_options": {"min_width": "0.75"}}
    assert resolve(SearchConfig(**narrow)).challenge == ()
    assert resolve(SearchConfig(**{**TINY, "rescore": 2})).challenge == ()  # shufflenet: none
    given = {**TINY, "rescore": 2, "challenge": ("shufflenet_g3@0.5", "shufflenet_g3@0.5")}
    assert resolve(SearchConfig(**given)).challenge == ("shufflenet_g3@0.5",)
    with pytest.raises(UserError, match=r"--challenge mobilenet_v2@0\.5: no manual architecture"):
        resolve(SearchConfig(**{**TINY, "rescore": 2, "challenge": ("mobilenet_v2@0.5",)}))
    with pytest.raises(UserError, match="--challengers must"):
        resolve(SearchConfig(**{**TINY, "challengers": -1}))
    # saved and loaded with the run
    config = resolve(SearchConfig(**given))
    assert SearchConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


@pytest.mark.skipif(not FMNIST.exists(), reason="needs dataset-fashion-mnist")
def test_challengers_are_screened_and_the_best_rescored_and_ctrl_c_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = SearchConfig(
        **{**TINY, "strategy": "random", "units": 1,
           "strategy_config": {"samples_per_unit": 3, "warmup_epochs": 8},
           "rescore": 1, "rescore_steps": 4, "challenge": ("shufflenet_g3@0.5",),
           "challengers": 2}
    )  # fmt: skip
    run_search(config, tmp_path / "reference", quiet=True)
    with RunStore(tmp_path / "reference") as store:
        recs = store.records()
    space = get_space("shufflenet")
    base = space.manual()["shufflenet_g3@0.5"]
    screened = [r for r in recs if r.phase == CHALLENGE]
    assert 0 < len(screened) <= SCREEN
    macs = _macs(space)
    for r in screened:
        assert sum(a != b for a, b in zip(r.genotype, base, strict=True)) == 1
        assert macs(r.genotype) < macs(base)
    rescored = {r.arch_id for r in recs if r.phase == RESCORE}
    floor = ChanceFloor(num_classes=10, val_images=128)
    best = best_challengers(space, [r.genotype for r in screened], recs, floor, 2)
    assert best and {r.arch_id for r in best} <= rescored
    assert len(rescored) <= 1 + 2  # the pool's one and the challengers
    meta = json.loads((tmp_path / "reference" / "pareto.json").read_text())["rescore"]
    assert meta["challenge"] == ["shufflenet_g3@0.5"] and meta["challengers"] == 2
    assert meta["screened"] == len(screened)
    doc = json.loads((tmp_path / "reference" / "pareto.json").read_text())
    said = [line for line in front_notes(doc) if line.startswith("challenged")]
    assert said == [
        f"challenged shufflenet_g3@0.5: {len(screened)} of its cheaper one-decision neighbours "
        "screened one-shot, the best 2 rescored with the candidates"
    ]

    assert_ctrl_c_in_phase_resumes(config, CHALLENGE, tmp_path, monkeypatch)
