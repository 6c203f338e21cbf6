"""The ONNX Runtime profiler, on real sessions of a tiny exported convnet."""

from __future__ import annotations

import dataclasses

import onnxruntime as ort
import pytest
import torch
from torch import nn

from exporters.onnx_export import export_onnx
from profilers.base import ProfileSettings
from profilers.ort_latency import OrtProfiler, per_op_ms, profile_onnx, session_options
from profilers.registry import get_profiler
from targets import get_target
from targets.errors import UserError

FAST = ProfileSettings(warmup_ms=20, min_duration_ms=50, min_iters=20)


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 10),
    )


@pytest.fixture(scope="module")
def onnx_bytes() -> bytes:
    return export_onnx(_net(), (1, 1, 28, 28)).data


@pytest.fixture(scope="module")
def dynamic_onnx() -> bytes:
    return export_onnx(_net(), (1, 1, 28, 28), dynamic_batch=True).data


@pytest.fixture
def cpu():
    return get_target("x86-cpu")


class CountingProfiler(OrtProfiler):
    """The real ORT profiler, counting every inference it runs."""

    runs = 0

    def _run_once(self, state):
        self.runs += 1
        return super()._run_once(state)


def test_stats_invariants_and_record(onnx_bytes, cpu) -> None:
    settings = ProfileSettings(warmup_ms=20, min_duration_ms=60, min_iters=25)
    m = profile_onnx(onnx_bytes, cpu, settings=settings)
    s = m.latency_ms
    assert 0 < s.min <= s.median <= s.p90 <= s.p95 <= s.p99
    assert s.min <= s.mean and s.std >= 0 and s.cv == pytest.approx(s.std / s.mean)
    assert s.n >= 25
    assert s.mean * s.n >= 60 * (1 - 1e-9)  # summed timed runs reach min_duration_ms
    assert m.how == "measured" and m.runtime == "onnxruntime"
    assert m.runtime_version == ort.__version__
    assert m.provider == "CPUExecutionProvider" and m.threads == cpu.threads == 1
    assert m.input_shape == (1, 1, 28, 28) and m.precision == "fp32"
    assert m.device["onnxruntime"] == ort.__version__ and m.per_op_ms == {}


def test_warmup_is_honoured_and_not_counted(onnx_bytes, cpu) -> None:
    profiler = CountingProfiler()
    m = profiler.profile(
        onnx_bytes, cpu, settings=ProfileSettings(warmup_ms=150, min_iters=5, min_duration_ms=0)
    )
    assert m.warmup_ms >= 150
    assert m.latency_ms.n == 5
    assert profiler.runs > m.latency_ms.n + 10  # 150 ms of a ~0.05 ms model ran many times


def test_max_iters_stops_before_min_duration(onnx_bytes, cpu) -> None:
    settings = ProfileSettings(warmup_ms=0, min_duration_ms=60_000, min_iters=3, max_iters=12)
    assert profile_onnx(onnx_bytes, cpu, settings=settings).latency_ms.n == 12


def test_threads_come_from_the_target(onnx_bytes, cpu) -> None:
    two = dataclasses.replace(cpu, threads=2)
    options = session_options(two)
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (2, 1)
    assert options.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert profile_onnx(onnx_bytes, two, settings=FAST).threads == 2


def test_per_op_profile_groups_by_op_type(onnx_bytes, cpu) -> None:
    m = profile_onnx(onnx_bytes, cpu, settings=dataclasses.replace(FAST, per_op=True))
    assert "Conv" in m.per_op_ms
    assert all(ms > 0 for ms in m.per_op_ms.values())
    # kernel time per run cannot exceed the slowest end-to-end run by much
    assert sum(m.per_op_ms.values()) < 5 * m.latency_ms.p99 + 0.5


def test_per_op_parser_skips_warm_runs() -> None:
    def node(ts: int, op: str, dur: int) -> dict:
        return {
            "cat": "Node",
            "name": f"n_{op}_kernel_time",
            "ts": ts,
            "dur": dur,
            "args": {"op_name": op},
        }

    events = [
        {"cat": "Session", "name": "model_run", "ts": 0, "dur": 90},
        node(1, "Conv", 5000),  # first run: one-off cost, skipped
        {"cat": "Session", "name": "model_run", "ts": 100, "dur": 90},
        node(101, "Conv", 300),
        node(150, "Relu", 100),
        node(160, "Relu", 100),
        {
            "cat": "Node",
            "name": "n_Conv_fence_before",
            "ts": 170,
            "dur": 999,
            "args": {"op_name": "Conv"},
        },
        {"cat": "Session", "name": "model_run", "ts": 200, "dur": 90},
        node(201, "Conv", 500),
    ]
    assert per_op_ms(events, skip_runs=1) == {"Conv": 0.4, "Relu": 0.1}


