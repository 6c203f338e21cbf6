"""The latency objective's modes on real exported candidates of the shufflenet space."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from factory.search.costs import LATENCY_MODES, CostModel
from factory.spaces import get_space
from profilers.base import ProfileSettings
from profilers.paired import PairedSettings
from targets import AgentRef, get_target
from targets.errors import UserError

FAST_ROBUST = PairedSettings(
    pairs=2, warmup_ms=5, window=ProfileSettings(warmup_ms=0, min_duration_ms=2, min_iters=3)
)
FAST_MEASURE = ProfileSettings(warmup_ms=5, min_duration_ms=5, min_iters=3)


def _model(mode: str, target: str = "x86-cpu") -> CostModel:
    space = get_space("shufflenet")
    return CostModel(
        space, get_target(target), ("latency_ms", "macs"), mode, FAST_MEASURE, FAST_ROBUST
    )


def test_robust_mode_times_against_the_space_reference() -> None:
    costs = _model("robust")
    g = costs.space.sample(np.random.default_rng(0))
    values, how = costs.costs(g)
    assert values["latency_ms"] > 0 and values["macs"] > 0 and how == "measured-paired"
    assert costs.costs(g) == (values, how)  # cached: measured once per architecture
    described = costs.describe_latency()
    assert described is not None
    assert described["mode"] == "robust" and described["pairs"] == 2
    assert described["reference"] == "shufflenet_g3@0.5"  # the cheapest manual architecture
    assert described["reference_ms"] > 0


def test_auto_is_robust_locally_and_measure_keeps_one_window() -> None:
    assert _model("auto").describe_latency()["mode"] == "robust"  # type: ignore[index]
    measure = _model("measure")
    values, how = measure.costs(measure.space.sample(np.random.default_rng(1)))
    assert values["latency_ms"] > 0 and how == "measured"
    assert measure.describe_latency() == {"mode": "measure", "target": "x86-cpu", "window_ms": 5}


def test_modes_are_checked() -> None:
    assert LATENCY_MODES == ("auto", "measure", "robust", "table")
    with pytest.raises(UserError, match="latency mode must be one of auto, measure, robust"):
        _model("fast")
    space = get_space("shufflenet")
    remote = dataclasses.replace(get_target("x86-cpu"), agent=AgentRef("http://127.0.0.1:9"))
    with pytest.raises(UserError, match="is remote: use --latency measure or table"):
        CostModel(space, remote, ("latency_ms",), "robust")
    no_latency = CostModel(space, get_target("x86-cpu"), ("macs",), "robust")
    assert no_latency.describe_latency() is None
