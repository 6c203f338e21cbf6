"""TensorRT engine builder: what it says without a GPU, and real builds where there is one.

Tests marked `gpu` need an NVIDIA GPU with TensorRT and cuda-python; they are skipped (with
the builder's own reason) everywhere else.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from profilers.trt_engine import (
    NO_TENSORRT,
    build_engine,
    timing_cache_path,
    trt_available,
    trt_major,
)
from targets.atomic import write_atomic
from targets.errors import UserError
from targets.target import cache_dir

TRT_OK, TRT_WHY = trt_available()
needs_trt = pytest.mark.skipif(not TRT_OK, reason=TRT_WHY)
REPO = Path(__file__).resolve().parents[2]
SHAPE = (1, 3, 16, 16)


def tiny_onnx(fp16: bool = False, dynamic_batch: bool = False) -> bytes:
    """Conv3x3(3->8) + ReLU + global pool + Gemm(8->10); fp16: the body runs in half
    precision between two Casts, as a strongly typed (TensorRT >= 11) model must."""
    rng = np.random.default_rng(0)
    wtype = np.float16 if fp16 else np.float32
    inits = [
        numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(wtype), "w"),
        numpy_helper.from_array(rng.standard_normal(8).astype(wtype), "b"),
        numpy_helper.from_array(rng.standard_normal((8, 10)).astype(wtype), "fc_w"),
        numpy_helper.from_array(rng.standard_normal(10).astype(wtype), "fc_b"),
    ]
    first, last = ("xh", "yh") if fp16 else ("x", "y")
    nodes = [
        helper.make_node("Conv", [first, "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "fc_w", "fc_b"], [last]),
    ]
    if fp16:
        nodes.insert(0, helper.make_node("Cast", ["x"], ["xh"], to=TensorProto.FLOAT16))
        nodes.append(helper.make_node("Cast", ["yh"], ["y"], to=TensorProto.FLOAT))
    batch = "N" if dynamic_batch else 1
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def qdq_onnx(tmp_path: Path) -> bytes:
    """The fp32 tiny model quantized by ONNX Runtime (QDQ, symmetric int8, per channel).
    Biases stay float: TensorRT rejects DequantizeLinear of int32."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            rng = np.random.default_rng(1)
            self.batches = iter([{"x": rng.standard_normal(SHAPE, np.float32)} for _ in range(8)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    src, dst = tmp_path / "fp32.onnx", tmp_path / "int8.onnx"
    src.write_bytes(tiny_onnx())
    quantize_static(
        str(src),
        str(dst),
        Reader(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
        op_types_to_quantize=["Conv"],  # per-channel Gemm weights would need axis care
        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False},
    )
    return dst.read_bytes()


# ---- runs everywhere --------------------------------------------------------------------


def test_trt_available_gives_a_one_line_reason() -> None:
    ok, reason = trt_available()
    assert isinstance(ok, bool)
    assert reason and "\n" not in reason
    if importlib.util.find_spec("tensorrt") is None:
        assert (ok, reason) == (False, NO_TENSORRT)


@pytest.mark.skipif(TRT_OK, reason="TensorRT and a GPU are available here")
def test_build_engine_without_tensorrt_says_why_in_one_line() -> None:
    with pytest.raises(UserError) as err:
        build_engine(tiny_onnx(), precision="fp16")
    assert str(err.value) == TRT_WHY
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("precision", ["bf16", "FP16", ""])
def test_unknown_precision_is_refused_before_touching_tensorrt(precision: str) -> None:
    with pytest.raises(UserError, match="precision must be one of fp32, fp16, int8, auto"):
        build_engine(tiny_onnx(), precision=precision)


@pytest.mark.parametrize("workspace_mb", [0, -5, 1.5])
def test_bad_workspace_is_refused(workspace_mb: object) -> None:
    with pytest.raises(UserError, match="workspace_mb"):
        build_engine(tiny_onnx(), workspace_mb=workspace_mb)  # type: ignore[arg-type]


def test_timing_cache_path_is_per_gpu_and_version() -> None:
    path = timing_cache_path("NVIDIA H100 80GB HBM3", "10.3.0")
    assert path == cache_dir() / "trt-timing" / "NVIDIA-H100-80GB-HBM3-10.3.0.cache"
    assert timing_cache_path("Orin", "10.3.0") != path
    assert timing_cache_path("NVIDIA H100 80GB HBM3", "11.4.0") != path
    assert timing_cache_path("a/b: c", "10.3.0").parent == path.parent  # no path injection


def test_atomic_write_replaces_the_whole_file_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "x.cache"
    write_atomic(path, b"first version, longer")
    write_atomic(path, b"second")
    assert path.read_bytes() == b"second"
    with pytest.raises(TypeError):
        write_atomic(path, "not bytes")  # type: ignore[arg-type]
    assert path.read_bytes() == b"second"  # a failed write keeps the old file
    assert [p.name for p in path.parent.iterdir()] == ["x.cache"]


# ---- needs an NVIDIA GPU with TensorRT ---------------------------------------------------


@pytest.mark.gpu
@needs_trt
def test_fp16_engine_builds_and_deserializes() -> None:
    import tensorrt as trt

    result = build_engine(tiny_onnx(fp16=True), precision="fp16")
    assert result.precision == "fp16"
    assert result.trt_version == trt.__version__
    assert result.build_s > 0 and result.device_name
    engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(
        result.engine_bytes
    )
    assert engine is not None and engine.num_io_tensors == 2


@pytest.mark.gpu
@needs_trt
def test_timing_cache_is_written_then_reused() -> None:
    first = build_engine(tiny_onnx(fp16=True), precision="fp16")
    path = timing_cache_path(first.device_name, first.trt_version)
    assert path.is_file() and path.stat().st_size > 0
    saved = path.read_bytes()
    build_engine(tiny_onnx(fp16=True), precision="fp16")
    assert path.stat().st_size >= len(saved)  # loaded and extended, never truncated
    assert list(path.parent.glob("*.tmp")) == []


@pytest.mark.gpu
@needs_trt
def test_corrupt_timing_cache_is_replaced_by_a_valid_one(tmp_path: Path) -> None:
    cache = tmp_path / "my.cache"
    cache.write_bytes(b"not a timing cache")
    result = build_engine(tiny_onnx(fp16=True), precision="fp16", timing_cache=cache)
    assert result.engine_bytes
    assert cache.read_bytes() != b"not a timing cache"


@pytest.mark.gpu
@needs_trt
def test_int8_from_a_qdq_model(tmp_path: Path) -> None:
    result = build_engine(qdq_onnx(tmp_path), precision="int8")
    assert result.precision == "int8"


@pytest.mark.gpu
@needs_trt
def test_int8_without_qdq_nodes_is_refused() -> None:
    with pytest.raises(UserError, match="Q/DQ"):
        build_engine(tiny_onnx(), precision="int8")


@pytest.mark.gpu
@needs_trt
def test_dynamic_batch_needs_a_shape() -> None:
    model = tiny_onnx(fp16=True, dynamic_batch=True)
    with pytest.raises(UserError, match="dynamic dims"):
        build_engine(model, precision="fp16")
    assert build_engine(model, precision="fp16", input_shape=(2, 3, 16, 16)).engine_bytes


@pytest.mark.gpu
@needs_trt
def test_strongly_typed_precision_comes_from_the_onnx() -> None:
    import tensorrt as trt

    assert build_engine(tiny_onnx(), precision="auto").precision == "fp32"
    assert build_engine(tiny_onnx(fp16=True), precision="auto").precision == "fp16"
    if trt_major(trt) >= 11:  # no FP16 flag to fall back on: an fp32 ONNX stays fp32
        with pytest.raises(UserError, match="takes the precision from the ONNX"):
            build_engine(tiny_onnx(), precision="fp16")
