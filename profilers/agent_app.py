"""The on-device agent's HTTP API: `create_app(config)` builds it and does nothing at import.

The agent runs on a device that has only a runtime installed, so this module's import path
is fastapi, onnx, onnxruntime (through the profilers) and the standard library, never torch.

Protocol `PROTOCOL` (defined in `agent_client`; also sent as the `X-EMF-Agent-Protocol`
header on every response):

- `GET /health` -> status, protocol, agent version, busy flag, upload cap, job limit, ONNX
  Runtime providers, TensorRT version (or null) and `device_info()` (CPU, GPU, Jetson mode).
- `POST /profile` -> `{"protocol", "measurement": Measurement.to_dict(), "window": {"start_ns",
  "end_ns"}}`, the window being `time.monotonic_ns()` on the agent around the measurement.
  The body is the raw ONNX bytes (`Content-Type: application/octet-stream`); the settings
  are query parameters (see `ProfileQuery`), e.g. `?input_shape=1x3x224x224&threads=1`.
- `GET /openapi.json` -> this API as OpenAPI 3 (`agent_openapi`): every status, the body.
- `POST /engine` -> the serialized TensorRT engine built on this device from the raw ONNX
  body by `profilers.trt_engine.build_engine` (query: precision, input_shape, workspace_mb;
  what was built in `ENGINE_HEADERS`); 501 where TensorRT or a GPU is missing.

Security: with a token configured, every endpoint needs `Authorization: Bearer <token>`
(compared in constant time) and is checked before any body is read. Uploads over the cap get
413 while the body is streamed in. Only ONNX that passes `onnx.checker` with no external
tensor data is accepted (400 with the reason otherwise; nothing is ever unpickled). One job
holds the device at a time (a lock; the job runs in a worker thread); a job gets `job_timeout_s` of
device time (504 after it) and waits at most as long for the device (503).
"""

from __future__ import annotations

import asyncio
import hmac
import importlib.metadata
import importlib.util
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

import onnx
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from profilers.agent_client import ENGINE_HEADERS, PROTOCOL, PROTOCOL_HEADER
from profilers.agent_openapi import complete
from profilers.base import ProfileSettings, check_input_size
from profilers.device_info import device_info
from targets.errors import UserError
from targets.target import Target

MiB = 1024 * 1024
T = TypeVar("T")


@dataclass(frozen=True)
class AgentConfig:
    """What the launcher decides: the token (None = open, loopback only), upload cap, limits."""

    token: str | None = None
    max_upload_bytes: int = 256 * MiB
    job_timeout_s: float = 300.0


class ProfileQuery(BaseModel):
    """Settings of `POST /profile`; unset ones take `ProfileSettings`'s defaults."""

    model_config = ConfigDict(extra="forbid")

    target: str = "agent"  # the name recorded in the measurement (the caller's target)
    runtime: Literal["onnxruntime", "tensorrt"] = "onnxruntime"
    provider: str = "CPUExecutionProvider"
    precision: Literal["fp32", "fp16", "int8"] = "fp32"
    threads: int | None = Field(None, ge=1, le=1024)
    input_shape: str | None = None  # "1x3x224x224"; None: from the model's input
    default_shape: str = "1x3x224x224"  # fills the model's dynamic dims
    warmup_ms: float | None = Field(None, ge=0)
    min_duration_ms: float | None = Field(None, gt=0)
    min_iters: int | None = Field(None, ge=1)
    max_iters: int | None = Field(None, ge=1)
    per_op: bool | None = None
    batch: int | None = Field(None, ge=1)


class EngineQuery(BaseModel):
    """Settings of `POST /engine`."""

    model_config = ConfigDict(extra="forbid")

    precision: Literal["fp32", "fp16", "int8", "auto"] = "fp16"  # auto: as the ONNX says
    input_shape: str | None = None  # needed when the model has dynamic dims
    workspace_mb: int = Field(1024, ge=16, le=1 << 20)


