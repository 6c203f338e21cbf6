"""model.onnx: the fp32 ONNX of a bundle, slimmed and checked against torch.

Exported with a pinned opset and a dynamic batch, its output renamed 'logits', slimmed with
onnxslim, then run with ONNX Runtime on real test images (or a fixed normal draw) at batch 1,
2 and 7: the worst difference from torch is returned, and one beyond the tolerance raises.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from exporters.images import LabelledImages
from exporters.onnx_export import OUTPUT_NAME, OnnxParityError, export_onnx
from exporters.settings import ExportSettings
from targets.errors import UserError

PARITY_BATCHES = (1, 2, 7)  # dynamic batch: 1, an even and an odd size
LOGITS = "logits"


def export_fp32(
    model: nn.Module, chw: tuple[int, int, int], settings: ExportSettings, images: np.ndarray
) -> tuple[bytes, float]:
    """model.onnx: pinned opset, dynamic batch, output named 'logits', slimmed with onnxslim,
    then checked against torch at batch 1, 2 and 7; returns it and the worst difference."""
    import onnxslim

    exported = export_onnx(
        model, (1, *chw), opset=settings.opset, dynamic_batch=True, check_parity=False
    )
    proto = onnx.load_model_from_string(exported.data)
    _rename_tensor(proto, OUTPUT_NAME, LOGITS)
    try:
        slim = onnxslim.slim(proto)
    except Exception as exc:  # onnxslim raises what its passes raise
        raise UserError(f"onnxslim failed on the exported model: {exc}") from exc
    opsets = [o.version for o in slim.opset_import if o.domain in ("", "ai.onnx")]
    batch = slim.graph.input[0].type.tensor_type.shape.dim[0]
    if opsets != [settings.opset] or not batch.dim_param:
        raise UserError(f"onnxslim changed the opset ({opsets}) or fixed the batch dimension")
    data = slim.SerializeToString()
    return data, check_parity(model, data, images, settings.parity_atol)


def check_parity(model: nn.Module, data: bytes, images: np.ndarray, atol: float) -> float:
    """Worst |onnxruntime - torch| over the first 1, 2 and 7 images; beyond `atol` it raises."""
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    param = next(model.parameters(), None)
    worst = 0.0
    for batch in PARITY_BATCHES:
        x = images[:batch]
        with torch.no_grad():
            ref = model(torch.from_numpy(x).to(param.device if param is not None else "cpu"))
        got, expected = session.run(None, {name: x})[0], ref.detach().cpu().numpy()
        if got.shape != expected.shape:
            raise OnnxParityError(f"ONNX output {got.shape} != torch {expected.shape}")
        worst = max(worst, float(np.max(np.abs(got - expected))))
        if worst > atol:
            raise OnnxParityError(
                f"model.onnx differs from torch by {worst:.3g} at batch {batch} (limit {atol:g})"
            )
    return worst


def parity_images(
    chw: tuple[int, int, int], test: LabelledImages | None, seed: int = 0
) -> np.ndarray:
    """Real test images when there are enough, else a normal draw from `seed` (N, C, H, W)."""
    n = max(PARITY_BATCHES)
    if test is not None and len(test) >= n:
        return test.take(torch.arange(n))[0].numpy().astype(np.float32)
    return np.random.default_rng(seed).standard_normal((n, *chw)).astype(np.float32)


def _rename_tensor(proto: onnx.ModelProto, old: str, new: str) -> None:
    for node in proto.graph.node:
        node.input[:] = [new if n == old else n for n in node.input]
        node.output[:] = [new if n == old else n for n in node.output]
    for info in [*proto.graph.output, *proto.graph.value_info]:
        if info.name == old:
            info.name = new
