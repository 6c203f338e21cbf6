"""Builds a serialized TensorRT engine from ONNX, on the GPU that will run it.

Engines are tied to the GPU, the platform and the TensorRT version, so they are always built
where they run (docs/references.md, "TensorRT engines"). Two API generations are handled:

- TensorRT 10 (JetPack 6): a weakly typed network; the precision comes from builder flags
  (FP16; INT8 only for a Q/DQ ONNX — calibrators are deprecated and never used here).
- TensorRT >= 11: every network is strongly typed. The precision comes from the ONNX itself
  (casts for fp16, Q/DQ nodes for int8); there are no precision flags. A request that does not
  match the ONNX is refused rather than silently built at another precision.

A timing cache per GPU and TensorRT version (`timing_cache_path`) is loaded before each build
and saved after it, atomically, so rebuilds skip the tactic timing they already did.

`tensorrt` and the CUDA bindings are imported lazily and torch never: the device agent calls
this where only TensorRT is installed, and this module must import on any machine.
"""

from __future__ import annotations

import importlib
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from targets.atomic import write_atomic
from targets.errors import UserError
from targets.target import PRECISIONS, cache_dir

NO_TENSORRT = (
    "TensorRT is not installed here (pip install tensorrt) — "
    "build engines on the device with `factory agent`"
)
NO_CUDA_BINDINGS = "the CUDA Python bindings are not installed here (pip install cuda-python)"
NO_GPU = "no NVIDIA GPU found"
BUILD_PRECISIONS = (*PRECISIONS, "auto")  # auto: whatever the ONNX says (strongly typed)
STRONGLY_TYPED_MAJOR = 11  # first TensorRT major without precision builder flags
_EXPORT_HINT = {
    "fp32": "export it in fp32",
    "fp16": "export it with fp16 casts (e.g. ModelOpt AutoCast)",
    "int8": "export it with Q/DQ nodes (`--format onnx-int8`)",
}
_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineResult:
    """A serialized engine and what it was built with."""

    engine_bytes: bytes
    trt_version: str
    precision: str  # the precision really built: fp32 | fp16 | int8 (others only via "auto")
    build_s: float  # parse + build, seconds
    device_name: str  # the GPU it was built on (and only runs on)


def trt_available() -> tuple[bool, str]:
    """Whether engines can be built and run here; the reason is one line either way."""
    try:
        trt = importlib.import_module("tensorrt")
    except ImportError:
        return False, NO_TENSORRT
    except OSError as exc:  # the wheel is there but its shared libraries are not
        return False, f"TensorRT is installed but cannot load: {_one_line(exc)}"
    try:
        cudart = cuda_runtime()
    except ImportError:
        return False, NO_CUDA_BINDINGS
    err, count = cudart.cudaGetDeviceCount()
    if int(err) != 0:  # e.g. cudaErrorInsufficientDriver: bindings newer than the driver
        return False, f"{NO_GPU} (CUDA: {getattr(err, 'name', err)})"
    if not count:
        return False, NO_GPU
    try:
        gpu = device_name(cudart)
    except RuntimeError as exc:
        return False, f"{NO_GPU} ({exc})"
    return True, f"TensorRT {trt.__version__} on {gpu}"


def require_tensorrt() -> tuple[Any, Any]:
    """The `tensorrt` module and the CUDA runtime bindings, or a one-line UserError."""
    ok, reason = trt_available()
    if not ok:
        raise UserError(reason)
    return importlib.import_module("tensorrt"), cuda_runtime()


def cuda_runtime() -> Any:
    """The CUDA runtime bindings of cuda-python (new layout first, then the pre-12.6 one)."""
    try:
        from cuda.bindings import runtime
    except ImportError:
        from cuda import cudart as runtime  # cuda-python < 12.6
    return runtime


def cuda_call(result: tuple[Any, ...]) -> Any:
    """Unwrap a cuda-python `(error, *values)` tuple; a CUDA error raises RuntimeError."""
    err, *values = result
    if int(err) != 0:
        raise RuntimeError(f"CUDA error {int(err)} ({getattr(err, 'name', err)})")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def device_name(cudart: Any) -> str:
    """The name of the current CUDA device, e.g. 'NVIDIA H100 80GB HBM3' or 'Orin'."""
    props = cuda_call(cudart.cudaGetDeviceProperties(cuda_call(cudart.cudaGetDevice())))
    name = props.name
    if isinstance(name, bytes):
        name = name.split(b"\x00", 1)[0].decode(errors="replace")
    return str(name).strip() or "cuda-device"