class _ProtocolHeader:
    """Pure ASGI middleware: stamps the protocol version on every HTTP response."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_stamped(message: dict) -> None:
            if message["type"] == "http.response.start":
                header = (PROTOCOL_HEADER.lower().encode(), str(PROTOCOL).encode())
                message = {**message, "headers": [*message.get("headers", []), header]}
            await send(message)

        await self.app(scope, receive, send_stamped)


class _Device:
    """One job on the device at a time. Waiting for the lock happens on the event loop (no
    thread is held while queued); the worker thread that runs the job releases it, so a
    request that is cancelled or times out never leaves the device locked."""

    POLL_S = 0.02

    def __init__(self, job_timeout_s: float) -> None:
        self.job_timeout_s = job_timeout_s
        self._lock = threading.Lock()

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    async def run(self, job: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.job_timeout_s
        while not self._lock.acquire(blocking=False):
            if loop.time() > deadline:
                raise HTTPException(503, f"device busy for over {self.job_timeout_s:g} s")
            await asyncio.sleep(self.POLL_S)
        # No await between acquiring and handing over, so no cancellation can leak the lock.
        future = loop.run_in_executor(None, self._release_after, job)
        try:  # shield: the runtime cannot be interrupted, the thread finishes on its own
            return await asyncio.wait_for(asyncio.shield(future), self.job_timeout_s)
        except asyncio.TimeoutError:
            msg = f"job exceeded the agent's limit of {self.job_timeout_s:g} s"
            raise HTTPException(504, msg) from None

    def _release_after(self, job: Callable[[], T]) -> T:
        try:
            return job()
        finally:
            self._lock.release()


def create_app(config: AgentConfig | None = None) -> FastAPI:
    """The agent's ASGI app; all state (lock, limits) lives in this call, none at import."""
    config = config or AgentConfig()
    device = _Device(config.job_timeout_s)
    app = FastAPI(
        title="edge-model-factory agent",
        dependencies=[Depends(_auth_dependency(config.token))],
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.add_middleware(_ProtocolHeader)
    app.add_exception_handler(RequestValidationError, _bad_query)
    documented: list[dict[str, Any]] = []

    @app.get("/openapi.json")
    async def openapi() -> dict[str, Any]:
        """This API's OpenAPI document (every status, the ONNX body, the token)."""
        if not documented:
            documented.append(complete(app.openapi(), token=config.token is not None))
        return documented[0]

    @app.get("/health")
    async def health() -> dict[str, Any]:
        info = await asyncio.get_running_loop().run_in_executor(None, device_info)
        return _health(config, device.busy, info)

    @app.post("/profile")
    async def profile(request: Request, query: Annotated[ProfileQuery, Query()]) -> dict[str, Any]:
        settings, shape, default_shape = _profile_settings(query, config.job_timeout_s)
        data = await _read_onnx(request, config.max_upload_bytes)
        return await device.run(lambda: _profile_job(data, query, settings, shape, default_shape))

    @app.post("/engine")
    async def engine(request: Request, query: Annotated[EngineQuery, Query()]) -> Response:
        ok, reason = await asyncio.get_running_loop().run_in_executor(None, _trt_available)
        if not ok:
            raise HTTPException(501, f"this agent cannot build TensorRT engines: {reason}")
        shape = _parse_shape(query.input_shape, "input_shape") if query.input_shape else None
        data = await _read_onnx(request, config.max_upload_bytes)
        return await device.run(lambda: _engine_job(data, query, shape))

    return app


def _auth_dependency(token: str | None) -> Callable[[Request], None]:
    expected = token.encode() if token else None

    def check(request: Request) -> None:
        if expected is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        ok = scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected)
        if not ok:
            headers = {"WWW-Authenticate": "Bearer"}
            raise HTTPException(401, "missing or wrong bearer token", headers=headers)

    return check


async def _bad_query(request: Request, exc: Exception) -> JSONResponse:
    """Bad query parameters are a 400 with one readable line, not FastAPI's 422 dump."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    parts = [f"{'.'.join(str(p) for p in e.get('loc', ())[1:])}: {e.get('msg')}" for e in errors]
    return JSONResponse({"detail": "bad query: " + "; ".join(parts)}, status_code=400)


def _health(config: AgentConfig, busy: bool, info: dict[str, Any]) -> dict[str, Any]:
    return {
        "status": "ok",
        "protocol": PROTOCOL,
        "version": _version("edge-model-factory"),
        "busy": busy,
        "max_upload_bytes": config.max_upload_bytes,
        "job_timeout_s": config.job_timeout_s,
        "providers": _ort_providers(),
        "tensorrt": _tensorrt_version(),
        "device": info,
    }


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _trt_available() -> tuple[bool, str]:
    from profilers.trt_engine import trt_available  # lazy: see _engine_job

    return trt_available()


def _ort_providers() -> list[str]:
    """ONNX Runtime's providers here; [] on a TensorRT-only device."""
    try:
        import onnxruntime
    except ImportError:
        return []
    return list(onnxruntime.get_available_providers())


def _tensorrt_version() -> str | None:
    """Without importing it (slow, touches CUDA); apt-installed builds carry no metadata."""
    if importlib.util.find_spec("tensorrt") is None:
        return None
    return _version("tensorrt") or "unknown version"


def _parse_shape(text: str, name: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(d) for d in text.lower().split("x"))
    except ValueError:
        shape = ()
    if not shape or min(shape) < 1:
        raise HTTPException(400, f"{name} must look like 1x3x224x224, not {text!r}")
    try:
        check_input_size(shape, name)
    except UserError as exc:
        raise HTTPException(400, _one_line(exc)) from None
    return shape


