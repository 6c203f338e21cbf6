"""The profiler registry: runtime name (the target's `runtime`) -> profiler class.

Built-in profilers are imported on first use, not here: a device with only TensorRT (or only
ONNX Runtime) installed must still be able to import this module.
"""

from __future__ import annotations

import importlib

from profilers.base import LatencyProfiler
from targets.errors import UserError
from targets.registry import Registry
from targets.target import Target

PROFILERS: Registry[type[LatencyProfiler]] = Registry("profiler", key_attr="runtime")

# runtime name -> (module that registers it, pip package that provides the runtime)
_BUILTINS: dict[str, tuple[str, str]] = {
    "onnxruntime": ("profilers.ort_latency", "onnxruntime"),
    "tensorrt": ("profilers.trt_latency", "tensorrt"),
}


def get_profiler(target: Target) -> LatencyProfiler:
    """A fresh profiler for `target.runtime`; a missing runtime package is a UserError."""
    return profiler_class(target.runtime)()


def profiler_class(runtime: str) -> type[LatencyProfiler]:
    """The registered class for a runtime, importing the built-in module on first use."""
    if runtime not in PROFILERS and runtime in _BUILTINS:
        module, package = _BUILTINS[runtime]
        try:
            importlib.import_module(module)
        except ImportError as exc:
            if exc.name == module:
                raise UserError(f"no {runtime} profiler in this installation") from exc
            raise UserError(
                f"the {runtime} profiler needs the {package!r} package ({exc}); "
                f"install it on this machine"
            ) from exc
    if runtime not in PROFILERS:
        valid = ", ".join(sorted(set(PROFILERS.names()) | set(_BUILTINS)))
        raise UserError(f"unknown profiler runtime {runtime!r}; valid: {valid}")
    return PROFILERS.get(runtime)
