"""Timing ONNX models on a target for a table: interleaved rounds through the target's
profiler (an agent's too), the runtime's per-call overhead, and the runtime's version."""

from __future__ import annotations

import contextlib
import statistics
from collections.abc import Iterator, Mapping

import torch
from onnx import TensorProto, helper

from factory.lut.settings import LutSettings, Progress, Timing
from profilers.remote import agent_client_for, profiler_for
from targets.errors import UserError
from targets.target import Target

OVERHEAD = "__per_call_overhead__"  # the identity model's name among the timed models


class ModelTimer:
    """Times ONNX models on a target through its profiler (an agent's too) in rounds whose
    order reverses every other round, so a drift in machine load hits every model alike."""

    def __init__(self, target: Target, settings: LutSettings) -> None:
        self.target = target
        self.settings = settings
        self.profiler = profiler_for(target)

    def time(
        self,
        models: Mapping[str, tuple[bytes, tuple[int, ...]]],
        progress: Progress | None = None,
        phase: str = "timing",
    ) -> dict[str, Timing]:
        """{name: (onnx bytes, input shape)} -> {name: Timing}."""
        names = list(models)
        runs: dict[str, list[tuple[float, float]]] = {n: [] for n in names}
        settings = self.settings.profile_settings()
        total, done = len(names) * self.settings.rounds, 0
        for r in range(self.settings.rounds):
            for name in names if r % 2 == 0 else names[::-1]:
                data, shape = models[name]
                stats = self.profiler.profile(data, self.target, shape, settings).latency_ms
                runs[name].append((stats.median, stats.min))
                done += 1
                if progress:
                    progress(phase, done, total)
        return {
            n: Timing(statistics.median(r[0] for r in rs), min(r[1] for r in rs))
            for n, rs in runs.items()
        }


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """torch's thread pool makes small exports slower (3x here), and its spinning workers
    would steal the core the runtime is being timed on."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def identity_onnx(shape: tuple[int, ...]) -> bytes:
    """An ONNX model that only copies its input: the runtime's per-call overhead."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, list(shape))
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, list(shape))
    graph = helper.make_graph([helper.make_node("Identity", ["input"], ["output"])], "id", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def runtime_version(target: Target) -> str:
    """The version of the runtime that measures on `target`: asked of its agent when remote."""
    if target.is_local:
        from profilers.registry import get_profiler

        return get_profiler(target)._runtime_version()
    with agent_client_for(target) as client:
        device = client.health().get("device", {})
    names = ("tensorrt",) if target.runtime == "tensorrt" else ("onnxruntime", "onnxruntime_gpu")
    version = next((device[n] for n in names if device.get(n)), None)
    if version is None:
        raise UserError(f"the agent of target {target.name} reports no {target.runtime} version")
    return str(version)
