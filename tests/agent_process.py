"""A real `python -m profilers.agent_server` on 127.0.0.1 for tests: free port, token file,
bounded readiness poll, terminate→kill cleanup; and the tiny ONNX model they send it.
Shared by the agent and CLI tests."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

REPO = Path(__file__).resolve().parents[1]


def tiny_onnx() -> bytes:
    """Conv3x3, 1 -> 4 channels, no bias, on a (1, 1, 28, 28) input, opset 17."""
    w = onnx.numpy_helper.from_array(np.ones((4, 1, 3, 3), np.float32), "w")
    conv = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 28, 28])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 28, 28])
    graph = helper.make_graph([conv], "tiny", [x], [y], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_agent(tmp: Path, token: str, *extra_args: str) -> Iterator[str]:
    """Start the agent with a token file in `tmp`; yields its base URL."""
    with running_agent_process(tmp, token, *extra_args) as (url, _proc):
        yield url


@contextlib.contextmanager
def running_agent_process(
    tmp: Path, token: str, *extra_args: str
) -> Iterator[tuple[str, subprocess.Popen]]:
    """As `running_agent`, also yielding the process (for tests that take an agent down)."""
    (tmp / "token").write_text(token)
    (tmp / "token").chmod(0o600)
    port = free_port()
    argv = [sys.executable, "-m", "profilers.agent_server", "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--token-file", str(tmp / "token"), *extra_args]
    log = (tmp / "agent.log").open("w")
    proc = subprocess.Popen(argv, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc, tmp / "agent.log", timeout_s=300)  # a hang guard
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


def wait_ready(url: str, proc: subprocess.Popen, log: Path, timeout_s: float) -> None:
    """Poll /health until the agent answers (401: up, wants the token), bounded."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"agent exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 401:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"agent not ready after {timeout_s} s:\n{log.read_text()}")
