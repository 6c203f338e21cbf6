from __future__ import annotations

from pathlib import Path

import pytest

import targets
from targets import UnknownNameError, UserError, load_target

EXPECTED = {
    "x86-cpu",
    "jetson-orin-nano",
    "jetson-xavier-nx",
    "jetson-nano",
    "raspberry-pi-4",
    "cuda-gpu",
}


def test_builtin_targets_load() -> None:
    reg = targets.registry()
    assert set(reg.names()) == EXPECTED
    assert targets.get_target("jetson").name == "jetson-orin-nano"
    default = targets.get_target(targets.DEFAULT_TARGET)
    assert default.is_local and default.runtime == "onnxruntime"
    assert default.execution_provider == "CPUExecutionProvider"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_target_is_consistent(name: str) -> None:
    t = targets.get_target(name)
    assert len(t.input_shape) == 4
    if t.runtime == "tensorrt":
        assert t.needs_gpu
    if t.agent is not None:
        assert t.agent.url.startswith("http") and t.agent.token_env


def test_unknown_target_lists_valid_names() -> None:
    with pytest.raises(UnknownNameError, match="valid: cuda-gpu, jetson-nano"):
        targets.get_target("pdp-11")


def test_latency_table_dir_follows_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMF_CACHE_DIR", str(tmp_path))
    assert targets.get_target("x86-cpu").latency_table_dir() == tmp_path / "lut" / "x86-cpu"


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_extra_targets_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(
        tmp_path / "lab.yaml",
        "name: lab-pi\ndescription: lab board\nruntime: onnxruntime\n"
        "execution_provider: CPUExecutionProvider\nthreads: 4\n"
        "agent: {url: 'http://127.0.0.1:9999/', token_env: LAB_TOKEN}\n",
    )
    monkeypatch.setenv("EMF_TARGETS_DIR", str(tmp_path))
    monkeypatch.setenv("LAB_TOKEN", "s3cret")
    t = targets.get_target("lab-pi")
    assert t.agent is not None and t.agent.url == "http://127.0.0.1:9999"
    assert t.agent.token() == "s3cret" and t.threads == 4 and not t.is_local


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: x\ndescription: d\nruntime: onnxruntime\n", "missing keys"),
        (
            "name: x\ndescription: d\nruntime: tvm\nexecution_provider: CPU\n",
            "runtime must be one of",
        ),
        (
            "name: x\ndescription: d\nruntime: onnxruntime\nexecution_provider: C\nspeed: 9\n",
            "unknown keys",
        ),
        (
            "name: x\ndescription: d\nruntime: onnxruntime\nexecution_provider: C\n"
            "input_shape: [1, 28, 28]\n",
            "input_shape",
        ),
        (
            "name: x\ndescription: d\nruntime: onnxruntime\nexecution_provider: C\nthreads: 0\n",
            "threads",
        ),
        ("- just\n- a list\n", "must hold a mapping"),
        ("name: [unclosed\n", "cannot read"),
    ],
)
def test_bad_target_files_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path / "bad.yaml", text)
    with pytest.raises(UserError, match=message) as info:
        load_target(path)
    assert "bad.yaml" in str(info.value)


_FARM = "name: farm\ndescription: d\nruntime: onnxruntime\nexecution_provider: CPU\n"


def test_a_target_may_list_a_farm_of_agents(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "farm.yaml",
        _FARM + "agents:\n  - {url: 'http://pi-1:8765/', token_env: PI_TOKEN}\n"
        "  - {url: 'http://pi-2:8765'}\n",
    )
    t = load_target(path)
    assert [a.url for a in t.agents] == ["http://pi-1:8765", "http://pi-2:8765"]
    assert t.agent == t.agents[0] and t.agents[0].token_env == "PI_TOKEN" and not t.is_local
    assert targets.get_target("x86-cpu").agents == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("agent: {url: 'http://a'}\nagents: [{url: 'http://b'}]\n", "either 'agent'"),
        ("agents: []\n", "non-empty list"),
        ("agents: [{url: 'http://a'}, {url: 'http://a/'}]\n", "lists a URL twice"),
        ("agents: [{host: a}]\n", "mapping with 'url'"),
    ],
)
def test_bad_farms_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        load_target(_write(tmp_path / "bad.yaml", _FARM + text))
