"""Paired timing against a reference and rotating rounds, on real ORT sessions of tiny nets."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from exporters.onnx_export import export_onnx
from profilers.base import ProfileSettings, relative_spread
from profilers.ort_latency import OrtProfiler
from profilers.paired import PairedSettings, PairedTimer, time_in_rounds
from targets import get_target
from targets.errors import UserError

WINDOW = ProfileSettings(warmup_ms=0, min_duration_ms=2, min_iters=3)
FAST = PairedSettings(pairs=3, warmup_ms=5, window=WINDOW)


def _onnx(width: int) -> bytes:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(width, width, 3, padding=1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )
    return export_onnx(net, (1, 1, 28, 28)).data


@pytest.fixture(scope="module")
def small() -> bytes:
    return _onnx(4)


@pytest.fixture(scope="module")
def large() -> bytes:
    return _onnx(64)


class Recording(OrtProfiler):
    """The real ORT profiler, noting which model each timed window belongs to (by size)."""

    def __init__(self) -> None:
        self.windows: list[int] = []

    def time_runs(self, state, settings):
        if settings.min_iters > 1:  # a timed window, not a warm-up
            self.windows.append(len(state.model))
        return super().time_runs(state, settings)


def test_paired_timer_alternates_and_ranks(small, large) -> None:
    cpu = get_target("x86-cpu")
    profiler = Recording()
    with PairedTimer(profiler, small, cpu, (1, 1, 28, 28), FAST) as timer:
        assert timer.reference_ms > 0 and profiler.windows == [len(small)] * 6  # 2 x pairs
        profiler.windows.clear()
        big_ms = timer.latency_ms(large)
        big, ref = len(large), len(small)
        assert profiler.windows == [big, ref, ref, big, big, ref]  # the order alternates
        same_ms = timer.latency_ms(small)
    assert big_ms > 2 * same_ms > 0  # ~250x the MACs: slower even on a loaded machine


def test_rounds_rotate_and_stop_at_the_deadline(small, large) -> None:
    cpu = get_target("x86-cpu")
    profiler = Recording()
    models = [small, large, _onnx(8)]
    timed = time_in_rounds(profiler, models, cpu, 3, WINDOW)
    sizes = [len(m) for m in models]
    assert profiler.windows == sizes + sizes[1:] + sizes[:1] + sizes[2:] + sizes[:2]
    assert [len(ms) for ms in timed] == [3, 3, 3]
    assert all(m.latency_ms.median > 0 for ms in timed for m in ms)
    stopped = time_in_rounds(profiler, models, cpu, 5, WINDOW, deadline=lambda: True)
    assert [len(ms) for ms in stopped] == [1, 1, 1]
    with pytest.raises(UserError, match=">= 1 round"):
        time_in_rounds(profiler, [], cpu, 3, WINDOW)
    with pytest.raises(UserError, match="pairs must be >= 1"):
        PairedSettings(pairs=0)


def test_relative_spread() -> None:
    assert relative_spread([1.0, 2.0, 4.0]) == pytest.approx(1.5)
    assert relative_spread([3.0]) == 0.0
