"""The run store: evaluations round-trip with units, survive SIGKILL; config save/diff/resume."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from factory.search.store import (
    OBJECTIVE_UNITS,
    RunStore,
    check_resume,
    config_diff,
    load_config,
    save_config,
)
from factory.strategies.base import Record
from targets.errors import UserError


def _record(i: int, phase: str = "generation") -> Record:
    return Record(
        genotype=(i % 8, 3, i % 5, 0),
        arch_id=f"arch-{i}",
        objectives={"accuracy": 0.5 + i / 1000, "latency_ms": 0.25 * i, "macs": 6_100_000 + i},
        phase=phase,
        step=i // 3,
        wall_s=1.5 * i,
        extra={"latency_how": "measured", "i": i},
    )


def test_records_round_trip_with_units(tmp_path: Path) -> None:
    records = [_record(i, "warmup" if i < 2 else "generation") for i in range(7)]
    records.append(Record((), "empty", {"params": 12.0}, "final", 9))
    with RunStore(tmp_path) as store:
        assert store.count() == 0 and store.last_step() is None and store.last_id() is None
        ids = [store.add(r) for r in records[:3]] + store.add_many(records[3:])
        assert ids == list(range(1, len(records) + 1))
        assert store.records() == records
        assert store.records("warmup") == records[:2]
        assert store.records("nope") == []
        assert store.count() == len(records) and store.last_step() == 9
        assert store.units() == {
            "accuracy": "fraction",
            "latency_ms": "ms",
            "macs": "multiply-adds",
            "params": "count",
        }
    with RunStore(tmp_path) as store:  # reopened from disk
        assert store.records() == records


def test_wide_view_reads_like_the_sqlite_cli(tmp_path: Path) -> None:
    with RunStore(tmp_path) as store:
        store.add_many([_record(1), _record(2)])
    db = sqlite3.connect(tmp_path / "evaluations.sqlite")
    db.row_factory = sqlite3.Row
    rows = db.execute("SELECT * FROM evaluations_wide ORDER BY id").fetchall()
    db.close()
    assert [r["genotype"] for r in rows] == ["1-3-1-0", "2-3-2-0"]
    assert rows[1]["accuracy"] == pytest.approx(0.502) and rows[1]["latency_ms"] == 0.5
    assert rows[1]["macs"] == 6_100_002 and rows[1]["params"] is None
    assert set(OBJECTIVE_UNITS) <= set(rows[0].keys())


def test_bad_objectives_are_refused_and_nothing_is_written(tmp_path: Path) -> None:
    with RunStore(tmp_path) as store:
        bad = Record((1,), "x", {"flops": 3.0}, "generation", 0)
        with pytest.raises(ValueError, match="unknown objective 'flops'"):
            store.add_many([_record(1), bad])
        with pytest.raises(ValueError, match="NaN"):
            store.add(Record((1,), "x", {"accuracy": float("nan")}, "generation", 0))
        assert store.count() == 0
        store.add(_record(3))  # the store is still usable
        assert store.count() == 1


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    RunStore(tmp_path).close()
    db = sqlite3.connect(tmp_path / "evaluations.sqlite")
    with db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    db.close()
    with pytest.raises(UserError, match="schema version 99"):
        RunStore(tmp_path)


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    (tmp_path / "evaluations.sqlite").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(UserError, match="not a run database"):
        RunStore(tmp_path)


_WRITER = """
import sys
from pathlib import Path
from factory.search.store import RunStore
from factory.strategies.base import Record
with RunStore(Path(sys.argv[1])) as store:
    i = 0
    while True:
        rid = store.add(Record((i % 8, i % 3), f"a{i}", {"accuracy": i / 1e4, "latency_ms": i},
                               "generation", i))
        print(rid, flush=True)
        i += 1
"""


def test_committed_rows_survive_sigkill(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    printed: list[int] = []
    deadline = time.monotonic() + 600  # a hang guard: the kill waits for the 150th row
    try:
        while len(printed) < 150 and time.monotonic() < deadline:
            line = proc.stdout.readline()  # type: ignore[union-attr]
            if not line:
                break
            printed.append(int(line))
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # mid-loop: likely inside a transaction
        rest = proc.communicate()[0]
    printed += [int(x) for x in rest.splitlines() if x.strip()]
    assert proc.returncode == -signal.SIGKILL
    assert len(printed) >= 150, "the writer stopped early"
    with RunStore(tmp_path) as store:
        by_id = dict(enumerate(store.records(), start=1))
    assert set(printed) <= set(by_id)
    for rid in printed:  # every reported row is whole: its objectives are there too
        i = rid - 1
        assert by_id[rid].objectives == {"accuracy": i / 1e4, "latency_ms": float(i)}
        assert by_id[rid].genotype == (i % 8, i % 3)


# --- config ----------------------------------------------------------------------------------


def test_save_and_load_config(tmp_path: Path) -> None:
    config = {
        "out": tmp_path / "run",
        "strategy": {"name": "pnsga3", "population": 16, "betas": (0.9, 0.99)},
        "seed": np.int64(3),
    }
    save_config(tmp_path, config)
    loaded = load_config(tmp_path)
    assert loaded == {
        "out": str(tmp_path / "run"),
        "strategy": {"name": "pnsga3", "population": 16, "betas": [0.9, 0.99]},
        "seed": 3,
    }
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]  # no temp file left
    assert json.loads((tmp_path / "config.json").read_text()) == loaded


def test_config_diff_lines() -> None:
    old = {"generations": 10, "out": "a", "strategy": {"population": 16, "p": 0.5}, "k": True}
    new = {"generations": 20, "out": "b", "strategy": {"population": 16, "t": 2}, "k": 1}
    assert config_diff(old, new, ignore={"out"}) == [
        "generations: 10 -> 20",
        "k: true -> 1",
        "strategy.p: 0.5 -> (absent)",
        "strategy.t: (absent) -> 2",
    ]
    assert config_diff({"a": (1, 2), "x": 1}, {"a": [1, 2], "x": 1.0}) == []
    assert config_diff(old, new, ignore={"out", "generations", "k", "strategy"}) == []
    assert config_diff({"s": "vgg"}, {"s": "mbv2"}) == ['s: "vgg" -> "mbv2"']


def test_check_resume(tmp_path: Path) -> None:
    config = {"generations": 10, "out": str(tmp_path), "resume": False, "strategy": {"p": 8}}
    save_config(tmp_path, config)
    check_resume(tmp_path, {**config, "resume": True, "out": "/elsewhere"})  # allowed
    changed = {**config, "generations": 20, "strategy": {"p": 9}}
    with pytest.raises(UserError) as err:
        check_resume(tmp_path, changed)
    message = str(err.value)
    assert message.startswith(f"cannot resume run {tmp_path} with a different config: ")
    assert "generations: 10 -> 20; strategy.p: 8 -> 9" in message
    with pytest.raises(UserError, match="not a run directory"):
        check_resume(tmp_path / "missing", config)
