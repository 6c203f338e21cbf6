"""Tier 1 of the agent's tests: the real app in-process (TestClient / raw ASGI calls), plus
the real client talking to it. Models are built with onnx.helper, so no torch is needed."""

from __future__ import annotations

import asyncio
import pickle
import threading
import time
import warnings

import numpy as np
import onnx
import pytest
from fastapi import FastAPI
from onnx import TensorProto, helper

from profilers import agent_app
from profilers.agent_app import AgentConfig, create_app
from profilers.agent_client import PROTOCOL, PROTOCOL_HEADER, AgentClient
from profilers.base import ProfileSettings
from profilers.measurement import Measurement
from profilers.trt_engine import trt_available
from targets.errors import UserError

with warnings.catch_warnings():  # starlette nags about httpx vs httpx2 at import
    warnings.simplefilter("ignore", UserWarning)
    from fastapi.testclient import TestClient

TOKEN = "t0ken-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FAST = {"warmup_ms": 5, "min_duration_ms": 20, "min_iters": 5, "threads": 1}


def tiny_onnx(channels: int = 4, size: int = 28, external: str | None = None) -> bytes:
    """Conv3x3 + Relu on a (1, 1, size, size) input, opset 17."""
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((channels, 1, 3, 3)).astype(np.float32)
    w = onnx.numpy_helper.from_array(weight, "w")
    if external:
        w.data_location = TensorProto.EXTERNAL
        w.external_data.add(key="location", value=external)
        w.ClearField("raw_data")
    conv = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])
    relu = helper.make_node("Relu", ["y"], ["z"])
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, size, size])
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, channels, size, size])
    graph = helper.make_graph([conv, relu], "tiny", [x], [z], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


@pytest.fixture()
def client():
    with TestClient(create_app(AgentConfig(token=TOKEN))) as c:
        yield c


def assert_alive(client: TestClient) -> None:
    assert client.get("/health", headers=AUTH).status_code == 200


def post_model(client: TestClient, data: bytes, **params: object):
    return client.post("/profile", content=data, headers=AUTH, params={**FAST, **params})


def test_health_reports_protocol_device_and_limits(client):
    r = client.get("/health", headers=AUTH)
    assert r.status_code == 200
    assert r.headers[PROTOCOL_HEADER] == str(PROTOCOL)
    body = r.json()
    assert body["protocol"] == PROTOCOL and body["busy"] is False
    assert "CPUExecutionProvider" in body["providers"]
    assert body["device"]["cpu"] and body["device"]["onnxruntime"]
    assert body["max_upload_bytes"] == 256 * 2**20


def test_profile_measures_the_uploaded_model(client):
    r = post_model(client, tiny_onnx(), target="my-board", per_op=True, min_iters=7)
    assert r.status_code == 200, r.text
    body = r.json()
    m = Measurement.from_dict(body["measurement"])
    assert m.target == "my-board" and m.how == "measured" and m.threads == 1
    assert m.input_shape == (1, 1, 28, 28)  # taken from the model
    assert m.latency_ms.n >= 7 and 0 < m.latency_ms.min <= m.latency_ms.median
    assert "Conv" in m.per_op_ms
    assert 0 < body["window"]["start_ns"] < body["window"]["end_ns"]


@pytest.mark.parametrize(
    ("headers", "path"),
    [({}, "/health"), ({"Authorization": "Bearer wrong"}, "/health"), ({}, "/profile")],
)
def test_missing_or_wrong_token_is_401(client, headers, path):
    r = client.request("GET" if path == "/health" else "POST", path, headers=headers)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert r.headers[PROTOCOL_HEADER] == str(PROTOCOL)
    assert_alive(client)


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"this is not onnx at all" * 10, "not a valid ONNX model"),
        (pickle.dumps({"evil": 1}), "not a valid ONNX model"),
        (b"", "empty body"),
        (tiny_onnx(external="../../etc/passwd"), "external tensor data"),
        (tiny_onnx(external="pyproject.toml"), "external tensor data"),  # exists in cwd
    ],
)
def test_anything_but_onnx_is_400_with_a_message(client, data, needle):
    r = post_model(client, data)
    assert r.status_code == 400 and needle in r.json()["detail"]
    assert_alive(client)