def timing_cache_path(gpu_name: str, trt_version: str) -> Path:
    """`<cache>/trt-timing/<gpu-name>-<trt-version>.cache`: tactic timings are only valid for
    one GPU model and one TensorRT version."""
    slug = re.sub(r"[^A-Za-z0-9._]+", "-", gpu_name).strip("-") or "gpu"
    return cache_dir() / "trt-timing" / f"{slug}-{trt_version}.cache"


def build_engine(
    onnx: bytes | Path,
    precision: str = "fp16",
    workspace_mb: int = 1024,
    timing_cache: Path | None = None,
    detailed: bool = False,
    input_shape: tuple[int, ...] | None = None,
) -> EngineResult:
    """Parse the ONNX (bytes, or a path when weights are external) and build an engine.

    `timing_cache` None uses `timing_cache_path(<this GPU>, <TensorRT version>)`. `detailed`
    keeps per-layer information (ProfilingVerbosity.DETAILED) for per-layer profiles.
    `input_shape` fixes the dynamic dims of the first input (one optimization profile,
    min = opt = max); other inputs must be static.
    """
    _check_build_args(precision, workspace_mb)
    trt, cudart = require_tensorrt()
    start = time.perf_counter()
    gpu = device_name(cudart)
    strongly_typed = trt_major(trt) >= STRONGLY_TYPED_MAJOR or precision == "auto"
    logger = make_logger(trt)
    builder = trt.Builder(logger)
    network, _parser = _parse(trt, builder, logger, onnx, strongly_typed)  # alive until built
    built = _resolve_precision(trt, network, precision, strongly_typed)
    config = _builder_config(trt, builder, built, workspace_mb, detailed, strongly_typed)
    _add_profile(builder, config, network, input_shape)
    cache_path = Path(timing_cache) if timing_cache is not None else None
    cache_path = cache_path or timing_cache_path(gpu, trt.__version__)
    _attach_timing_cache(config, cache_path)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise UserError(f"TensorRT could not build the engine: {logger.last_error()}")
    _save_timing_cache(config, cache_path)
    return EngineResult(bytes(serialized), trt.__version__, built, time.perf_counter() - start, gpu)


def onnx_input_dims(onnx: bytes | Path) -> list[tuple[str, tuple[int, ...]]]:
    """(name, dims) of each network input as TensorRT parses it; -1 marks a dynamic dim."""
    trt, _ = require_tensorrt()
    logger = make_logger(trt)
    builder = trt.Builder(logger)
    network, _parser = _parse(trt, builder, logger, onnx, strongly_typed=False)
    inputs = [network.get_input(i) for i in range(network.num_inputs)]
    return [(t.name, tuple(int(d) for d in t.shape)) for t in inputs]


def network_precision(trt: Any, network: Any) -> str:
    """The precision an ONNX encodes: the quantized type if it has Q/DQ layers (the type of
    a Quantize output or a Dequantize input), fp16/bf16 if any tensor is half, else fp32."""
    quantized = {getattr(trt.DataType, n, None): n.lower() for n in ("FP8", "INT4", "FP4")}
    halves = {trt.DataType.HALF: "fp16", getattr(trt.DataType, "BF16", None): "bf16"}
    quant, half = None, None
    tensors = [network.get_input(i) for i in range(network.num_inputs)]
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        outputs = [layer.get_output(j) for j in range(layer.num_outputs)]
        if layer.type == trt.LayerType.QUANTIZE:
            quant = quantized.get(outputs[0].dtype) or quant or "int8"
        elif layer.type == trt.LayerType.DEQUANTIZE:
            quant = quantized.get(layer.get_input(0).dtype) or quant or "int8"
        tensors.extend(outputs)
    for tensor in tensors:
        half = half or halves.get(tensor.dtype)
    return quant or half or "fp32"


def trt_major(trt: Any) -> int:
    return int(str(trt.__version__).split(".", 1)[0])


def make_logger(trt: Any) -> Any:
    """A TensorRT logger that forwards warnings and errors to `logging` and keeps the errors,
    so a failed build can say why in one line."""

    class _Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            if severity in (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR):
                self.errors.append(msg)
                _LOG.error("TensorRT: %s", msg)
            elif severity == trt.ILogger.Severity.WARNING:
                _LOG.warning("TensorRT: %s", msg)

        def last_error(self) -> str:
            return _one_line(self.errors[-1]) if self.errors else "no error was logged"

    return _Logger()


# ---- private steps of build_engine ---------------------------------------------------------


def _check_build_args(precision: str, workspace_mb: int) -> None:
    if precision not in BUILD_PRECISIONS:
        raise UserError(
            f"precision must be one of {', '.join(BUILD_PRECISIONS)}, not {precision!r}"
        )
    if not isinstance(workspace_mb, int) or workspace_mb < 1:
        raise UserError(f"workspace_mb must be a positive integer, not {workspace_mb!r}")


