"""The strategies bench compares hypervolumes, which only means something when every strategy
gets the same evaluations and supernet epochs: run each under the bench's budgets and count."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from factory.search.config import SearchConfig
from factory.search.runner import run_search
from factory.search.store import RunStore
from tests.tiny_run import FMNIST, TINY

BENCH = Path(__file__).resolve().parents[2] / "bench"
pytestmark = pytest.mark.skipif(not FMNIST.exists(), reason="needs dataset-fashion-mnist")


def _bench_strategies():
    sys.path.insert(0, str(BENCH))  # the bench imports its sibling `plots`
    try:
        spec = importlib.util.spec_from_file_location("bench_strategies", BENCH / "strategies.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCH))
    return module


@pytest.mark.parametrize(("generations", "population"), [(2, 8), (3, 12)])
def test_budgets_give_equal_evaluations_and_epochs(generations: int, population: int) -> None:
    plan = _bench_strategies().budgets(generations, population)
    evals = population * (1 + 2 * generations)
    epochs = 1.0 + 0.5 * generations
    for name, s in plan.items():
        if name in ("nsga3", "pnsga3"):
            continue  # the evolution defaults: 1 warm-up epoch, 0.5 a generation
        if "samples_per_step" in s:
            steps = s["n_warm"] + s["n_slow"] + s["n_fast"]
            assert steps * s["samples_per_step"] == evals, name
            assert steps * s["child_epochs_per_step"] == pytest.approx(epochs), name
        else:
            assert (s["generations"] + 1) * s["samples_per_unit"] == evals, name
            assert s["warmup_epochs"] + s["generations"] * s["epochs_per_generation"] == epochs


@pytest.mark.slow  # five whole searches: ~4 CPU minutes
def test_every_strategy_records_the_same_number_of_evaluations(tmp_path: Path) -> None:
    plan = _bench_strategies().budgets(2, 8)
    counts = {}
    for name, settings in plan.items():
        config = SearchConfig(**TINY, strategy=name, strategy_config=settings)
        run_search(config, tmp_path / name, quiet=True)
        with RunStore(tmp_path / name) as store:
            counts[name] = len(store.records())
    assert set(counts.values()) == {40}, counts