def _profile_settings(
    query: ProfileQuery, job_timeout_s: float
) -> tuple[ProfileSettings, tuple[int, ...] | None, tuple[int, ...]]:
    """Checks the query before any upload is read: the settings, shape and fallback shape."""
    fields = ("warmup_ms", "min_duration_ms", "min_iters", "max_iters", "per_op", "batch")
    given = {f: getattr(query, f) for f in fields if getattr(query, f) is not None}
    try:
        settings = ProfileSettings(**given)
    except UserError as exc:
        raise HTTPException(400, _one_line(exc)) from None
    if (settings.warmup_ms + settings.min_duration_ms) / 1000 > job_timeout_s:
        msg = f"warmup_ms + min_duration_ms exceed the agent's job limit of {job_timeout_s:g} s"
        raise HTTPException(400, msg)
    shape = _parse_shape(query.input_shape, "input_shape") if query.input_shape else None
    return settings, shape, _parse_shape(query.default_shape, "default_shape")


async def _read_onnx(request: Request, cap_bytes: int) -> bytes:
    """Streams the body in, refusing it (413) as soon as it passes the cap, then checks it."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap_bytes:
        raise HTTPException(413, f"upload of {declared} bytes exceeds the cap of {cap_bytes}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > cap_bytes:
            raise HTTPException(413, f"upload exceeds the cap of {cap_bytes} bytes")
    if not body:
        raise HTTPException(400, "empty body: send the ONNX model's bytes")
    data = bytes(body)
    await asyncio.get_running_loop().run_in_executor(None, _check_onnx, data)
    return data


def _check_onnx(data: bytes) -> None:
    """Parse and check; external data is refused first, as the checker would look for the
    named files on the agent's disk."""
    try:
        model = onnx.load_model_from_string(data)
        if any(t.data_location == onnx.TensorProto.EXTERNAL for t in _tensors(model.graph)):
            raise HTTPException(400, "external tensor data is not accepted: embed the weights")
        onnx.checker.check_model(model)
    except HTTPException:
        raise
    except Exception as exc:  # DecodeError, ValidationError, ...: all mean "not ONNX"
        raise HTTPException(400, f"not a valid ONNX model: {_one_line(exc)}") from None


def _tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    """Every tensor a graph holds: initializers and attribute tensors, subgraphs included."""
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            for sub in [attr.g] if attr.HasField("g") else []:
                yield from _tensors(sub)
            for sub in attr.graphs:
                yield from _tensors(sub)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]


def _profile_job(
    data: bytes,
    query: ProfileQuery,
    settings: ProfileSettings,
    shape: tuple[int, ...] | None,
    default_shape: tuple[int, ...],
) -> dict[str, Any]:
    """Runs on the worker thread holding the device: profile with this device's profiler."""
    from profilers.registry import get_profiler

    target = Target(
        name=query.target,
        description="this device, as seen by the agent",
        runtime=query.runtime,
        execution_provider=query.provider,
        precision=query.precision,
        threads=query.threads,
        input_shape=default_shape,
    )
    try:
        profiler = get_profiler(target)
        start_ns = time.monotonic_ns()
        measurement = profiler.profile(data, target, shape, settings)
        end_ns = time.monotonic_ns()
    except UserError as exc:
        raise HTTPException(400, _one_line(exc)) from None
    except Exception as exc:  # the runtime's own errors: report them, keep serving
        raise HTTPException(500, f"{type(exc).__name__}: {_one_line(exc)}") from None
    window = {"start_ns": start_ns, "end_ns": end_ns}
    return {"protocol": PROTOCOL, "measurement": measurement.to_dict(), "window": window}


def _engine_job(data: bytes, query: EngineQuery, shape: tuple[int, ...] | None) -> Response:
    """Runs on the worker thread holding the device: build with the one engine builder
    (TensorRT 10 and 11, timing cache) that the profiler and the exporters use too."""
    from profilers.trt_engine import build_engine

    try:
        built = build_engine(data, query.precision, query.workspace_mb, input_shape=shape)
    except UserError as exc:
        raise HTTPException(400, _one_line(exc)) from None
    except Exception as exc:  # TensorRT's own errors: report them, keep serving
        raise HTTPException(500, f"{type(exc).__name__}: {_one_line(exc)}") from None
    headers = {
        ENGINE_HEADERS["precision"]: built.precision,
        ENGINE_HEADERS["trt_version"]: built.trt_version,
        ENGINE_HEADERS["build_s"]: f"{built.build_s:.3f}",
        ENGINE_HEADERS["device_name"]: built.device_name,
    }
    return Response(built.engine_bytes, media_type="application/octet-stream", headers=headers)
