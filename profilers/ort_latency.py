"""ONNX Runtime latency profiler: pinned threads, the target's execution provider (checked),
optional per-op-type profile from ORT's own trace.

No torch anywhere in this import path: the device agent uses it where only onnxruntime exists.
"""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from profilers.base import LatencyProfiler, ModelInput, ProfileSettings, resolve_input_shape
from profilers.measurement import Measurement
from profilers.registry import PROFILERS
from targets.errors import UserError
from targets.target import Target

_ORT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
}
_HOST_PROVIDERS = ("CPUExecutionProvider", "AzureExecutionProvider")
_PER_OP_SKIP_RUNS = 3  # first profiled runs carry one-off allocation costs


@dataclass
class OrtRunner:
    """A ready-to-time session: inputs are built (and bound on the device) beforehand."""

    model: ModelInput
    session: ort.InferenceSession
    options: ort.SessionOptions
    provider: str
    feeds: dict[str, np.ndarray]
    input_shape: tuple[int, ...]
    binding: ort.IOBinding | None = None  # device providers: no host copies in the timed run


@PROFILERS.decorator("onnxruntime")
class OrtProfiler(LatencyProfiler):
    """Times an ONNX model with ONNX Runtime on this machine."""

    def _prepare(
        self,
        model: ModelInput,
        target: Target,
        input_shape: tuple[int, ...] | None,
        batch: int | None,
    ) -> OrtRunner:
        provider = target.execution_provider
        options = session_options(target)
        session = open_session(model, options, provider)
        feeds, shape = make_feeds(session, target, input_shape, batch)
        runner = OrtRunner(model, session, options, provider, feeds, shape)
        if provider not in _HOST_PROVIDERS:
            runner.binding = _bind_on_device(session, feeds)
        return runner

    def _run_once(self, state: OrtRunner) -> None:
        if state.binding is not None:
            state.session.run_with_iobinding(state.binding)
            state.binding.synchronize_outputs()
        else:
            state.session.run(None, state.feeds)

    def _provider_used(self, state: OrtRunner) -> str:
        return state.session.get_providers()[0]

    def _input_shape(self, state: OrtRunner) -> tuple[int, ...]:
        return state.input_shape

    def _runtime_version(self) -> str:
        return ort.__version__

    def _per_op(self, state: OrtRunner, settings: ProfileSettings) -> dict[str, float]:
        runs = max(settings.min_iters, 10)
        with tempfile.TemporaryDirectory(prefix="emf-ort-prof-") as tmp:
            options = _clone_options(state.options)
            options.enable_profiling = True
            options.profile_file_prefix = str(Path(tmp) / "ort")
            session = open_session(state.model, options, state.provider)
            for _ in range(_PER_OP_SKIP_RUNS + runs):
                session.run(None, state.feeds)
            trace = Path(session.end_profiling())
            events = json.loads(trace.read_text())
        return per_op_ms(events, skip_runs=_PER_OP_SKIP_RUNS)


def profile_onnx(
    model: ModelInput | str,
    target: Target,
    input_shape: tuple[int, ...] | None = None,
    settings: ProfileSettings | None = None,
) -> Measurement:
    """Time an ONNX model (bytes or path) with ONNX Runtime for `target`."""
    return OrtProfiler().profile(model, target, input_shape, settings)


def session_options(target: Target) -> ort.SessionOptions:
    """Pinned threads (intra-op from the target, inter-op 1), sequential, all graph opts."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = target.threads or 0  # 0 = ORT's default
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: fallbacks are checked, not logged
    return options


def open_session(
    model: ModelInput, options: ort.SessionOptions, provider: str
) -> ort.InferenceSession:
    """A session on exactly `provider`; a missing provider or a silent fallback is an error."""
    available = ort.get_available_providers()
    if provider not in available:
        raise UserError(
            f"execution provider {provider} is not available in onnxruntime {ort.__version__} "
            f"here (available: {', '.join(available)})"
        )
    source = str(model) if isinstance(model, Path) else model
    try:
        session = ort.InferenceSession(source, sess_options=options, providers=[provider])
    except Exception as exc:  # ORT raises its own pybind types (InvalidProtobuf, Fail, ...)
        raise UserError(f"cannot load the ONNX model{_where(model)}: {_first_line(exc)}") from exc
    used = session.get_providers()[0]
    if used != provider:
        raise UserError(f"asked for {provider} but onnxruntime fell back to {used}")
    return session


def make_feeds(
    session: ort.InferenceSession,
    target: Target,
    input_shape: tuple[int, ...] | None,
    batch: int | None,
) -> tuple[dict[str, np.ndarray], tuple[int, ...]]:
    """Random inputs (fixed seed) for every model input; the first takes the resolved shape."""
    rng = np.random.default_rng(0)
    feeds: dict[str, np.ndarray] = {}
    first_shape: tuple[int, ...] = ()
    for i, arg in enumerate(session.get_inputs()):
        if i == 0:
            shape = resolve_input_shape(arg.shape, input_shape, target, batch)
            first_shape = shape
        else:
            shape = resolve_input_shape(arg.shape, None, target, batch)
        dtype = _ORT_DTYPES.get(arg.type)
        if dtype is None:
            raise UserError(f"model input {arg.name!r} has unsupported type {arg.type}")
        feeds[arg.name] = rng.standard_normal(shape).astype(dtype)
    return feeds, first_shape


def per_op_ms(events: list[dict[str, Any]], skip_runs: int = 0) -> dict[str, float]:
    """Kernel time per op type in ms per run, from an ORT profiling trace (µs events).

    Node events named `*_kernel_time` are grouped by `args.op_name`; the first `skip_runs`
    `model_run` events (and every node inside them) are left out.
    """
    runs = sorted(
        (e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
        key=lambda e: e["ts"],
    )
    if len(runs) <= skip_runs:
        raise UserError(f"the ORT trace has {len(runs)} runs; need more than {skip_runs}")
    start_us = runs[skip_runs]["ts"]
    totals_us: dict[str, float] = defaultdict(float)
    for event in events:
        name = str(event.get("name", ""))
        if event.get("cat") == "Node" and name.endswith("_kernel_time") and event["ts"] >= start_us:
            totals_us[event.get("args", {}).get("op_name", "?")] += float(event["dur"])
    kept = len(runs) - skip_runs
    return {op: us / kept / 1000 for op, us in sorted(totals_us.items(), key=lambda kv: -kv[1])}


def _bind_on_device(session: ort.InferenceSession, feeds: dict[str, np.ndarray]) -> ort.IOBinding:
    """Inputs copied to the device once and outputs left there, so timed runs hold no copies."""
    device = "cuda"
    binding = session.io_binding()
    for name, array in feeds.items():
        binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(array, device, 0))
    for out in session.get_outputs():
        binding.bind_output(out.name, device)
    return binding


def _clone_options(options: ort.SessionOptions) -> ort.SessionOptions:
    clone = ort.SessionOptions()
    for name in (
        "intra_op_num_threads",
        "inter_op_num_threads",
        "execution_mode",
        "graph_optimization_level",
        "log_severity_level",
    ):
        setattr(clone, name, getattr(options, name))
    return clone


def _where(model: ModelInput) -> str:
    return f" {model}" if isinstance(model, Path) else f" ({len(model)} bytes)"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]
