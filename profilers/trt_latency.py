"""TensorRT latency profiler: an engine built here from the ONNX, timed with CUDA events.

How the figure is obtained (trtexec's "GPU compute time"):
- `_prepare` builds the engine for the target's precision (`profilers.trt_engine`, timing
  cache included), deserializes it, allocates every I/O tensor with cudaMalloc, uploads
  random inputs once (fixed seed) and binds the addresses, all outside the timed region.
- `_run_once` records a CUDA event, enqueues with `execute_async_v3` on a private stream
  (or launches the captured CUDA graph), records a second event, waits for it and returns
  `cudaEventElapsedTime`. The base class uses a returned float instead of its own
  perf_counter timing, so warm-up by time, the measuring loop and the statistics stay in
  `LatencyProfiler` and the samples are device time. `cuda_events=False` returns None after
  a stream sync, and the base class times the call with perf_counter (host-visible latency).
- `cuda_graph=True` captures one enqueue into a CUDA graph (after one plain enqueue, as
  TensorRT requires) and times graph launches: less CPU launch overhead on small models.
- Per-layer times come from a separate run: an engine rebuilt with
  ProfilingVerbosity.DETAILED (fast: same timing cache), its own execution context with an
  IProfiler attached, a few runs skipped, then ms per run for each (fused) layer name.

`tensorrt`, the CUDA bindings and numpy are imported lazily; torch never (agent path).
"""

from __future__ import annotations

import importlib
import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from profilers.base import LatencyProfiler, ModelInput, ProfileSettings, resolve_input_shape
from profilers.measurement import Measurement
from profilers.registry import PROFILERS
from profilers.trt_engine import (
    build_engine,
    cuda_call,
    make_logger,
    onnx_input_dims,
    require_tensorrt,
)
from targets.errors import UserError
from targets.target import Target

ENGINE_SUFFIXES = (".engine", ".plan", ".trt")  # a prebuilt engine instead of an ONNX
_PER_LAYER_SKIP_RUNS = 3  # first profiled runs carry one-off costs


@dataclass
class EngineSession:
    """A deserialized engine with all I/O tensors on the device, bound, on its own stream."""

    trt: Any
    cudart: Any
    logger: Any
    runtime: Any
    engine: Any
    context: Any
    stream: Any
    input_shape: tuple[int, ...] = ()
    buffers: dict[str, int] = field(default_factory=dict)  # tensor name -> device pointer

    @classmethod
    def open(
        cls,
        engine_bytes: bytes,
        shape_for: Callable[[tuple[int, ...]], tuple[int, ...]],
    ) -> EngineSession:
        """Deserialize and bind; `shape_for(first input dims)` gives the concrete shape."""
        trt, cudart = require_tensorrt()
        logger = make_logger(trt)
        runtime = trt.Runtime(logger)
        engine = runtime.deserialize_cuda_engine(engine_bytes)
        if engine is None:
            raise UserError(
                "TensorRT cannot load this engine (built for another GPU or TensorRT "
                f"version?): {logger.last_error()}"
            )
        context = engine.create_execution_context()
        if context is None:
            raise RuntimeError(f"TensorRT cannot create a context: {logger.last_error()}")
        stream = cuda_call(cudart.cudaStreamCreateWithFlags(cudart.cudaStreamNonBlocking))
        session = cls(trt, cudart, logger, runtime, engine, context, stream)
        try:
            session._bind(shape_for)
        except BaseException:
            session.close()
            raise
        return session

    def enqueue(self) -> None:
        if not self.context.execute_async_v3(int(self.stream)):
            raise RuntimeError(f"TensorRT execute_async_v3 failed: {self.logger.last_error()}")

    def run_sync(self) -> None:
        self.enqueue()
        cuda_call(self.cudart.cudaStreamSynchronize(self.stream))

    def close(self) -> None:
        """Wait for queued work, drop context before engine before runtime, free memory."""
        if self.stream is None:
            return
        self.cudart.cudaStreamSynchronize(self.stream)
        self.context = self.engine = self.runtime = None
        for ptr in self.buffers.values():
            self.cudart.cudaFree(ptr)
        self.buffers.clear()
        self.cudart.cudaStreamDestroy(self.stream)
        self.stream = None

    def _bind(self, shape_for: Callable[[tuple[int, ...]], tuple[int, ...]]) -> None:
        trt, engine = self.trt, self.engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        if not inputs:
            raise UserError("the engine has no inputs")
        for i, name in enumerate(inputs):
            dims = tuple(int(d) for d in engine.get_tensor_shape(name))
            shape = shape_for(dims) if i == 0 else dims
            if any(d < 0 for d in shape):
                raise UserError(
                    f"engine input {name!r} has dynamic dims {dims}; only the first may"
                )
            if not self.context.set_input_shape(name, shape):
                raise UserError(f"the engine does not accept shape {shape} for input {name!r}")
            if i == 0:
                self.input_shape = shape
        for name in names:
            self._allocate(name, upload=name in inputs)

    def _allocate(self, name: str, upload: bool) -> None:
        shape = tuple(int(d) for d in self.context.get_tensor_shape(name))
        if any(d < 0 for d in shape):
            raise UserError(f"tensor {name!r} has a data-dependent shape {shape}; not supported")
        dtype = self.engine.get_tensor_dtype(name)
        nbytes = max(1, math.ceil(math.prod(shape) * dtype.itemsize))
        ptr = cuda_call(self.cudart.cudaMalloc(nbytes))
        self.buffers[name] = ptr
        self.context.set_tensor_address(name, ptr)
        if upload:
            host = _random_host_tensor(self.trt, dtype, shape, nbytes)
            kind = self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
            cuda_call(self.cudart.cudaMemcpy(ptr, host.ctypes.data, host.nbytes, kind))


