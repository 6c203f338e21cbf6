"""Static INT8 quantization of an fp32 ONNX model, and test accuracy of any ONNX model.

`quant_pre_process` (shape inference, basic graph optimizations), then `quantize_static` in
QDQ format with int8 weights, symmetric and per output channel, calibrated on real training
images (docs/references.md, "INT8 quantization"). Activations are the one choice that
depends on the runtime:

- "int8-symmetric" (zero point 0) is the only Q/DQ TensorRT builds;
- "uint8" (asymmetric) is ONNX Runtime's fast CPU path: with it ORT fuses every Q/DQ pair
  into QLinear ops, while with int8 activations it leaves Add, pooling and concat in float
  between Dequantize/Quantize nodes: about 2x slower than uint8 for shufflenet_g3 on this
  machine's x86 CPU, same accuracy (docs/export.md).

With uint8 activations the weights use 7 of their 8 bits (`reduce_range`): ORT's u8s8 kernels
on x86 CPUs without VNNI (AVX2, AVX-512F) add pairs of uint8 x int8 products in int16, which
saturates at full range. Measured on an AVX2-only AMD EPYC: a shipped shufflenet whose 8-bit
INT8 file scored 89.81 % on a VNNI Xeon scored 78.55 % there; quantized to 7 bits it scores
89.83 %. TensorRT's int8-symmetric path has no such kernel and keeps 8 bits.

Whether INT8 beats FP32 at all depends on the CPU and the network, so the exporter measures it.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from exporters.images import LabelledImages, in_order
from exporters.settings import Int8Settings
from targets.errors import UserError

_METHODS = {  # the keys are settings.CALIBRATION_METHODS
    "minmax": CalibrationMethod.MinMax,
    "percentile": CalibrationMethod.Percentile,
    "entropy": CalibrationMethod.Entropy,
}


@dataclass(frozen=True)
class AccuracyResult:
    """Top-1 accuracy of a model on a split, measured with ONNX Runtime on the CPU."""

    accuracy: float  # fraction in [0, 1]
    correct: int
    images: int


class SplitCalibrationReader(CalibrationDataReader):
    """Feeds `images` evenly spaced images of a split, in batches, to the calibrator."""

    def __init__(self, split: LabelledImages, images: int, batch: int, input_name: str) -> None:
        self.idx = calibration_indices(len(split), images)
        self.split, self.batch, self.input_name = split, batch, input_name
        self.pos = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.pos >= len(self.idx):
            return None
        x, _ = self.split.take(self.idx[self.pos : self.pos + self.batch])
        self.pos += self.batch
        return {self.input_name: x.numpy().astype(np.float32, copy=False)}

    def rewind(self) -> None:
        self.pos = 0


def calibration_indices(total: int, images: int) -> torch.Tensor:
    """`images` indices spread evenly over range(total) (all of them when fewer): every part
    of the split is represented and the choice is deterministic without a generator."""
    if total < 1:
        raise UserError("the calibration split is empty")
    n = min(images, total)
    return torch.linspace(0, total - 1, n).round().long().unique()


def quantize_int8(
    fp32_onnx: bytes, calib: LabelledImages, settings: Int8Settings | None = None
) -> tuple[bytes, int]:
    """The Q/DQ INT8 model of `fp32_onnx` and the number of calibration images used."""
    settings = settings or Int8Settings()
    proto = onnx.load_model_from_string(fp32_onnx)
    input_name = _first_input(proto)
    reader = SplitCalibrationReader(calib, settings.calib_images, settings.calib_batch, input_name)
    symmetric = settings.activations == "int8-symmetric"
    with tempfile.TemporaryDirectory(prefix="emf-int8-") as tmp:
        src, pre, out = (Path(tmp) / n for n in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        src.write_bytes(fp32_onnx)
        quiet = logging.getLogger().level
        logging.getLogger().setLevel(logging.ERROR)  # the quantizer logs advice at INFO/WARNING
        try:
            quant_pre_process(str(src), str(pre))
            quantize_static(
                str(pre),
                str(out),
                reader,
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                reduce_range=not symmetric,  # 7-bit weights: no int16 saturation on AVX2
                activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=_METHODS[settings.method],
                extra_options={"ActivationSymmetric": symmetric, "WeightSymmetric": True},
            )
        except Exception as exc:  # onnxruntime raises bare Exceptions from its C++ core
            raise UserError(f"INT8 quantization failed: {_one_line(exc)}") from exc
        finally:
            logging.getLogger().setLevel(quiet)
        quantized = onnx.load_model(str(out))
    _drop_unused_opsets(quantized)
    return quantized.SerializeToString(), len(reader.idx)


def onnx_accuracy(
    model: bytes | Path, split: LabelledImages, batch: int = 256, threads: int | None = None
) -> AccuracyResult:
    """Top-1 accuracy of an ONNX model (bytes or path) over every image of `split`."""
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    source = str(model) if isinstance(model, Path) else model
    try:
        session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own error types
        raise UserError(f"onnxruntime cannot load the model: {_one_line(exc)}") from exc
    name = session.get_inputs()[0].name
    correct = 0
    for x, y in in_order(split, batch):
        logits = session.run(None, {name: x.numpy().astype(np.float32, copy=False)})[0]
        correct += int((np.asarray(logits).argmax(1) == y.numpy()).sum())
    images = len(split)
    return AccuracyResult(correct / max(images, 1), correct, images)


def _first_input(proto: onnx.ModelProto) -> str:
    weights = {t.name for t in proto.graph.initializer}
    names = [i.name for i in proto.graph.input if i.name not in weights]
    if len(names) != 1:
        raise UserError(f"INT8 calibration needs a model with one input, this one has {names}")
    return names[0]


def _drop_unused_opsets(proto: onnx.ModelProto) -> None:
    """quant_pre_process imports every onnxruntime domain; keep those the graph uses."""
    used = {n.domain for n in proto.graph.node} | {""}
    keep = [o for o in proto.opset_import if o.domain in used or o.domain == "ai.onnx"]
    del proto.opset_import[:]
    proto.opset_import.extend(keep)


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return (lines[0] if lines else type(exc).__name__)[:300]
