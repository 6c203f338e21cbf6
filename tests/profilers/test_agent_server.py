"""Tier 2 of the agent's tests: the launcher (and `factory agent`) with `uvicorn.run` patched,
so the checks before the server starts are real and the app it would serve is inspected."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import typer
import uvicorn
from typer.testing import CliRunner

from factory.cli.agent_cmd import agent
from profilers import agent_server
from profilers.agent_server import TOKEN_ENV, is_loopback, main, read_token, serve
from targets.errors import UserError

with warnings.catch_warnings():  # starlette nags about httpx vs httpx2 at import
    warnings.simplefilter("ignore", UserWarning)
    from fastapi.testclient import TestClient


@pytest.fixture()
def started(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Records each `uvicorn.run` call instead of serving; no token in the environment."""
    calls: list[dict] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append({"app": app, **kw}))
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    return calls


@pytest.fixture()
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text("s3cret-token\n")
    path.chmod(0o600)
    return path


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "jetson.local"])
def test_non_loopback_without_a_token_refuses_to_start(started, host):
    with pytest.raises(UserError, match=f"refusing to bind {host} without a token"):
        serve(host=host, port=9)
    assert started == []


def test_loopback_without_a_token_starts_open(started):
    serve(port=8123)
    (call,) = started
    assert call["host"] == "127.0.0.1" and call["port"] == 8123 and call["workers"] == 1
    with TestClient(call["app"]) as c:
        assert c.get("/health").status_code == 200


def test_token_file_is_read_and_enforced(started, token_file):
    serve(host="0.0.0.0", port=8765, token_file=token_file, max_upload_mb=3, job_timeout_s=7)
    (call,) = started
    assert call["host"] == "0.0.0.0" and call["port"] == 8765
    with TestClient(call["app"]) as c:
        assert c.get("/health").status_code == 401
        ok = c.get("/health", headers={"Authorization": "Bearer s3cret-token"})
        assert ok.status_code == 200
        assert ok.json()["max_upload_bytes"] == 3 * 2**20 and ok.json()["job_timeout_s"] == 7


def test_token_from_the_environment(started, monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, "env-token")
    serve(host="10.0.0.5")
    with TestClient(started[0]["app"]) as c:
        assert c.get("/health", headers={"Authorization": "Bearer env-token"}).status_code == 200


def test_token_on_loopback_is_enforced_when_given(started, token_file):
    serve(token_file=token_file)
    with TestClient(started[0]["app"]) as c:
        assert c.get("/health").status_code == 401


@pytest.mark.parametrize(("content", "needle"), [(None, "cannot read"), ("", "one non-empty")])
def test_bad_token_files_are_user_errors(started, tmp_path, content, needle):
    path = tmp_path / "token"
    if content is not None:
        path.write_text(content)
    with pytest.raises(UserError, match=needle):
        serve(host="0.0.0.0", token_file=path)
    assert started == []


def test_world_readable_token_file_warns(tmp_path, capsys):
    path = tmp_path / "token"
    path.write_text("abc")
    path.chmod(0o644)
    assert read_token(path) == "abc"
    assert "readable by others" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"port": 70000}, "port"),
        ({"max_upload_mb": 0}, "upload"),
        ({"job_timeout_s": 0}, "timeout"),
    ],
)
def test_bad_limits_are_user_errors(started, kwargs, needle):
    with pytest.raises(UserError, match=needle):
        serve(**kwargs)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("example.com", False),
    ],
)
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback


def test_module_main_exits_2_with_one_line(started, capsys):
    assert main(["--host", "0.0.0.0", "--port", "9"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: refusing to bind 0.0.0.0") and err.count("\n") == 1


def test_module_main_passes_options(started, token_file):
    assert main(["--host", "::", "--port", "9001", "--token-file", str(token_file)]) == 0
    assert started[0]["host"] == "::" and started[0]["port"] == 9001


# ---- `factory agent` (the typer command the main app mounts) -------------------------


def cli() -> typer.Typer:
    app = typer.Typer()
    app.command()(agent)
    app.command("other")(lambda: None)  # two commands, so `agent` is a subcommand
    return app


def test_factory_agent_passes_options_to_the_launcher(started, token_file):
    args = ["agent", "--host", "0.0.0.0", "--port", "8777", "--token-file", str(token_file)]
    args += ["--max-upload-mb", "5", "--job-timeout-s", "12.5"]
    result = CliRunner().invoke(cli(), args)
    assert result.exit_code == 0, result.output
    (call,) = started
    assert (call["host"], call["port"]) == ("0.0.0.0", 8777)
    with TestClient(call["app"]) as c:
        health = c.get("/health", headers={"Authorization": "Bearer s3cret-token"}).json()
    assert health["max_upload_bytes"] == 5 * 2**20 and health["job_timeout_s"] == 12.5


def test_factory_agent_refuses_non_loopback_without_token(started):
    result = CliRunner().invoke(cli(), ["agent", "--host", "0.0.0.0"])
    assert isinstance(result.exception, UserError) and started == []


def test_factory_agent_help_documents_every_option():
    result = CliRunner().invoke(cli(), ["agent", "--help"])
    assert result.exit_code == 0
    for option in ("--host", "--port", "--token-file", "--max-upload-mb", "--job-timeout-s"):
        assert option in result.output
    assert "on-device agent" in result.output


def test_launcher_module_has_no_server_side_effects_at_import():
    assert not hasattr(agent_server, "app")  # the app is built by serve(), never at import
