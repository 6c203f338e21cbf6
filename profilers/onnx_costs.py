"""Costs read from an ONNX graph: parameters and MACs (for models that are not torch modules:
a user's ONNX file, an exported bundle)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from targets.errors import UserError

if TYPE_CHECKING:
    import onnx

# ONNX ops that do multiply-adds we do not count; reported, never counted as 0
_UNCOUNTED_ONNX_OPS = frozenset(
    {
        *("LSTM", "GRU", "RNN", "Einsum", "Attention", "MultiHeadAttention", "DeformConv"),
        *("QLinearMatMul", "QLinearConv", "ConvInteger", "MatMulInteger"),  # quantized
    }
)


def read_onnx(model: bytes | Path) -> onnx.ModelProto:
    import onnx

    try:
        if isinstance(model, Path):
            return onnx.load_model(str(model), load_external_data=False)
        return onnx.load_model_from_string(model)
    except Exception as exc:  # protobuf's DecodeError and OS errors
        where = model if isinstance(model, Path) else "(in memory)"
        raise UserError(
            f"cannot read ONNX model {where}: {str(exc) or type(exc).__name__}"
        ) from exc


def onnx_params(proto: onnx.ModelProto) -> int:
    """Parameters: elements of every initializer (weights, biases, BN statistics)."""
    return sum(math.prod(t.dims) for t in proto.graph.initializer)


def onnx_macs(
    proto: onnx.ModelProto, input_shape: tuple[int, ...]
) -> tuple[int | None, str | None]:
    """MACs (1 multiply-add = 1) of Conv, ConvTranspose, Gemm and MatMul nodes, from ONNX
    shape inference at `input_shape`; ops whose MACs cannot be counted are named in the note."""
    import onnx

    weights = {t.name for t in proto.graph.initializer}
    first = next((i for i in proto.graph.input if i.name not in weights), None)
    if first is None:
        return None, "MACs not counted: the ONNX graph has no input"
    dims = first.type.tensor_type.shape.dim
    if len(dims) == len(input_shape):
        for dim, size in zip(dims, input_shape, strict=True):
            dim.Clear()
            dim.dim_value = size
    try:
        inferred = onnx.shape_inference.infer_shapes(proto, data_prop=True)
    except Exception as exc:  # the checker's own error types
        return None, f"MACs not counted: ONNX shape inference failed ({exc})"
    shapes = {t.name: list(t.dims) for t in inferred.graph.initializer}
    for info in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        dims = info.type.tensor_type.shape.dim
        shapes[info.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    macs, uncounted = 0, set()
    for node in inferred.graph.node:
        count = _node_macs(node, shapes)
        if count is None:
            uncounted.add(node.op_type)
        else:
            macs += count
    return macs, (f"not counted: {', '.join(sorted(uncounted))}" if uncounted else None)


def _node_macs(node: Any, shapes: dict[str, list[int | None]]) -> int | None:
    """MACs of one node; 0 for ops without multiply-adds; None when they cannot be counted."""
    op = node.op_type
    if op in _UNCOUNTED_ONNX_OPS:
        return None
    if op not in ("Conv", "ConvTranspose", "Gemm", "MatMul"):
        return 0
    a, w, out = (shapes.get(n) for n in (node.input[0], node.input[1], node.output[0]))
    if not a or not w or not out or None in (*a, *w, *out):
        return None
    if op == "Conv":  # N·Hout·Wout · Cout·Cin/g·kh·kw
        return math.prod(out[:1] + out[2:]) * math.prod(w)
    if op == "ConvTranspose":  # every input position scatters Cout/g·kh·kw per input channel
        return math.prod(a[:1] + a[2:]) * math.prod(w)
    if op == "Gemm":
        trans_a = next((attr.i for attr in node.attribute if attr.name == "transA"), 0)
        return math.prod(out) * (a[0] if trans_a else a[-1])
    return math.prod(out) * a[-1]  # MatMul: each output sums over A's last dim
