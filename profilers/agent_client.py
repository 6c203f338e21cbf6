"""HTTP client of the device agent (`profilers.agent_app`), on httpx.

It checks the agent's protocol version once (from `/health`) and on every response (the
`X-EMF-Agent-Protocol` header), retries only connection failures (the request never reached
the agent) a bounded number of times, and turns every failure into a one-line `UserError`
naming the agent's URL. The protocol constants live here, the lighter of the two ends, and
the app imports them. No torch in this import path.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from profilers.base import ProfileSettings
from profilers.measurement import Measurement
from profilers.trt_engine import EngineResult
from targets.errors import UserError

PROTOCOL = 1  # bump on any incompatible change to the agent's endpoints
PROTOCOL_HEADER = "X-EMF-Agent-Protocol"
ENGINE_HEADERS = {  # `/engine` answers: EngineResult field -> response header
    "precision": "X-EMF-Engine-Precision",
    "trt_version": "X-EMF-TensorRT-Version",
    "build_s": "X-EMF-Build-Seconds",
    "device_name": "X-EMF-Engine-Device",
}
_RETRYABLE = (httpx.ConnectError, httpx.ConnectTimeout)


class AgentUnreachable(UserError):
    """The agent cannot be reached or dropped the connection: the board (or its network)
    is down, not the request at fault. A farm moves such an agent's work to the others."""


@dataclass(frozen=True)
class AgentResult:
    """A measurement from the agent and when it ran (agent's `time.monotonic_ns()`)."""

    measurement: Measurement
    start_ns: int
    end_ns: int


