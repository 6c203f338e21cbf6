"""TensorRT engines for a pulled bundle, always built on the device that will run them.

An engine is tied to its GPU, platform and TensorRT version (docs/references.md), so a target
with an agent gets its engine from that agent (`POST /engine`), and only a target reached
locally is built on this machine's GPU. TensorRT and the agent client are imported lazily.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from factory.registry.index import ManifestView, check_file_name
from targets import get_target
from targets.atomic import write_atomic
from targets.errors import UserError
from targets.target import Target

if TYPE_CHECKING:
    from profilers.trt_engine import EngineResult

INT8_ONNX = "model.int8.onnx"
STRONGLY_TYPED_MAJOR = 11  # TensorRT >= 11 takes the precision from the ONNX


@dataclass(frozen=True)
class BuiltEngine:
    """An engine written next to the cached bundle, and how it was built."""

    path: Path
    precision: str
    trt_version: str
    device_name: str
    build_s: float
    built_by: str  # "locally" or "agent <url>"


def engine_for_target(bundle_dir: Path, view: ManifestView, target_name: str) -> BuiltEngine | None:
    """For a TensorRT target, build `model.<target>.engine` on the target: through its agent
    when it has one (the engine only runs on the GPU it was built on), else on this machine's
    GPU. None for a target whose runtime runs the ONNX directly."""
    target = get_target(target_name)
    if target.runtime != "tensorrt":
        return None
    onnx_name = (
        INT8_ONNX if target.precision == "int8" and _lists(view, INT8_ONNX) else "model.onnx"
    )
    if not _lists(view, onnx_name):
        raise UserError(f"{view.name}: the bundle has no {onnx_name} to build an engine from")
    onnx_path, shape = bundle_dir / onnx_name, input_shape_of(view)
    if target.agent is not None:
        result, built_by = _build_on_agent(target, onnx_path, onnx_name, shape)
    else:
        result, built_by = _build_here(target, onnx_path, onnx_name, shape)
    engine_name = check_file_name(f"model.{target.name}.engine")
    path = write_atomic(bundle_dir / engine_name, result.engine_bytes)
    return BuiltEngine(
        path, result.precision, result.trt_version, result.device_name, result.build_s, built_by
    )


def input_shape_of(view: ManifestView) -> tuple[int, ...]:
    """The manifest's input shape with its dynamic (named) dims at 1, e.g. (1, 1, 28, 28)."""
    spec = view.data.get("input")
    dims = spec.get("shape") if isinstance(spec, dict) else None
    if not isinstance(dims, list) or not dims:
        raise UserError(f"{view.name}: the manifest gives no input shape")
    shape = tuple(d if isinstance(d, int) and not isinstance(d, bool) else 1 for d in dims)
    if min(shape) < 1:
        raise UserError(f"{view.name}: bad input shape {dims} in the manifest")
    return shape


def engine_precision(target_precision: str, onnx_name: str, trt_version: str | None) -> str:
    """What to ask the builder for: int8 for a Q/DQ model; on TensorRT >= 11 (strongly typed)
    whatever the ONNX encodes ("auto"); else the target's fp32/fp16."""
    if onnx_name == INT8_ONNX:
        return "int8"
    major = (trt_version or "").split(".", 1)[0]
    if major.isdigit() and int(major) >= STRONGLY_TYPED_MAJOR:
        return "auto"
    return "fp16" if target_precision == "int8" else target_precision


def _build_on_agent(
    target: Target, onnx_path: Path, onnx_name: str, shape: tuple[int, ...]
) -> tuple[EngineResult, str]:
    from profilers.remote import agent_client_for  # lazy: httpx

    assert target.agent is not None
    with agent_client_for(target) as client:
        trt_version = client.health().get("tensorrt")
        precision = engine_precision(target.precision, onnx_name, trt_version)
        result = client.build_engine(onnx_path, precision=precision, input_shape=shape)
    return result, f"agent {target.agent.url}"


def _build_here(
    target: Target, onnx_path: Path, onnx_name: str, shape: tuple[int, ...]
) -> tuple[EngineResult, str]:
    from profilers import trt_engine  # lazy: TensorRT is looked for only when needed

    ok, reason = trt_engine.trt_available()
    if not ok:
        why = reason.split(" — ")[0]  # its own hint names the agent too; ours says how
        raise UserError(
            f"target {target.name!r} needs a TensorRT engine built on its own GPU, and {why}; "
            f"on the device run `factory agent --host 0.0.0.0 --token-file FILE` and give the "
            f"target `agent: {{url: http://DEVICE:8765, token_env: VAR}}` (a YAML in "
            f"$EMF_TARGETS_DIR), or pull without --target to get the ONNX"
        )
    trt, _ = trt_engine.require_tensorrt()
    precision = engine_precision(target.precision, onnx_name, trt.__version__)
    return trt_engine.build_engine(onnx_path, precision=precision, input_shape=shape), "locally"


def _lists(view: ManifestView, name: str) -> bool:
    return any(f.path == name for f in view.files)
