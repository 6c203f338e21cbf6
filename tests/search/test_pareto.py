"""The front's hygiene: chance-level candidates never reach it, and the run says so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from factory.cli.report_cmd import front_notes
from factory.search.pareto import ChanceFloor, pareto_front, write_outputs
from factory.spaces import get_space
from tests.search.records import OBJECTIVES, records


def test_floor_is_three_standard_errors_or_five_points_above_chance() -> None:
    assert ChanceFloor(10, 128).threshold == pytest.approx(0.1 + 3 * (0.09 / 128) ** 0.5)
    assert ChanceFloor(10, 500).threshold == pytest.approx(0.15)  # 3 se = 0.040 < 0.05
    assert ChanceFloor(2, 100).threshold == pytest.approx(0.65)
    assert "K = 10 classes" in ChanceFloor(10, 500).rule and "n = 500" in ChanceFloor(10, 500).rule


def test_chance_level_candidate_never_reaches_the_front(tmp_path: Path) -> None:
    # the two fastest are below the floor (0.15 on 10 classes, 500 images): without it they
    # sit on the front by latency alone
    recs = records((0.11, 0.1), (0.149, 0.15), (0.80, 0.3), (0.85, 0.5), (0.70, 0.6))
    floor = ChanceFloor(10, 500)
    assert {recs[0].arch_id, recs[1].arch_id} <= {r.arch_id for r in pareto_front(recs, OBJECTIVES)}
    front = pareto_front(recs, OBJECTIVES, floor)
    assert [r.arch_id for r in front] == [recs[2].arch_id, recs[3].arch_id]
    space = get_space("shufflenet")
    written = write_outputs(tmp_path, recs, OBJECTIVES, space.format, floor=floor)
    assert written == front
    doc = json.loads((tmp_path / "pareto.json").read_text())
    assert [row["arch_id"] for row in doc["front"]] == [r.arch_id for r in front]
    assert doc["dropped"] == {
        "count": 2,
        "from_front": 2,
        "rule": floor.rule,
        "threshold": pytest.approx(0.15),
    }
    assert front_notes(doc)[0].startswith("dropped 2 architectures scoring below 15.0 %")


def test_nothing_dropped_says_nothing(tmp_path: Path) -> None:
    recs = records((0.80, 0.3), (0.85, 0.5))
    space = get_space("shufflenet")
    write_outputs(tmp_path, recs, OBJECTIVES, space.format, floor=ChanceFloor(10, 500))
    doc = json.loads((tmp_path / "pareto.json").read_text())
    assert doc["dropped"]["count"] == 0 and front_notes(doc) == []
