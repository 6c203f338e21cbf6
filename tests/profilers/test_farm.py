"""A target's farm of two real loopback agents: boards measure in parallel, never two jobs
at once on one board, with and without Ray; a board that goes down mid-farm hands its work
to the other."""

from __future__ import annotations

import dataclasses
import itertools
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from profilers.farm import Farm, farm_resources
from targets import get_target
from targets.errors import UserError
from targets.target import AgentRef, Target
from tests.agent_process import free_port, running_agent_process, tiny_onnx
from tests.scale_jobs import timed_profile

TOKEN = "farm-token"


def _farm_target(*urls: str) -> Target:
    """`farm`: the local CPU's definition measured on the agents at `urls`."""
    agents = [AgentRef(url, token_env="EMF_FARM_TOKEN") for url in urls]
    cpu = get_target("x86-cpu")
    return dataclasses.replace(cpu, name="farm", agent=agents[0], more_agents=tuple(agents[1:]))


@pytest.fixture(scope="module")
def two_agents(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list]:
    """Two agents on 127.0.0.1: [(url, process), (url, process)]."""
    a, b = (tmp_path_factory.mktemp(f"agent{i}") for i in range(2))
    with running_agent_process(a, TOKEN) as first, running_agent_process(b, TOKEN) as second:
        yield [first, second]


@pytest.fixture(autouse=True)
def _token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMF_FARM_TOKEN", TOKEN)


def _check_windows(results: list[tuple[str, int, int, float]], urls: list[str]) -> None:
    """Each board ran jobs one after another, and the two boards ran at the same time."""
    by_agent = {url: sorted((s, e) for u, s, e, _ in results if u == url) for url in urls}
    assert all(by_agent.values()), "both boards measured"
    for windows in by_agent.values():
        for (_, end), (start, _) in itertools.pairwise(windows):
            assert end <= start, "two jobs at once on one board"
    first, second = by_agent.values()
    assert any(s1 < e2 and s2 < e1 for s1, e1 in first for s2, e2 in second), "no parallelism"


@pytest.mark.parametrize("backend", ["local", "ray"])
def test_two_boards_measure_in_parallel_never_two_jobs_on_one(
    two_agents: list, backend: str, request: pytest.FixtureRequest
) -> None:
    if backend == "ray":
        request.getfixturevalue("ray_cluster")
    urls = [url for url, _ in two_agents]
    target = _farm_target(*urls)
    farm = Farm(target, backend)
    results = farm.map(timed_profile, [tiny_onnx()] * 6)
    farm.close()
    assert len(results) == 6 and all(ms > 0 for *_, ms in results)
    _check_windows(results, urls)
    assert farm.down == {}


def test_a_board_that_goes_down_mid_farm_hands_its_work_to_the_other(tmp_path: Path) -> None:
    for name in "ab":
        (tmp_path / name).mkdir()
    with (
        running_agent_process(tmp_path / "a", TOKEN) as a,
        running_agent_process(tmp_path / "b", TOKEN) as b,
    ):
        (url_a, proc_a), (url_b, _) = a, b
        done_on_a = threading.Event()

        def job(target: Target, model: bytes) -> tuple[str, int, int, float]:
            result = timed_profile(target, model)
            if result[0] == url_a and not done_on_a.is_set():
                done_on_a.set()
                proc_a.terminate()  # board A goes down after its first measurement
                proc_a.wait(timeout=10)
            return result

        notes: list[str] = []
        farm = Farm(_farm_target(url_a, url_b), "local", notes.append)
        results = farm.map(job, [tiny_onnx()] * 6)
        farm.close()
    assert len(results) == 6
    assert [u for u, *_ in results].count(url_a) == 1  # the rest went to board B
    assert list(farm.down) == [url_a]
    assert len(notes) == 1 and f"agent {url_a} of farm is down" in notes[0]
    assert "its work moves to the 1 other agent" in notes[0]


def test_a_farm_with_every_board_down_is_one_error() -> None:
    dead = [f"http://127.0.0.1:{free_port()}" for _ in range(2)]
    farm = Farm(_farm_target(*dead), "local")
    with pytest.raises(UserError, match="every agent of target farm is down") as info:
        farm.map(timed_profile, [tiny_onnx()] * 3)
    assert all(url in str(info.value) for url in dead)


def test_ray_farm_needs_each_board_as_a_resource(ray_cluster: None) -> None:
    target = _farm_target("http://127.0.0.1:1", "http://127.0.0.1:2")
    three = dataclasses.replace(target, more_agents=(*target.more_agents, AgentRef("http://x:3")))
    assert farm_resources(three) == {f"device:farm:{n}": 1.0 for n in range(3)}
    with pytest.raises(UserError, match=r"no device:farm:2: start a node with `ray start"):
        Farm(three, "ray")
