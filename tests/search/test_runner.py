"""Whole runs on real Fashion-MNIST (a small slice): determinism, resume, refusals."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from factory.search.config import SearchConfig
from factory.search.pareto import latest_per_arch
from factory.search.runner import overruns, run_search
from factory.search.store import RunStore
from targets.errors import UserError
from tests.tiny_run import TINY

FMNIST = Path("/usr/share/datasets/fashion-mnist")
pytestmark = pytest.mark.skipif(not FMNIST.exists(), reason="needs dataset-fashion-mnist")

# 8 warm-up epochs of 256 images lift every candidate clearly above chance (the front's floor)
TINY_EVOLUTION = {"population": 4, "warmup_epochs": 8, "epochs_per_generation": 0.25}


def _front(run_dir: Path) -> list[tuple[str, float, float]]:
    doc = json.loads((run_dir / "pareto.json").read_text())
    return [(r["genotype"], r["accuracy"], r["macs"]) for r in doc["front"]]


def test_same_seed_same_front_and_outputs(tmp_path: Path) -> None:
    config = SearchConfig(**TINY, strategy="pnsga3", units=2, strategy_config=TINY_EVOLUTION)
    a = run_search(config, tmp_path / "a", quiet=True)
    run_search(config, tmp_path / "b", quiet=True)
    assert a.stopped is None and a.units_done == a.total_units == 3
    assert _front(tmp_path / "a") == _front(tmp_path / "b")
    assert len(a.front) >= 1
    for name in ("config.json", "pareto.json", "pareto.csv", "pareto.png", "evaluations.sqlite"):
        assert (tmp_path / "a" / name).stat().st_size > 0
    doc = json.loads((tmp_path / "a" / "pareto.json").read_text())
    assert doc["units"] == {"accuracy": "fraction", "macs": "multiply-adds"}
    assert doc["dropped"]["threshold"] == pytest.approx(0.1 + 3 * (0.09 / 128) ** 0.5)
    assert doc["latency_final"] == {"skipped": "latency is not an objective"}
    assert set(doc["references"]) == {
        "shufflenet_g1",
        "shufflenet_g3",
        "shufflenet_g8",
        "shufflenet_g3@0.5",
    }
    with RunStore(tmp_path / "a") as store:
        records = store.records()
    assert len(records) == doc["evaluations"] and records[0].phase
    # no architecture's latest evaluation dominates a member of the front
    for g, acc, macs in _front(tmp_path / "a"):
        for r in latest_per_arch(records):
            a_, m_ = r.value("accuracy"), r.value("macs")
            assert not (a_ >= acc and m_ <= macs and (a_ > acc or m_ < macs)), g


def test_existing_run_is_not_overwritten_and_bad_settings_refused(tmp_path: Path) -> None:
    config = SearchConfig(
        **TINY,
        strategy="random",
        units=1,
        strategy_config={"samples_per_unit": 3, "warmup_epochs": 0.25},
    )
    run_search(config, tmp_path / "r", quiet=True)
    with pytest.raises(UserError, match="already holds a run"):
        run_search(config, tmp_path / "r", quiet=True)
    with pytest.raises(UserError, match="unknown setting 'populaton'"):
        run_search(SearchConfig(**TINY, strategy_config={"populaton": 3}), tmp_path / "x")
    with pytest.raises(UserError, match="unknown strategy 'darts'"):
        run_search(SearchConfig(**TINY, strategy="darts"), tmp_path / "y")


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "factory.cli.main", "search", *args]


def _count(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=5) as con:
            return con.execute("SELECT COUNT(*) FROM evaluations").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def test_sigkill_then_resume_keeps_every_evaluation(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    args = [
        "--space", "shufflenet", "--strategy", "pnsga3", "--objectives", "accuracy,macs",
        "--cost", "macs", "--train-size", "256", "--val-size", "128", "--batch-size", "64",
        "--rescore-images", "0", "--generations", "3", "--set", "population=4",
        "--set", "warmup_epochs=0.5", "--set", "epochs_per_generation=0.25", "--quiet",
        "--out", str(run_dir),
    ]  # fmt: skip
    proc = subprocess.Popen(_cli(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    db = run_dir / "evaluations.sqlite"
    deadline = time.monotonic() + 900  # a hang guard; the kill waits for the 6th evaluation
    try:
        # wait until the first generation is checkpointed and the next one has started
        while _count(db) < 6 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    with RunStore(run_dir) as store:
        before = [(r.arch_id, r.phase, r.step, r.objectives) for r in store.records()]
    assert len(before) >= 6
    done = subprocess.run(
        _cli("--resume", str(run_dir), "--quiet"), capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-2000:]
    with RunStore(run_dir) as store:
        after = [(r.arch_id, r.phase, r.step, r.objectives) for r in store.records()]
    assert after[: len(before)] == before  # nothing recorded was lost or changed
    assert len(after) > len(before)
    doc = json.loads((run_dir / "pareto.json").read_text())
    assert doc["units_done"] == doc["total_units"] == 4 and doc["stopped"] is None
    # resuming with a different budget is refused, showing the difference
    other = subprocess.run(
        _cli("--resume", str(run_dir), "--generations", "9"), capture_output=True, text=True
    )
    assert other.returncode == 2
    assert "units: 3 -> 9" in other.stderr and "Traceback" not in other.stderr


def test_time_budget_forecasts_the_next_unit() -> None:
    # no unit run yet: only a spent budget stops; then the mean unit must still fit
    assert not overruns(99.0, [], 100.0) and overruns(100.0, [], 100.0)
    assert not overruns(60.0, [20.0, 30.0], 100.0)  # 60 + 25 fits in 100
    assert overruns(80.0, [20.0, 30.0], 100.0)  # 80 + 25 would end at 105


def test_time_budget_stops_a_real_run_and_still_writes_its_front(tmp_path: Path) -> None:
    # a unit of this run takes about a second; the budget leaves time for none after the
    # first (the setup alone spends most of it), so the run stops early, front written
    config = SearchConfig(
        **TINY,
        strategy="random",
        units=50,
        time_budget_s=1.0,
        strategy_config={"samples_per_unit": 3, "warmup_epochs": 0.25},
    )
    result = run_search(config, tmp_path / "r", quiet=True)
    assert result.stopped == "time budget of 1 s reached"
    assert result.units_done < result.total_units
    doc = json.loads((tmp_path / "r" / "pareto.json").read_text())
    assert doc["stopped"] == result.stopped and doc["units_done"] == result.units_done
