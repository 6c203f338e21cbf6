"""ONNX export: eval mode, pinned opset, parity with torch through ONNX Runtime, atomic write."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from exporters.onnx_export import OnnxParityError, export_onnx
from targets.atomic import write_atomic
from targets.errors import UserError

SHAPE = (1, 1, 28, 28)


def small_net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 10),
    )
    # Non-trivial BN statistics, so train-mode and eval-mode outputs really differ.
    with torch.no_grad():
        net[1].running_mean.uniform_(-1, 1)
        net[1].running_var.uniform_(0.5, 2)
    return net


class CountingNet(nn.Module):
    """Its output depends on how often forward ran: the traced graph cannot match torch."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.conv = nn.Conv2d(1, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.conv(x) * float(self.calls)


def _run(data: bytes, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def test_legacy_export_in_memory_matches_eval_torch_and_restores_mode() -> None:
    net = small_net().train()
    result = export_onnx(net, SHAPE)
    assert net.training, "the caller's mode must be restored"
    assert result.path is None and result.exporter == "legacy"
    proto = onnx.load_model_from_string(result.data)
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [17]
    assert result.max_abs_diff is not None and result.max_abs_diff < 1e-4
    x = np.random.default_rng(1).standard_normal(SHAPE).astype(np.float32)
    with torch.no_grad():
        expected = net.eval()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(_run(result.data, x), expected, atol=1e-4)
    assert not any(
        n.op_type == "BatchNormalization" and len(n.output) > 1 for n in proto.graph.node
    )


def test_dynamic_batch_runs_at_several_batches(tmp_path) -> None:
    result = export_onnx(small_net(), SHAPE, tmp_path / "m.onnx", dynamic_batch=True, opset=13)
    dims = onnx.load(str(result.path)).graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and not dims[0].dim_value
    for batch in (1, 4, 7):
        x = np.zeros((batch, *SHAPE[1:]), np.float32)
        assert _run(result.data, x).shape == (batch, 10)


def test_atomic_write_leaves_one_self_contained_file(tmp_path) -> None:
    target = tmp_path / "sub" / "model.onnx"
    target.parent.mkdir()
    target.write_bytes(b"old")
    result = export_onnx(small_net(), SHAPE, target)
    assert result.path == target
    assert target.read_bytes() == result.data
    assert [p.name for p in target.parent.iterdir()] == ["model.onnx"]  # no temp, no .data


def test_write_atomic_keeps_old_file_when_writing_fails(tmp_path) -> None:
    target = tmp_path / "m.onnx"
    target.write_bytes(b"old")
    with pytest.raises(TypeError):
        write_atomic(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


def test_parity_failure_raises_and_writes_nothing(tmp_path) -> None:
    target = tmp_path / "bad.onnx"
    with pytest.raises(OnnxParityError, match="differs from torch"):
        export_onnx(CountingNet(), SHAPE, target)
    assert not target.exists()
    assert export_onnx(CountingNet(), SHAPE, check_parity=False).max_abs_diff is None


def test_unknown_exporter_is_a_user_error() -> None:
    with pytest.raises(UserError, match="valid: legacy, dynamo"):
        export_onnx(small_net(), SHAPE, exporter="jit")


@pytest.mark.slow  # ~20 s cold on the shared 2-core machine
def test_dynamo_exporter_matches_torch() -> None:
    result = export_onnx(small_net(), SHAPE, exporter="dynamo", opset=18)
    proto = onnx.load_model_from_string(result.data)
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)
    assert result.max_abs_diff is not None and result.max_abs_diff < 1e-4
