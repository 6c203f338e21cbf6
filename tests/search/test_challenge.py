"""Challengers: cheaper one-decision neighbours of the user's yardstick network are rescored
beside the search's own candidates; a resumed run rescores the same ones."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from factory.cli.report_cmd import front_notes
from factory.search.challenge import MIN_SAVING, cheaper_neighbours
from factory.search.config import SearchConfig
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
def test_challengers_are_rescored_and_a_resumed_run_rescores_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = SearchConfig(
        **{**TINY, "strategy": "random", "units": 1,
           "strategy_config": {"samples_per_unit": 3, "warmup_epochs": 8},
           "rescore": 1, "rescore_steps": 4, "challenge": ("shufflenet_g1",),
           "challengers": 2}
    )  # fmt: skip
    run_search(config, tmp_path / "reference", quiet=True)
    with RunStore(tmp_path / "reference") as store:
        recs = store.records()
    space = get_space("shufflenet")
    base = space.manual()["shufflenet_g1"]
    macs = _macs(space)
    rescored = [r for r in recs if r.phase == RESCORE]
    one_shot = {r.arch_id for r in recs if r.phase != RESCORE}
    challengers = [r for r in rescored if r.arch_id not in one_shot]
    assert len(rescored) == 3 and len(challengers) == 2  # the pool's one and two neighbours
    for r in challengers:
        assert sum(a != b for a, b in zip(r.genotype, base, strict=True)) == 1
        assert macs(r.genotype) <= (1 - MIN_SAVING) * macs(base)
    doc = json.loads((tmp_path / "reference" / "pareto.json").read_text())
    assert doc["rescore"]["challenge"] == ["shufflenet_g1"]
    assert doc["rescore"]["challengers"] == 2 and doc["rescore"]["candidates"] == 3
    said = [line for line in front_notes(doc) if line.startswith("challenged")]
    assert said == [
        "challenged shufflenet_g1: up to 2 cheaper one-decision neighbours of each "
        "rescored with the candidates"
    ]
    # interrupted at the first rescored candidate, the resumed run rescores the same ones
    assert_ctrl_c_in_phase_resumes(config, RESCORE, tmp_path, monkeypatch)
