"""PyTorch -> ONNX with a pinned opset, checked against torch with ONNX Runtime.

The legacy (TorchScript) exporter is the default: it is many times faster per model than
the dynamo exporter here (docs/onnx_export.md), which matters when hundreds of candidates
are profiled. Small nets are always written as one self-contained file (no external data).
"""

from __future__ import annotations

import contextlib
import io
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from targets.atomic import write_atomic
from targets.errors import UserError

EXPORTERS = ("legacy", "dynamo")
INPUT_NAME = "input"
OUTPUT_NAME = "output"
_PARITY_BATCHES = (1, 2, 3)  # with a dynamic batch: 1, an even and an odd size


class OnnxParityError(UserError):
    """ONNX Runtime's output differs from torch's beyond the tolerance."""


@dataclass(frozen=True)
class OnnxExport:
    """An exported model: the serialized ONNX, where it was written, and how it was checked."""

    data: bytes  # the ONNX ModelProto, self-contained
    path: Path | None  # where it was written atomically, None when kept in memory
    opset: int
    exporter: str
    input_shape: tuple[int, ...]
    dynamic_batch: bool
    max_abs_diff: float | None  # worst |onnxruntime - torch| over the checked batches
    export_s: float  # wall time of the torch -> ONNX conversion alone


def export_onnx(
    model: nn.Module,
    input_shape: tuple[int, ...],
    path: Path | str | None = None,
    *,
    opset: int = 17,
    dynamic_batch: bool = False,
    exporter: str = "legacy",
    check_parity: bool = True,
    atol: float = 1e-4,
    rtol: float = 1e-3,
) -> OnnxExport:
    """Export `model` (in eval mode) for inputs of `input_shape` (N, C, H, W).

    Parity: ONNX Runtime vs torch on a fixed random input, at batch 1, 2 and 3 when the batch
    is dynamic, else at `input_shape`; a difference beyond atol + rtol*|torch| raises
    `OnnxParityError`. With `path`, the file is written atomically (temp file + rename).
    """
    if exporter not in EXPORTERS:
        raise UserError(f"unknown ONNX exporter {exporter!r}; valid: {', '.join(EXPORTERS)}")
    shape = tuple(int(s) for s in input_shape)
    with _eval_mode(model):
        start = time.perf_counter()
        data = _convert(model, shape, opset, dynamic_batch, exporter)
        export_s = time.perf_counter() - start
        _check_opset(data, opset, exporter)
        diff = (
            _check_parity(model, data, shape, dynamic_batch, atol, rtol) if check_parity else None
        )
    written = write_atomic(Path(path), data) if path is not None else None
    return OnnxExport(data, written, opset, exporter, shape, dynamic_batch, diff, export_s)


def _convert(
    model: nn.Module, shape: tuple[int, ...], opset: int, dynamic_batch: bool, exporter: str
) -> bytes:
    # torch.export specialises a dynamic dim whose example is 1, so trace at batch 2 then.
    example_shape = (2, *shape[1:]) if dynamic_batch and exporter == "dynamo" else shape
    example = _example_input(model, example_shape)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
            if exporter == "legacy":
                return _legacy(model, example, opset, dynamic_batch)
            return _dynamo(model, example, opset, dynamic_batch)
    except UserError:
        raise
    except Exception as exc:  # torch raises many types; the user needs the first line
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise UserError(f"{exporter} ONNX export failed: {first}") from exc


def _legacy(model: nn.Module, example: torch.Tensor, opset: int, dynamic_batch: bool) -> bytes:
    buffer = io.BytesIO()
    axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
    torch.onnx.export(
        model,
        (example,),
        buffer,
        dynamo=False,
        opset_version=opset,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_axes=axes,
        do_constant_folding=True,
    )
    return buffer.getvalue()


def _dynamo(model: nn.Module, example: torch.Tensor, opset: int, dynamic_batch: bool) -> bytes:
    dynamic = ({0: torch.export.Dim("batch", min=1, max=65536)},) if dynamic_batch else None
    program = torch.onnx.export(
        model,
        (example,),
        dynamo=True,
        opset_version=opset,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_shapes=dynamic,
        external_data=False,
        report=False,
        verify=False,
        verbose=False,
    )
    return program.model_proto.SerializeToString()


def _check_opset(data: bytes, opset: int, exporter: str) -> None:
    """The dynamo exporter may silently keep a newer opset when it cannot convert down."""
    proto = onnx.load_model_from_string(data)
    got = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    if got != opset:
        raise UserError(
            f"the {exporter} exporter produced opset {got}, not the requested {opset}; "
            f"ask for opset {got} or use the other exporter"
        )


def _check_parity(
    model: nn.Module,
    data: bytes,
    shape: tuple[int, ...],
    dynamic_batch: bool,
    atol: float,
    rtol: float,
) -> float:
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    batches = _PARITY_BATCHES if dynamic_batch else (shape[0],)
    rng = np.random.default_rng(0)
    worst = 0.0
    for batch in batches:
        x = rng.standard_normal((batch, *shape[1:])).astype(np.float32)
        with torch.no_grad():
            expected = _flatten_outputs(model(_to_model_device(model, torch.from_numpy(x))))
        got = session.run(None, {session.get_inputs()[0].name: x})
        if len(got) != len(expected):
            raise OnnxParityError(f"ONNX has {len(got)} outputs, torch {len(expected)}")
        for ref, out in zip(expected, got, strict=True):
            if ref.shape != out.shape:
                raise OnnxParityError(
                    f"output shape {out.shape} != torch {ref.shape} (batch {batch})"
                )
            diff = float(np.max(np.abs(out - ref))) if ref.size else 0.0
            worst = max(worst, diff)
            if not np.allclose(out, ref, atol=atol, rtol=rtol):
                raise OnnxParityError(
                    f"ONNX Runtime differs from torch by up to {diff:.3g} at batch {batch} "
                    f"(atol {atol:g}, rtol {rtol:g})"
                )
    return worst


def _flatten_outputs(out: object) -> list[np.ndarray]:
    if isinstance(out, torch.Tensor):
        return [out.detach().cpu().numpy()]
    if isinstance(out, list | tuple):
        return [a for item in out for a in _flatten_outputs(item)]
    raise UserError(f"cannot compare a model output of type {type(out).__name__}")


def _example_input(model: nn.Module, shape: tuple[int, ...]) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return _to_model_device(model, torch.randn(shape, generator=gen))


def _to_model_device(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    param = next(model.parameters(), None)
    return x.to(param.device) if param is not None else x


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode for the export (training BatchNorm breaks TensorRT), then restore."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)