@dataclass
class TrtRunner:
    """Profiler state: the timed session, how it was built, events and an optional graph."""

    session: EngineSession
    precision: str
    onnx: ModelInput | None  # None when a prebuilt engine was given (no rebuild possible)
    engine_bytes: bytes
    events: tuple[Any, Any] | None = None  # (start, end) CUDA events
    graph: Any = None
    graph_exec: Any = None


@PROFILERS.decorator("tensorrt")
class TrtProfiler(LatencyProfiler):
    """Times an ONNX model (or a prebuilt .engine/.plan) as a TensorRT engine on this GPU."""

    def __init__(
        self, cuda_graph: bool = False, cuda_events: bool = True, workspace_mb: int = 1024
    ) -> None:
        self.cuda_graph = cuda_graph
        self.cuda_events = cuda_events
        self.workspace_mb = workspace_mb

    def _prepare(
        self,
        model: ModelInput,
        target: Target,
        input_shape: tuple[int, ...] | None,
        batch: int | None,
    ) -> TrtRunner:
        _, cudart = require_tensorrt()
        if isinstance(model, Path) and model.suffix.lower() in ENGINE_SUFFIXES:
            onnx, engine_bytes, precision = None, model.read_bytes(), target.precision
            session = EngineSession.open(
                engine_bytes, lambda dims: resolve_input_shape(dims, input_shape, target, batch)
            )
        else:
            onnx = model
            inputs = onnx_input_dims(model)
            if not inputs:
                raise UserError("the ONNX model has no inputs")
            dims = inputs[0][1]
            shape = resolve_input_shape(dims, input_shape, target, batch)
            built = build_engine(model, target.precision, self.workspace_mb, input_shape=shape)
            engine_bytes, precision = built.engine_bytes, built.precision
            session = EngineSession.open(engine_bytes, lambda _dims: shape)
        runner = TrtRunner(session, precision, onnx, engine_bytes)
        try:
            if self.cuda_events:
                runner.events = (
                    cuda_call(cudart.cudaEventCreate()),
                    cuda_call(cudart.cudaEventCreate()),
                )
            if self.cuda_graph:
                runner.graph, runner.graph_exec = capture_graph(session)
        except BaseException:
            self._close(runner)
            raise
        return runner

    def _run_once(self, state: TrtRunner) -> float | None:
        session, cudart = state.session, state.session.cudart
        if state.events is None:
            self._launch(state)
            cuda_call(cudart.cudaStreamSynchronize(session.stream))
            return None
        start, end = state.events
        cuda_call(cudart.cudaEventRecord(start, session.stream))
        self._launch(state)
        cuda_call(cudart.cudaEventRecord(end, session.stream))
        cuda_call(cudart.cudaEventSynchronize(end))
        return float(cuda_call(cudart.cudaEventElapsedTime(start, end)))

    def _launch(self, state: TrtRunner) -> None:
        if state.graph_exec is not None:
            cuda_call(state.session.cudart.cudaGraphLaunch(state.graph_exec, state.session.stream))
        else:
            state.session.enqueue()

    def _provider_used(self, state: TrtRunner) -> str:
        return "tensorrt"

    def _input_shape(self, state: TrtRunner) -> tuple[int, ...]:
        return state.session.input_shape

    def _runtime_version(self) -> str:
        return str(importlib.import_module("tensorrt").__version__)

    def _precision(self, state: TrtRunner, target: Target) -> str:
        return state.precision

    def _per_op(self, state: TrtRunner, settings: ProfileSettings) -> dict[str, float]:
        """Per-layer ms per run (keys are TensorRT's fused layer names), separate run."""
        engine_bytes = state.engine_bytes
        if state.onnx is not None:
            shape = state.session.input_shape
            engine_bytes = build_engine(
                state.onnx, state.precision, self.workspace_mb, detailed=True, input_shape=shape
            ).engine_bytes
        session = EngineSession.open(engine_bytes, lambda dims: state.session.input_shape)
        try:
            return layer_times_ms(session, runs=max(settings.min_iters, 10))
        finally:
            session.close()

    def _close(self, state: TrtRunner) -> None:
        cudart = state.session.cudart
        if state.graph_exec is not None:
            cudart.cudaGraphExecDestroy(state.graph_exec)
        if state.graph is not None:
            cudart.cudaGraphDestroy(state.graph)
        for event in state.events or ():
            cudart.cudaEventDestroy(event)
        state.graph = state.graph_exec = state.events = None
        state.session.close()


