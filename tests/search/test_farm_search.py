"""A search whose latency is measured on a farm (a target listing several agents), one of
whose boards is down: the run goes on with the others and says so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from factory.search.config import SearchConfig
from factory.search.runner import run_search
from factory.search.store import RunStore
from tests.agent_process import free_port, running_agent
from tests.tiny_run import FMNIST, TINY

pytestmark = pytest.mark.skipif(not FMNIST.exists(), reason="needs dataset-fashion-mnist")


def test_a_search_measures_on_the_farm_and_says_when_a_board_is_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "agent").mkdir()
    with running_agent(tmp_path / "agent", "t0k3n") as url:
        dead = f"http://127.0.0.1:{free_port()}"
        (tmp_path / "targets").mkdir()
        (tmp_path / "targets" / "farm.yaml").write_text(
            "name: farm\ndescription: two boards, one down\nruntime: onnxruntime\n"
            "execution_provider: CPUExecutionProvider\nthreads: 1\n"
            f"agents:\n  - {{url: '{dead}', token_env: FARM_TOKEN}}\n"
            f"  - {{url: '{url}', token_env: FARM_TOKEN}}\n"
        )
        monkeypatch.setenv("EMF_TARGETS_DIR", str(tmp_path / "targets"))
        monkeypatch.setenv("FARM_TOKEN", "t0k3n")
        settings = {
            **TINY,
            "objectives": ("accuracy", "latency_ms"),
            "cost": "latency_ms",
            "latency_mode": "measure",
        }
        config = SearchConfig(
            **settings,
            target="farm",
            strategy="random",
            units=1,
            strategy_config={"samples_per_unit": 3, "warmup_epochs": 0.25},
        )
        run_search(config, tmp_path / "run", quiet=True)
    with RunStore(tmp_path / "run") as store:
        records = store.records()
    assert len(records) == 6 and all(r.objectives["latency_ms"] > 0 for r in records)
    assert {r.extra["latency_how"] for r in records} == {"measured"}
    latency = json.loads((tmp_path / "run" / "pareto.json").read_text())["latency_objective"]
    assert latency["agents"] == [dead, url] and list(latency["agents_down"]) == [dead]
    err = capsys.readouterr().err
    assert f"note: agent {dead} of farm is down" in err and "moves to the 1 other agent" in err