def test_missing_provider_is_a_one_line_user_error(onnx_bytes, cpu) -> None:
    gpu = dataclasses.replace(cpu, execution_provider="CUDAExecutionProvider")
    with pytest.raises(UserError) as info:
        profile_onnx(onnx_bytes, gpu, settings=FAST)
    message = str(info.value)
    assert "CUDAExecutionProvider" in message and "not available" in message
    assert "\n" not in message


@pytest.mark.parametrize("make", [lambda b: b"not an onnx model", lambda b: b[: len(b) // 2]])
def test_corrupt_model_is_a_user_error(onnx_bytes, cpu, make) -> None:
    with pytest.raises(UserError, match="cannot load the ONNX model") as info:
        profile_onnx(make(onnx_bytes), cpu, settings=FAST)
    assert "\n" not in str(info.value)


def test_missing_or_empty_model_is_a_user_error(tmp_path, cpu) -> None:
    with pytest.raises(UserError, match="not found"):
        profile_onnx(tmp_path / "absent.onnx", cpu)
    with pytest.raises(UserError, match="empty"):
        profile_onnx(b"", cpu)


def test_model_from_path_and_str(onnx_bytes, cpu, tmp_path) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(onnx_bytes)
    assert profile_onnx(path, cpu, settings=FAST).latency_ms.n >= 20
    assert profile_onnx(str(path), cpu, settings=FAST).provider == "CPUExecutionProvider"


def test_input_shape_resolution(dynamic_onnx, onnx_bytes, cpu) -> None:
    wide = dataclasses.replace(cpu, input_shape=(3, 1, 28, 28))
    assert profile_onnx(dynamic_onnx, wide, settings=FAST).input_shape == (3, 1, 28, 28)
    batch5 = dataclasses.replace(FAST, batch=5)
    assert profile_onnx(dynamic_onnx, cpu, settings=batch5).input_shape == (5, 1, 28, 28)
    assert profile_onnx(dynamic_onnx, cpu, (2, 1, 28, 28), FAST).input_shape == (2, 1, 28, 28)
    with pytest.raises(UserError, match="does not fit"):
        profile_onnx(onnx_bytes, cpu, (1, 1, 32, 32), FAST)
    with pytest.raises(UserError, match="rank"):
        profile_onnx(onnx_bytes, cpu, (1, 28, 28), FAST)


def test_registry_picks_by_runtime(cpu) -> None:
    assert isinstance(get_profiler(cpu), OrtProfiler)
    with pytest.raises(UserError, match="unknown profiler runtime 'tvm'"):
        get_profiler(dataclasses.replace(cpu, runtime="tvm"))


def test_bad_settings_are_user_errors() -> None:
    with pytest.raises(UserError):
        ProfileSettings(min_iters=0)
    with pytest.raises(UserError):
        ProfileSettings(min_iters=10, max_iters=5)
    with pytest.raises(UserError):
        ProfileSettings(batch=0)


@pytest.mark.filterwarnings("ignore:Specified provider")
def test_silent_fallback_is_caught(onnx_bytes, cpu, monkeypatch) -> None:
    """Get past the availability check: ORT itself then falls back to CPU, quietly."""
    real = ort.get_available_providers()
    monkeypatch.setattr(ort, "get_available_providers", lambda: [*real, "CUDAExecutionProvider"])
    gpu = dataclasses.replace(cpu, execution_provider="CUDAExecutionProvider")
    with pytest.raises(UserError, match="fell back to CPUExecutionProvider"):
        profile_onnx(onnx_bytes, gpu, settings=FAST)


def test_paired_comparison_alternates_and_ranks(onnx_bytes, cpu) -> None:
    torch.manual_seed(0)
    big = nn.Sequential(nn.Conv2d(1, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1))
    big_bytes = export_onnx(big, (1, 1, 28, 28)).data
    order: list[int] = []

    class Recording(OrtProfiler):
        def profile(self, model, target, input_shape=None, settings=None):
            order.append(len(model))
            return super().profile(model, target, input_shape, settings)

    result = Recording().compare(onnx_bytes, big_bytes, cpu, rounds=3, settings=FAST)
    small, large = len(onnx_bytes), len(big_bytes)
    assert order == [small, large, large, small, small, large]
    assert len(result.ratios) == 3 and result.spread >= 0
    assert result.ratio < 0.5  # ~70x fewer MACs: robustly faster even on a loaded machine
    assert result.unstable == any(a.unstable or b.unstable for a, b in result.pairs)