def profile_trt(
    model: ModelInput | str,
    target: Target,
    input_shape: tuple[int, ...] | None = None,
    settings: ProfileSettings | None = None,
    cuda_graph: bool = False,
) -> Measurement:
    """Build and time a TensorRT engine for `target` on this machine's GPU."""
    return TrtProfiler(cuda_graph=cuda_graph).profile(model, target, input_shape, settings)


def capture_graph(session: EngineSession) -> tuple[Any, Any]:
    """(graph, graph_exec) of one enqueue. TensorRT needs one plain enqueue first (lazy
    allocations and shape set-up must not happen during capture)."""
    cudart = session.cudart
    session.run_sync()
    mode = cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
    cuda_call(cudart.cudaStreamBeginCapture(session.stream, mode))
    try:
        ok = bool(session.context.execute_async_v3(int(session.stream)))
    except Exception:
        ok = False
    err, graph = cudart.cudaStreamEndCapture(session.stream)
    if not ok or int(err) != 0:
        if int(err) == 0:
            cudart.cudaGraphDestroy(graph)
        raise UserError("this engine cannot be captured in a CUDA graph; profile without it")
    try:
        return graph, cuda_call(cudart.cudaGraphInstantiate(graph, 0))
    except RuntimeError:
        cudart.cudaGraphDestroy(graph)
        raise


def layer_times_ms(session: EngineSession, runs: int) -> dict[str, float]:
    """Mean ms per run of each layer, from an IProfiler on `session`'s context, slowest first."""
    collector = _layer_profiler(session.trt)
    session.context.profiler = collector
    for _ in range(_PER_LAYER_SKIP_RUNS):
        session.run_sync()
    collector.totals_ms.clear()
    for _ in range(runs):
        session.run_sync()
    totals = sorted(collector.totals_ms.items(), key=lambda kv: -kv[1])
    return {name: ms / runs for name, ms in totals}


def _layer_profiler(trt: Any) -> Any:
    class _LayerTimes(trt.IProfiler):
        """Sums the time TensorRT reports for each layer, once per layer per enqueue."""

        def __init__(self) -> None:
            trt.IProfiler.__init__(self)
            self.totals_ms: dict[str, float] = defaultdict(float)

        def report_layer_time(self, layer_name: str, ms: float) -> None:
            self.totals_ms[layer_name] += ms

    return _LayerTimes()


def _random_host_tensor(trt: Any, dtype: Any, shape: tuple[int, ...], nbytes: int) -> Any:
    """Inputs: standard normal (seed 0) for float types, zeros for integer/bool types (safe as
    indices), zero bytes for types numpy lacks (bf16, fp8, int4)."""
    import numpy as np

    rng = np.random.default_rng(0)
    try:
        np_dtype = np.dtype(trt.nptype(dtype))
    except (TypeError, KeyError, ValueError):
        return np.zeros(nbytes, np.uint8)
    if np_dtype.kind == "f":
        return np.ascontiguousarray(rng.standard_normal(shape).astype(np_dtype))
    return np.zeros(shape, np_dtype)
