"""The rescored front keeps what its scores cannot tell apart: a model is dropped only when
one costing no more scores clearly (one standard error of the difference) above it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from factory.cli.report_cmd import front_notes
from factory.run_report import write_report
from factory.search.pareto import RESCORE, ScoreError, pareto_front, write_outputs
from factory.spaces import get_space
from tests.search.records import OBJECTIVES, records

ERROR = ScoreError(val_images=5000)


def rescored(*points: tuple[float, float]):
    return [dataclasses.replace(r, phase=RESCORE) for r in records(*points)]


def test_margin_is_the_standard_error_of_a_difference() -> None:
    assert ERROR.margin(0.77, 0.77) == pytest.approx((2 * 0.77 * 0.23 / 5000) ** 0.5)
    assert ERROR.margin(0.77, 0.77) == pytest.approx(0.0084, abs=1e-4)
    assert ScoreError(500).margin(0.9, 0.8) == pytest.approx(((0.09 + 0.16) / 500) ** 0.5)
    assert "n = 5000" in ERROR.rule


def test_rescored_front_keeps_models_within_the_error_of_a_dominating_one() -> None:
    # 0: fast and best; 1: slower, 0.5 points lower (within 0.84): kept;
    # 2: slower, 2 points lower: dropped; 3: the slowest and the most accurate: on the front
    recs = rescored((0.770, 1.0), (0.765, 1.1), (0.750, 1.2), (0.780, 2.0))
    ids = [r.arch_id for r in recs]
    strict = pareto_front(recs, OBJECTIVES)
    assert [r.arch_id for r in strict] == [ids[0], ids[3]]
    front = pareto_front(recs, OBJECTIVES, error=ERROR)
    assert [r.arch_id for r in front] == [ids[0], ids[1], ids[3]]


def test_the_rule_names_the_images_it_was_scored_on() -> None:
    assert ERROR.rule.endswith("n = 5000 validation images")
    assert ScoreError(20000, spare=True).rule.endswith("n = 20000 held-out images")
    # a run's counts say which: more images than its validation set means spare ones too
    assert ScoreError.of(20000, 2500) == ScoreError(20000, spare=True)
    assert ScoreError.of(5000, 5000).kind == "validation"


def test_one_shot_scores_are_not_widened() -> None:
    recs = records((0.770, 1.0), (0.765, 1.1), (0.780, 2.0))
    assert pareto_front(recs, OBJECTIVES, error=ERROR) == pareto_front(recs, OBJECTIVES)


def test_equal_costs_still_need_a_clear_score_gap() -> None:
    # the same latency: 0.3 points apart is noise, 3 points is not
    recs = rescored((0.770, 1.0), (0.767, 1.0), (0.740, 1.0))
    kept = {r.arch_id for r in pareto_front(recs, OBJECTIVES, error=ERROR)}
    assert kept == {recs[0].arch_id, recs[1].arch_id}


def test_outputs_and_report_say_which_model_shadows_each(tmp_path: Path) -> None:
    recs = rescored((0.770, 1.0), (0.765, 1.1), (0.750, 1.2), (0.780, 2.0))
    ids = [r.arch_id for r in recs]
    space = get_space("shufflenet")
    front = write_outputs(tmp_path, recs, OBJECTIVES, space.format, error=ERROR)
    assert len(front) == 3
    doc = json.loads((tmp_path / "pareto.json").read_text())
    rows = {row["arch_id"]: row for row in doc["front"]}
    assert rows[ids[1]]["within_error_of"] == ids[0]
    assert "within_error_of" not in rows[ids[0]] and "within_error_of" not in rows[ids[3]]
    assert doc["score_error"] == ERROR.rule
    header = (tmp_path / "pareto.csv").read_text().splitlines()[0]
    assert header.endswith("within_error_of")
    note = [line for line in front_notes(doc) if line.startswith("~ 1 kept")]
    assert note and f"{ids[1]} of {ids[0]}" in note[0]
    page = write_report(tmp_path).read_text()  # report.md says how the front was scored
    assert "fine-tuned on its own" in page and "1 of them stay because" in page
    assert "shared supernet weights" not in page


def test_a_one_shot_front_says_its_scores_are_shared_weights(tmp_path: Path) -> None:
    write_outputs(tmp_path, records((0.77, 1.0)), OBJECTIVES, get_space("shufflenet").format)
    page = write_report(tmp_path).read_text()
    assert "with the shared supernet weights" in page and "fine-tuned" not in page


def test_without_error_nothing_is_marked(tmp_path: Path) -> None:
    recs = rescored((0.770, 1.0), (0.765, 1.1))
    write_outputs(tmp_path, recs, OBJECTIVES, get_space("shufflenet").format)
    doc = json.loads((tmp_path / "pareto.json").read_text())
    assert len(doc["front"]) == 1 and "score_error" not in doc
    assert not any(line.startswith("~") for line in front_notes(doc))


def test_a_front_recomputed_from_the_database_keeps_the_same_models(tmp_path: Path) -> None:
    # what `factory report` shows after a SIGKILL in the rescoring (refresh.py)
    from factory.search.config import SearchConfig
    from factory.search.refresh import current_front
    from factory.search.store import RunStore, save_config

    recs = rescored((0.770, 1.0), (0.765, 1.1), (0.750, 1.2), (0.780, 2.0))
    ids = [r.arch_id for r in recs]
    save_config(tmp_path, dataclasses.asdict(SearchConfig(space="shufflenet")))
    floor = {"num_classes": 10, "val_images": 5000}
    stale = {"objectives": list(OBJECTIVES), "evaluations": 0, "architectures": 0,
             "front": [], "references": {}, "floor": floor}  # fmt: skip
    (tmp_path / "pareto.json").write_text(json.dumps(stale))
    with RunStore(tmp_path) as store:
        store.add_many(recs)
    doc = current_front(tmp_path)
    assert "stale" in doc
    assert [row["arch_id"] for row in doc["front"]] == [ids[0], ids[1], ids[3]]
    assert doc["front"][1]["within_error_of"] == ids[0]