def _parse(trt: Any, builder: Any, logger: Any, onnx: bytes | Path, strongly_typed: bool) -> Any:
    """(network, parser); the parser must outlive the build (it owns the weights)."""
    flags = 0
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    if strongly_typed and flag is not None:  # TRT 11 ignores it (always strongly typed)
        flags |= 1 << int(flag)
    init_plugins = getattr(trt, "init_libnvinfer_plugins", None)
    if init_plugins is not None:  # ONNX ops implemented as TensorRT plugins
        init_plugins(logger, "")
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if isinstance(onnx, Path):
        if not onnx.is_file():
            raise UserError(f"ONNX model not found: {onnx}")
        ok = parser.parse_from_file(str(onnx))
    else:
        ok = parser.parse(bytes(onnx))
    if not ok:
        errors = [parser.get_error(i).desc() for i in range(parser.num_errors)]
        why = _one_line(errors[0]) if errors else logger.last_error()
        raise UserError(f"TensorRT cannot parse the ONNX model: {why}")
    return network, parser


def _resolve_precision(trt: Any, network: Any, precision: str, strongly_typed: bool) -> str:
    """The precision the engine will really have, or a UserError when the ONNX cannot give
    the requested one."""
    found = network_precision(trt, network)
    if strongly_typed:
        if precision not in ("auto", found):
            raise UserError(
                f"TensorRT {trt.__version__} takes the precision from the ONNX (strongly "
                f"typed): this model is {found}, not {precision}; {_EXPORT_HINT[precision]}"
            )
        return found
    if precision == "int8" and found != "int8":
        raise UserError(
            "INT8 needs a Q/DQ ONNX (export with `--format onnx-int8`); calibrators are not used"
        )
    if found not in ("fp32", "fp16", precision):
        raise UserError(f"this ONNX is quantized ({found}, Q/DQ nodes): build it as {found}")
    return precision


def _builder_config(
    trt: Any, builder: Any, precision: str, workspace_mb: int, detailed: bool, strongly_typed: bool
) -> Any:
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    if detailed:
        config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    if not strongly_typed:  # TensorRT 10: weak typing, precision by flags
        if precision in ("fp16", "int8"):
            config.set_flag(trt.BuilderFlag.FP16)  # int8: fp16 for the layers left unquantized
        if precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)  # explicit Q/DQ quantization, no calibrator
    return config


def _add_profile(
    builder: Any, config: Any, network: Any, input_shape: tuple[int, ...] | None
) -> None:
    """Pin the first input's dynamic dims to `input_shape` (min = opt = max)."""
    inputs = [network.get_input(i) for i in range(network.num_inputs)]
    profile = None
    for i, tensor in enumerate(inputs):
        dims = tuple(int(d) for d in tensor.shape)
        shape = _fit_shape(tensor.name, dims, input_shape if i == 0 else None)
        if shape != dims:
            profile = profile or builder.create_optimization_profile()
            profile.set_shape(tensor.name, shape, shape, shape)
    if profile is not None:
        config.add_optimization_profile(profile)


def _fit_shape(name: str, dims: tuple[int, ...], shape: tuple[int, ...] | None) -> tuple[int, ...]:
    if shape is None:
        if any(d < 0 for d in dims):
            raise UserError(f"model input {name!r} has dynamic dims {dims}; pass an input shape")
        return dims
    shape = tuple(int(s) for s in shape)
    fits = len(shape) == len(dims)
    fits = fits and all(d < 0 or d == s for d, s in zip(dims, shape, strict=False))
    if not fits or min(shape, default=1) < 1:
        raise UserError(f"input shape {shape} does not fit model input {name!r} {dims}")
    return shape


def _attach_timing_cache(config: Any, path: Path) -> None:
    """Load the cache file if there is a usable one, else start an empty cache."""
    data = b""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        pass
    except OSError as exc:
        _LOG.warning("cannot read the TensorRT timing cache %s: %s", path, exc)
    cache = _timing_cache(config, data) if data else None
    if cache is None or not config.set_timing_cache(cache, False):
        if data:
            _LOG.warning("ignoring the unusable TensorRT timing cache %s", path)
        config.set_timing_cache(config.create_timing_cache(b""), False)


def _timing_cache(config: Any, data: bytes) -> Any:
    try:
        return config.create_timing_cache(data)
    except Exception:  # TensorRT raises its own binding errors for a corrupt blob
        return None


def _save_timing_cache(config: Any, path: Path) -> None:
    """Save the (now extended) cache; a failure costs only future build time, so it warns."""
    try:
        write_atomic(path, bytes(config.get_timing_cache().serialize()))
    except OSError as exc:
        _LOG.warning("cannot save the TensorRT timing cache %s: %s", path, exc)


def _one_line(text: object) -> str:
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    return (lines[0] if lines else type(text).__name__)[:300]