class AgentClient:
    """Talks to one agent. `http` lets tests pass an in-process client (e.g. a TestClient)."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout_s: float = 660.0,  # > the agent's default job limit plus its device wait
        connect_timeout_s: float = 5.0,
        retries: int = 2,
        backoff_s: float = 0.5,
        http: httpx.Client | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.retries = retries
        self.backoff_s = backoff_s
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        timeout = httpx.Timeout(timeout_s, connect=connect_timeout_s)
        self._http = http or httpx.Client(timeout=timeout)
        self._owns_http = http is None
        self._health: dict[str, Any] | None = None

    def __enter__(self) -> AgentClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def health(self) -> dict[str, Any]:
        """The agent's `/health` answer, after checking that it speaks our protocol."""
        data = self._request("GET", "/health").json()
        if data.get("protocol") != PROTOCOL:
            self._mismatch(data.get("protocol"))
        self._health = data
        return data

    def profile(
        self,
        model: bytes | Path,
        *,
        target_name: str = "agent",
        runtime: str = "onnxruntime",
        provider: str = "CPUExecutionProvider",
        precision: str = "fp32",
        threads: int | None = None,
        input_shape: tuple[int, ...] | None = None,
        default_shape: tuple[int, ...] = (1, 3, 224, 224),
        settings: ProfileSettings | None = None,
    ) -> AgentResult:
        """Upload an ONNX model and have the agent time it on its device."""
        data = self._model_bytes(model)
        params: dict[str, Any] = {
            "target": target_name,
            "runtime": runtime,
            "provider": provider,
            "precision": precision,
            "default_shape": _shape_text(default_shape),
            **_settings_params(settings or ProfileSettings()),
        }
        if threads is not None:
            params["threads"] = threads
        if input_shape is not None:
            params["input_shape"] = _shape_text(input_shape)
        body = self._request("POST", "/profile", content=data, params=params).json()
        try:
            window = body["window"]
            measurement = Measurement.from_dict(body["measurement"])
            return AgentResult(measurement, int(window["start_ns"]), int(window["end_ns"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"agent {self.url}: malformed /profile answer ({exc})") from exc

    def build_engine(
        self,
        model: bytes | Path,
        precision: str = "fp16",
        input_shape: tuple[int, ...] | None = None,
        workspace_mb: int = 1024,
    ) -> EngineResult:
        """A TensorRT engine built on the agent's device (it only runs on that GPU)."""
        params: dict[str, Any] = {"precision": precision, "workspace_mb": workspace_mb}
        if input_shape is not None:
            params["input_shape"] = _shape_text(input_shape)
        data = self._model_bytes(model)
        response = self._request("POST", "/engine", content=data, params=params)
        meta = {field: response.headers.get(h, "") for field, h in ENGINE_HEADERS.items()}
        try:
            build_s = float(meta.pop("build_s"))
        except ValueError as exc:
            raise UserError(f"agent {self.url}: malformed /engine answer ({exc})") from exc
        return EngineResult(response.content, build_s=build_s, **meta)

    # ---- internals ------------------------------------------------------------------

    def _model_bytes(self, model: bytes | Path) -> bytes:
        """The model's bytes, checked against the agent's upload cap before sending."""
        data = Path(model).expanduser().read_bytes() if isinstance(model, str | Path) else model
        health = self._health or self.health()
        cap = int(health.get("max_upload_bytes", 0))
        if cap and len(data) > cap:
            raise UserError(
                f"agent {self.url}: model is {len(data) / 2**20:.1f} MiB, over the agent's "
                f"upload cap of {cap / 2**20:.0f} MiB (start it with a larger --max-upload-mb)"
            )
        return bytes(data)

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        if "content" in kwargs:
            kwargs["headers"] = {**self._headers, "Content-Type": "application/octet-stream"}
        else:
            kwargs["headers"] = self._headers
        response = self._send(method, path, **kwargs)
        got = response.headers.get(PROTOCOL_HEADER)
        if got is None:
            raise UserError(
                f"agent {self.url}: not an edge-model-factory agent (HTTP {response.status_code}"
                f" without a {PROTOCOL_HEADER} header)"
            )
        if got != str(PROTOCOL):
            self._mismatch(got)
        if response.status_code >= 400:
            raise UserError(f"agent {self.url}{path}: {_problem(response)}")
        return response

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request; connection failures are retried `retries` times with backoff."""
        for attempt in range(self.retries + 1):
            try:
                return self._http.request(method, f"{self.url}{path}", **kwargs)
            except _RETRYABLE as exc:
                if attempt == self.retries:
                    tries = self.retries + 1
                    raise AgentUnreachable(
                        f"agent {self.url}: cannot connect after {tries} tries ({_one_line(exc)});"
                        f" is `factory agent` running there?"
                    ) from exc
                time.sleep(self.backoff_s * 2**attempt)
            except httpx.TimeoutException as exc:
                raise UserError(f"agent {self.url}{path}: timed out ({_one_line(exc)})") from exc
            except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError) as exc:
                raise AgentUnreachable(f"agent {self.url}{path}: {_one_line(exc)}") from exc
            except httpx.HTTPError as exc:  # e.g. the agent dropped an oversize upload
                raise UserError(f"agent {self.url}{path}: {_one_line(exc)}") from exc
        raise AssertionError("unreachable")

    def _mismatch(self, got: object) -> None:
        raise UserError(
            f"agent {self.url}: speaks protocol {got}, this client speaks {PROTOCOL}; "
            f"install the same edge-model-factory version on both machines"
        )


def _settings_params(settings: ProfileSettings) -> dict[str, Any]:
    params: dict[str, Any] = {
        "warmup_ms": settings.warmup_ms,
        "min_duration_ms": settings.min_duration_ms,
        "min_iters": settings.min_iters,
        "max_iters": settings.max_iters,
        "per_op": settings.per_op,
    }
    if settings.batch is not None:
        params["batch"] = settings.batch
    return params


def _shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(str(int(d)) for d in shape)


def _problem(response: httpx.Response) -> str:
    """`HTTP 413: upload exceeds ...`, from the agent's `{"detail": ...}` when it has one."""
    try:
        detail = response.json().get("detail")
    except ValueError:
        detail = None
    text = str(detail) if detail else response.text or response.reason_phrase
    hint = " (check the token)" if response.status_code == 401 else ""
    return f"HTTP {response.status_code}: {_one_line(text)}{hint}"


def _one_line(exc: object) -> str:
    return (" ".join(str(exc).split()) or type(exc).__name__)[:300]
