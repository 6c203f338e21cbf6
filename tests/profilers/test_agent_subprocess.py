"""Tier 3 of the agent's tests: a real `python -m profilers.agent_server` on 127.0.0.1 and a
free port, a bounded readiness poll, and terminate -> kill cleanup."""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

import targets
from profilers.agent_client import AgentClient
from profilers.base import ProfileSettings
from profilers.remote import RemoteProfiler, profile_via_agent, profiler_for
from targets.errors import UserError
from tests.agent_process import REPO, running_agent, tiny_onnx

TOKEN = "subprocess-t0ken"
FAST = ProfileSettings(warmup_ms=5, min_duration_ms=150, min_iters=5)


def env_without_token() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "EMF_AGENT_TOKEN"}


@pytest.fixture(scope="module")
def agent_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_agent(tmp_path_factory.mktemp("agent"), TOKEN, "--max-upload-mb", "1") as url:
        yield url


def test_agent_modules_import_without_torch():
    code = (
        "import sys, profilers.agent_app, profilers.agent_server, profilers.agent_client, "
        "profilers.remote, profilers.trt_engine; assert 'torch' not in sys.modules"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_refuses_to_bind_everywhere_without_a_token():
    argv = [sys.executable, "-m", "profilers.agent_server", "--host", "0.0.0.0", "--port", "9"]
    done = subprocess.run(
        argv, cwd=REPO, capture_output=True, text=True, timeout=60, env=env_without_token()
    )
    assert done.returncode == 2 and "refusing to bind 0.0.0.0" in done.stderr


def test_concurrent_profiles_are_serialised(agent_url):
    results = []

    def job() -> None:
        with AgentClient(agent_url, TOKEN) as client:
            results.append(client.profile(tiny_onnx(), threads=1, settings=FAST))

    threads = [threading.Thread(target=job) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)  # a hang guard: both jobs end on their own
    assert len(results) == 2
    first, second = sorted(results, key=lambda r: r.start_ns)
    assert first.end_ns <= second.start_ns  # the measurement windows never overlap
    assert all(r.measurement.latency_ms.n >= 5 for r in results)


def test_wrong_token_is_a_user_error_and_the_agent_keeps_serving(agent_url):
    with pytest.raises(UserError, match=rf"{agent_url}.*HTTP 401"):
        AgentClient(agent_url, "wrong").health()
    assert AgentClient(agent_url, TOKEN).health()["busy"] is False


def test_oversize_chunked_upload_is_refused_before_it_ends(agent_url):
    """2 MiB of chunked body against a 1 MiB cap: the 413 must come back while the body is
    still being sent (the terminating chunk is never written)."""
    port = int(agent_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"POST /profile HTTP/1.1\r\nHost: agent\r\nTransfer-Encoding: chunked\r\n"
            b"Authorization: Bearer " + TOKEN.encode() + b"\r\n\r\n"
        )
        chunk = b"10000\r\n" + b"\0" * 0x10000 + b"\r\n"  # 64 KiB
        sent = 0
        while sent < 32 and not select.select([sock], [], [], 0.05)[0]:
            try:
                sock.sendall(chunk)
            except OSError:  # the agent answered and closed; its answer is still readable
                break
            sent += 1
        sock.settimeout(10)
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert AgentClient(agent_url, TOKEN).health()["status"] == "ok"


def test_remote_target_from_yaml_is_profiled_through_its_agent(agent_url, tmp_path, monkeypatch):
    (tmp_path / "remote-box.yaml").write_text(
        "name: remote-box\ndescription: a board reached through its agent\n"
        "runtime: onnxruntime\nexecution_provider: CPUExecutionProvider\nthreads: 1\n"
        f"input_shape: [1, 1, 28, 28]\nagent:\n  url: {agent_url}\n"
        "  token_env: EMF_TEST_REMOTE_TOKEN\n"
    )
    monkeypatch.setenv("EMF_TARGETS_DIR", str(tmp_path))
    monkeypatch.setenv("EMF_TEST_REMOTE_TOKEN", TOKEN)
    target = targets.get_target("remote-box")
    m = profile_via_agent(tiny_onnx(), target, None, FAST)
    assert (m.target, m.threads, m.input_shape, m.how) == (
        "remote-box",
        1,
        (1, 1, 28, 28),
        "measured",
    )
    assert m.provider == "CPUExecutionProvider" and m.latency_ms.median > 0

    model_path = tmp_path / "tiny.onnx"
    model_path.write_bytes(tiny_onnx())
    profiler = profiler_for(target)
    assert isinstance(profiler, RemoteProfiler)
    assert profiler.profile(model_path, target, settings=FAST).target == "remote-box"

    monkeypatch.delenv("EMF_TEST_REMOTE_TOKEN")
    with pytest.raises(UserError, match=r"set \$EMF_TEST_REMOTE_TOKEN"):
        profile_via_agent(tiny_onnx(), target, None, FAST)