def test_invalid_graph_fails_the_checker(client):
    node = helper.make_node("NoSuchOp", ["x"], ["y"])
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    graph = helper.make_graph([node], "bad", [x], [helper.make_tensor_value_info("y", 1, [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    r = post_model(client, model.SerializeToString())
    assert r.status_code == 400 and "NoSuchOp" in r.json()["detail"]


@pytest.mark.parametrize(
    "params",
    [
        {"threads": 0},
        {"typo_setting": 1},
        {"input_shape": "1xAx28"},
        {"min_iters": 9, "max_iters": 3},
    ],
)
def test_bad_settings_are_400(client, params):
    r = post_model(client, tiny_onnx(), **params)
    assert r.status_code == 400 and r.json()["detail"]


def test_shape_that_does_not_fit_the_model_is_400(client):
    r = post_model(client, tiny_onnx(), input_shape="1x3x28x28")
    assert r.status_code == 400 and "does not fit" in r.json()["detail"]


def test_unavailable_provider_is_400_naming_it(client):
    r = post_model(client, tiny_onnx(), provider="NoSuchExecutionProvider")
    assert r.status_code == 400 and "NoSuchExecutionProvider" in r.json()["detail"]


def test_oversize_upload_is_413():
    app = create_app(AgentConfig(token=TOKEN, max_upload_bytes=1000))
    with TestClient(app) as c:
        r = post_model(c, tiny_onnx(channels=64))  # ~2.4 kB
        assert r.status_code == 413 and "cap" in r.json()["detail"]
        assert_alive(c)
        assert post_model(c, tiny_onnx(channels=4)).status_code == 200


def test_cap_is_enforced_while_the_body_streams_in():
    """No Content-Length, 64 KiB chunks of a 16 MiB body, cap 256 KiB: the app must answer
    413 after reading about the cap, not after the whole body."""
    app = create_app(AgentConfig(max_upload_bytes=256 * 1024))
    chunk, total_chunks, pulled = b"\0" * 65536, 256, []
    sent: list[dict] = []

    async def receive() -> dict:
        pulled.append(1)
        return {"type": "http.request", "body": chunk, "more_body": len(pulled) < total_chunks}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/profile",
        "raw_path": b"/profile",
        "query_string": b"",
        "headers": [],
        "http_version": "1.1",
        "scheme": "http",
        "root_path": "",
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 413
    assert len(pulled) <= 5  # 4 chunks fill the cap, the 5th passes it


def test_engine_without_tensorrt_is_501(client):
    if trt_available()[0]:
        pytest.skip("TensorRT and a GPU are available here")
    r = client.post("/engine", content=tiny_onnx(), headers=AUTH)
    assert r.status_code == 501 and "TensorRT" in r.json()["detail"]
    assert_alive(client)
    with pytest.raises(UserError, match=r"/engine: HTTP 501: .*TensorRT"):
        AgentClient("http://testserver", TOKEN, http=client).build_engine(tiny_onnx())


@pytest.mark.gpu
def test_engine_is_built_on_the_agents_gpu(client):
    ok, reason = trt_available()
    if not ok:
        pytest.skip(reason)
    built = AgentClient("http://testserver", TOKEN, http=client).build_engine(
        tiny_onnx(), precision="fp16"
    )
    assert built.engine_bytes and built.precision == "fp16" and built.build_s > 0
    assert built.device_name and built.trt_version


def test_concurrent_jobs_never_share_the_device(client):
    windows: list[dict] = []

    def job() -> None:
        r = post_model(client, tiny_onnx(), min_duration_ms=150)
        assert r.status_code == 200, r.text
        windows.append(r.json()["window"])

    threads = [threading.Thread(target=job) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)  # a hang guard: both jobs end on their own
    first, second = sorted(windows, key=lambda w: w["start_ns"])
    assert first["end_ns"] <= second["start_ns"]


def test_job_limit_is_504_and_the_device_stays_reserved_until_the_run_ends(monkeypatch):
    """A job over the limit gets 504; the runtime cannot be interrupted, so /health reports
    the device busy and another job waits (503) until the run really ends.

    Decided by events, not by how fast this machine is: the real profiling job is held
    until the test releases it, so it outlasts the limit however idle or loaded the machine,
    and the limit only has to cover one tiny profile once it is free (2 s: ~50 ms here)."""
    held, release = threading.Event(), threading.Event()
    real = agent_app._profile_job

    def held_job(*args):  # the real job, which ends only when the test says so
        held.set()
        assert release.wait(600)
        return real(*args)

    monkeypatch.setattr(agent_app, "_profile_job", held_job)
    app = create_app(AgentConfig(token=TOKEN, job_timeout_s=2.0))
    with TestClient(app) as c:
        r = post_model(c, tiny_onnx())
        assert r.status_code == 504 and "limit" in r.json()["detail"] and held.is_set()
        assert c.get("/health", headers=AUTH).json()["busy"] is True
        assert post_model(c, tiny_onnx()).status_code == 503
        monkeypatch.setattr(agent_app, "_profile_job", real)
        release.set()
        deadline = time.monotonic() + 600  # a hang guard: the run ends once released
        while c.get("/health", headers=AUTH).json()["busy"] and time.monotonic() < deadline:
            time.sleep(0.02)
        assert post_model(c, tiny_onnx()).status_code == 200


# ---- the real client against the in-process app ------------------------------------


def test_client_profiles_and_reports_health(client):
    agent = AgentClient("http://testserver", TOKEN, http=client)
    assert agent.health()["protocol"] == PROTOCOL
    settings = ProfileSettings(warmup_ms=5, min_duration_ms=20, min_iters=5)
    result = agent.profile(tiny_onnx(), target_name="t", threads=1, settings=settings)
    assert result.measurement.target == "t" and result.measurement.latency_ms.n >= 5
    assert result.start_ns < result.end_ns


def test_client_errors_are_one_line_user_errors_naming_the_url(client):
    with pytest.raises(UserError, match=r"http://testserver.*401.*token") as info:
        AgentClient("http://testserver", "wrong", http=client).health()
    assert "\n" not in str(info.value)
    agent = AgentClient("http://testserver", TOKEN, http=client)
    with pytest.raises(UserError, match=r"http://testserver/profile: HTTP 400: not a valid ONNX"):
        agent.profile(b"garbage bytes")


def test_client_refuses_a_model_over_the_agents_cap():
    app = create_app(AgentConfig(max_upload_bytes=1000))
    with TestClient(app) as c, pytest.raises(UserError, match="upload cap"):
        AgentClient("http://testserver", http=c).profile(tiny_onnx(channels=64))


def test_client_refuses_another_protocol(client, monkeypatch):
    monkeypatch.setattr(agent_app, "PROTOCOL", PROTOCOL + 1)
    with pytest.raises(UserError, match=rf"protocol {PROTOCOL + 1}, this client speaks {PROTOCOL}"):
        AgentClient("http://testserver", TOKEN, http=client).health()


def test_client_refuses_a_server_that_is_not_an_agent():
    other = FastAPI()
    other.get("/health")(lambda: {"status": "ok"})
    with TestClient(other) as c, pytest.raises(UserError, match="not an edge-model-factory agent"):
        AgentClient("http://testserver", http=c).health()


def test_client_gives_up_after_bounded_retries_when_nobody_listens(unused_port):
    agent = AgentClient(f"http://127.0.0.1:{unused_port}", retries=2, backoff_s=0.01)
    start = time.monotonic()
    with pytest.raises(UserError, match=r"127\.0\.0\.1.*cannot connect after 3 tries"):
        agent.health()
    assert time.monotonic() - start < 5


@pytest.fixture()
def unused_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
