"""The Measurement record: statistics against numpy, JSON round trip, device info."""

from __future__ import annotations

import json

import numpy as np
import pytest

from profilers.device_info import device_info
from profilers.measurement import LatencyStats, Measurement


def _measurement(samples: list[float]) -> Measurement:
    return Measurement(
        target="x86-cpu",
        runtime="onnxruntime",
        runtime_version="1.2.3",
        provider="CPUExecutionProvider",
        precision="fp32",
        threads=1,
        input_shape=(1, 3, 224, 224),
        latency_ms=LatencyStats.from_samples(samples),
        warmup_ms=201.5,
        how="measured",
        device={"cpu": "test cpu", "cores_logical": 2},
        per_op_ms={"Conv": 1.25, "Relu": 0.5},
    )


@pytest.mark.parametrize("n", [1, 2, 7, 100, 1001])
def test_stats_match_numpy(n: int) -> None:
    samples = np.random.default_rng(n).lognormal(0.0, 0.3, size=n)
    s = LatencyStats.from_samples(samples.tolist())
    assert s.n == n
    assert s.min == pytest.approx(samples.min())
    assert s.mean == pytest.approx(samples.mean())
    assert s.std == pytest.approx(samples.std())  # population std, like numpy's default
    assert s.cv == pytest.approx(samples.std() / samples.mean())
    for field, q in (("median", 50), ("p90", 90), ("p95", 95), ("p99", 99)):
        assert getattr(s, field) == pytest.approx(np.percentile(samples, q)), field


def test_unstable_flag_follows_cv() -> None:
    assert not LatencyStats.from_samples([10.0, 10.1, 9.9, 10.0]).unstable
    assert LatencyStats.from_samples([10.0, 12.0, 8.0, 10.0]).unstable
    with pytest.raises(ValueError):
        LatencyStats.from_samples([])


def test_round_trip_through_json() -> None:
    m = _measurement([1.0, 1.5, 2.0, 1.2, 1.1])
    data = json.loads(json.dumps(m.to_dict()))
    assert data["unstable"] is m.unstable
    assert data["input_shape"] == [1, 3, 224, 224]
    back = Measurement.from_dict(data)
    assert back == m
    assert back.input_shape == (1, 3, 224, 224) and isinstance(back.latency_ms, LatencyStats)


def test_from_dict_rejects_unknown_how() -> None:
    data = _measurement([1.0, 2.0]).to_dict()
    data["how"] = "guessed"
    with pytest.raises(ValueError, match="how must be one of"):
        Measurement.from_dict(data)


def test_device_info_names_this_machine() -> None:
    info = device_info()
    assert info["cpu"] and info["python"] and info["cores_logical"] >= 1
    assert "onnxruntime" in info
    json.dumps(info)  # travels with every measurement
