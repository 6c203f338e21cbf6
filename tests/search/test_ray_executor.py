"""`--executor ray` on a real local Ray instance (the session's `ray_cluster`): the same
front as in-process, workers that die, and the refusals."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from factory.cli.main import app
from factory.search.config import SearchConfig
from factory.search.executor import ExecutorSpec
from factory.search.runner import run_search
from factory.search.store import RunStore
from targets.errors import UserError
from tests.agent_process import free_port
from tests.scale_jobs import always_dies, dies_once
from tests.tiny_run import FMNIST, TINY

runner = CliRunner()
TINY_EVOLUTION = {"population": 4, "warmup_epochs": 4, "epochs_per_generation": 0.25}


def _evaluations(run_dir: Path) -> list[tuple]:
    with RunStore(run_dir) as store:
        return [(r.arch_id, r.phase, r.step, r.objectives) for r in store.records()]


@pytest.mark.skipif(not FMNIST.exists(), reason="needs dataset-fashion-mnist")
def test_ray_search_finds_the_in_process_front(tmp_path: Path, ray_cluster: None) -> None:
    config = SearchConfig(**TINY, strategy="pnsga3", units=2, strategy_config=TINY_EVOLUTION)
    here = run_search(config, tmp_path / "here", quiet=True)
    there = run_search(config, tmp_path / "ray", quiet=True, executor=ExecutorSpec("ray"))
    assert there.units_done == there.total_units == here.total_units
    front = [
        json.loads((tmp_path / d / "pareto.json").read_text())["front"] for d in ("here", "ray")
    ]
    assert front[0] == front[1] and front[0]
    assert _evaluations(tmp_path / "here") == _evaluations(tmp_path / "ray")


def test_a_worker_that_dies_is_replaced_and_its_task_retried(
    tmp_path: Path, ray_cluster: None
) -> None:
    from functools import partial

    from factory.search.ray_executor import RayExecutor

    executor = RayExecutor.connect(ExecutorSpec("ray"), {})
    assert executor.workers() == 2
    assert executor.map(partial(dies_once, str(tmp_path)), [1, 2, 3]) == [1, 4, 9]
    assert len(list(tmp_path.glob("seen-*"))) == 3  # every task's first worker died
    with pytest.raises(UserError, match=r"item 7: the Ray worker was lost 3 times"):
        executor.map(always_dies, [7])
    executor.close()
    import ray

    assert ray.is_initialized()  # it joined the session's Ray, so it leaves it running


def test_an_address_that_does_not_answer_is_refused_before_a_run(tmp_path: Path) -> None:
    out = tmp_path / "r"
    address = f"127.0.0.1:{free_port()}"
    args = ["search", "--executor", "ray", "--ray-address", address, "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert f"error: no Ray cluster answers at {address}" in result.output
    assert not out.exists()  # nothing written


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--executor", "dask"], "unknown executor 'dask'; valid: in-process, ray"),
        (["--ray-address", "auto"], "--ray-address needs --executor ray"),
        (["--executor", "ray", "--ray-address", "nowhere"], "must be auto, HOST:PORT"),
    ],
)
def test_bad_executor_options_are_one_line_errors(tmp_path: Path, args, message) -> None:
    out = tmp_path / "r"
    result = runner.invoke(app, ["search", *args, "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not out.exists()


def test_without_ray_installed_the_error_says_how_to_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if absent
    monkeypatch.delitem(sys.modules, "factory.search.ray_executor", raising=False)
    out = tmp_path / "r"
    result = runner.invoke(app, ["search", "--executor", "ray", "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert "--executor ray needs Ray" in result.output
    assert "pip install 'edge-model-factory[ray]'" in result.output
    assert not out.exists()
