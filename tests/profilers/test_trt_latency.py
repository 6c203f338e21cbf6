"""TensorRT latency profiler: registration and its one-line refusal here, real timing on a GPU.

Tests marked `gpu` need an NVIDIA GPU with TensorRT and cuda-python; they are skipped (with
the builder's own reason) everywhere else.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from profilers.base import ProfileSettings
from profilers.registry import PROFILERS, get_profiler, profiler_class
from profilers.trt_engine import build_engine, trt_available
from profilers.trt_latency import TrtProfiler, profile_trt
from targets import get_target
from targets.errors import UserError

TRT_OK, TRT_WHY = trt_available()
needs_trt = pytest.mark.skipif(not TRT_OK, reason=TRT_WHY)
REPO = Path(__file__).resolve().parents[2]
FAST = ProfileSettings(warmup_ms=20, min_duration_ms=50, min_iters=10)


def tiny_onnx(dynamic_batch: bool = False) -> bytes:
    """Conv3x3(3->8) + ReLU in fp16 between two Casts: an fp16 model for TensorRT 10 (FP16
    flag) and for strongly typed TensorRT >= 11 alike."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float16), "w"),
        numpy_helper.from_array(rng.standard_normal(8).astype(np.float16), "b"),
    ]
    nodes = [
        helper.make_node("Cast", ["x"], ["xh"], to=TensorProto.FLOAT16),
        helper.make_node("Conv", ["xh", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["rh"]),
        helper.make_node("Cast", ["rh"], ["y"], to=TensorProto.FLOAT),
    ]
    batch = "N" if dynamic_batch else 1
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 8, 16, 16])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def qdq_onnx() -> bytes:
    """Quantize -> Dequantize on the input, int8 per-channel weights through Dequantize, then
    Conv + ReLU: an explicitly quantized (Q/DQ) int8 model, no calibrator needed."""
    rng = np.random.default_rng(0)
    w = rng.integers(-127, 128, (8, 3, 3, 3), dtype=np.int8)
    inits = [
        numpy_helper.from_array(np.float32(0.05), "x_scale"),
        numpy_helper.from_array(np.int8(0), "x_zero"),
        numpy_helper.from_array(w, "w_q"),
        numpy_helper.from_array(np.full(8, 0.01, np.float32), "w_scale"),
        numpy_helper.from_array(np.zeros(8, np.int8), "w_zero"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zero"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "x_scale", "x_zero"], ["xd"]),
        helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zero"], ["wd"], axis=0),
        helper.make_node("Conv", ["xd", "wd"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_qdq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 16, 16])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    return model.SerializeToString()


# ---- runs everywhere --------------------------------------------------------------------


def test_registered_under_tensorrt() -> None:
    assert profiler_class("tensorrt") is TrtProfiler
    assert PROFILERS.get("tensorrt") is TrtProfiler
    assert isinstance(get_profiler(get_target("cuda-gpu")), TrtProfiler)
    assert TrtProfiler.runtime == "tensorrt"


@pytest.mark.skipif(TRT_OK, reason="TensorRT and a GPU are available here")
def test_profile_without_tensorrt_says_why_in_one_line() -> None:
    with pytest.raises(UserError) as err:
        TrtProfiler().profile(tiny_onnx(), get_target("cuda-gpu"), settings=FAST)
    assert str(err.value) == TRT_WHY
    assert "\n" not in str(err.value)


def test_import_loads_neither_torch_nor_tensorrt() -> None:
    code = (
        "import sys, profilers.trt_latency, profilers.trt_engine; "
        "print(','.join(m for m in ('torch', 'tensorrt', 'cuda') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == ""


# ---- needs an NVIDIA GPU with TensorRT ---------------------------------------------------


@pytest.mark.gpu
@needs_trt
def test_profile_fp16_engine_with_cuda_events() -> None:
    import tensorrt as trt

    m = TrtProfiler().profile(tiny_onnx(), get_target("cuda-gpu"), settings=FAST)
    assert (m.runtime, m.provider, m.precision, m.how) == (
        "tensorrt",
        "tensorrt",
        "fp16",
        "measured",
    )
    assert m.runtime_version == trt.__version__
    assert m.input_shape == (1, 3, 16, 16)
    assert m.latency_ms.n >= FAST.min_iters and 0 < m.latency_ms.min <= m.latency_ms.median
    assert m.per_op_ms == {}


@pytest.mark.gpu
@needs_trt
def test_event_time_is_not_above_host_time() -> None:
    target = get_target("cuda-gpu")
    events = TrtProfiler(cuda_events=True).profile(tiny_onnx(), target, settings=FAST)
    wall = TrtProfiler(cuda_events=False).profile(tiny_onnx(), target, settings=FAST)
    # device time excludes the host's synchronisation, so it cannot be much larger
    assert events.latency_ms.median <= wall.latency_ms.median * 1.2 + 0.05


@pytest.mark.gpu
@needs_trt
def test_cuda_graph_profile() -> None:
    m = profile_trt(tiny_onnx(), get_target("cuda-gpu"), settings=FAST, cuda_graph=True)
    assert m.latency_ms.median > 0


@pytest.mark.gpu
@needs_trt
def test_per_layer_times_from_a_separate_detailed_run() -> None:
    settings = dataclasses.replace(FAST, per_op=True)
    m = TrtProfiler().profile(tiny_onnx(), get_target("cuda-gpu"), settings=settings)
    assert m.per_op_ms, "IProfiler reported no layers"
    assert all(ms >= 0 for ms in m.per_op_ms.values())
    assert sum(m.per_op_ms.values()) > 0


@pytest.mark.gpu
@needs_trt
def test_dynamic_batch_takes_the_settings_batch() -> None:
    settings = dataclasses.replace(FAST, batch=2)
    m = TrtProfiler().profile(tiny_onnx(dynamic_batch=True), get_target("cuda-gpu"), None, settings)
    assert m.input_shape == (2, 3, 16, 16)


@pytest.mark.gpu
@needs_trt
def test_prebuilt_engine_file(tmp_path: Path) -> None:
    path = tmp_path / "tiny.engine"
    path.write_bytes(build_engine(tiny_onnx(), precision="fp16").engine_bytes)
    m = TrtProfiler().profile(path, get_target("cuda-gpu"), settings=FAST)
    assert m.input_shape == (1, 3, 16, 16) and m.latency_ms.median > 0


@pytest.mark.gpu
@needs_trt
def test_int8_profile_from_a_qdq_model() -> None:
    target = dataclasses.replace(get_target("cuda-gpu"), precision="int8")
    m = TrtProfiler().profile(qdq_onnx(), target, settings=FAST)
    assert m.precision == "int8" and m.latency_ms.median > 0
