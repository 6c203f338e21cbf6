"""The final front re-measured beside the objective, on real exported shufflenet models."""

from __future__ import annotations

import dataclasses
import functools
import json
import statistics
from pathlib import Path

import pytest

from factory.cli.report_cmd import front_notes
from factory.search.pareto import write_outputs
from factory.search.remeasure import FinalLatencies, FinalLatency, remeasure, skip_reason
from factory.spaces import get_space
from profilers.base import ProfileSettings
from targets import AgentRef, get_target
from tests.search.records import OBJECTIVES, records

FAST = ProfileSettings(warmup_ms=2, min_duration_ms=3, min_iters=3)


def test_front_and_references_get_final_latencies(tmp_path: Path) -> None:
    space = get_space("shufflenet")
    recs = records((0.80, 0.3), (0.85, 0.5))
    name, g = next(iter(space.manual().items()))
    ref = dataclasses.replace(recs[0], genotype=g, arch_id=space.arch_id(g), phase="reference")
    measure = functools.partial(
        remeasure, space, get_target("x86-cpu"), OBJECTIVES, rounds=3, settings=FAST
    )
    write_outputs(tmp_path, recs, OBJECTIVES, space.format, {name: ref}, remeasure=measure)
    doc = json.loads((tmp_path / "pareto.json").read_text())
    for row in [*doc["front"], doc["references"][name]]:
        assert row["latency_ms_final"] > 0 and row["latency_final_spread"] >= 0
    final = doc["latency_final"]
    assert final["rounds"] == 3 and final["models"] == 3 and "rotating" in final["how"]
    errors = [abs(r["latency_ms"] - r["latency_ms_final"]) / r["latency_ms_final"]
              for r in doc["front"]]  # fmt: skip
    assert doc["latency_error"] == pytest.approx(statistics.median(errors))
    assert "latency_ms_final" in (tmp_path / "pareto.csv").read_text().splitlines()[0]
    assert front_notes(doc)[0].startswith("latency objective vs final re-measurement: median")


def test_error_is_the_median_relative_difference_over_the_front() -> None:
    recs = records((0.8, 1.1), (0.8, 2.0), (0.8, 2.7))
    final = FinalLatencies(
        {
            r.arch_id: FinalLatency(ms, 0.0, (ms,))
            for r, ms in zip(recs, (1.0, 2.0, 3.0), strict=True)
        }
    )
    assert final.error(recs) == pytest.approx(0.1)  # errors 0.1, 0, 0.1


def test_skipped_without_latency_or_on_a_remote_target(tmp_path: Path) -> None:
    local = get_target("x86-cpu")
    remote = dataclasses.replace(local, agent=AgentRef("http://127.0.0.1:9"))
    assert skip_reason(local, ("accuracy", "macs")) == "latency is not an objective"
    assert "is remote" in (skip_reason(remote, OBJECTIVES) or "")
    assert skip_reason(local, OBJECTIVES) is None
    space = get_space("shufflenet")
    measure = functools.partial(remeasure, space, remote, OBJECTIVES)
    write_outputs(tmp_path, records((0.8, 0.3)), OBJECTIVES, space.format, remeasure=measure)
    doc = json.loads((tmp_path / "pareto.json").read_text())
    assert doc["latency_error"] is None and "is remote" in doc["latency_final"]["skipped"]
    assert "latency_ms_final" not in doc["front"][0]
    assert front_notes(doc) == [
        f"final latency re-measurement skipped: {doc['latency_final']['skipped']}"
    ]


def test_time_limit_stops_after_the_round_that_reaches_it() -> None:
    space = get_space("shufflenet")
    recs = records((0.80, 0.3), (0.85, 0.5))
    final = remeasure(
        space, get_target("x86-cpu"), OBJECTIVES, recs, {}, rounds=5, settings=FAST, budget_s=0
    )
    assert final.rounds == 1 and all(len(f.rounds_ms) == 1 for f in final.latencies.values())
