"""The front as the run's database has it, when pareto.json is older.

A search writes pareto.json when it ends or is stopped by a signal; a SIGKILL (or a crash)
leaves it behind the database, or missing. `factory report` reads the front through
`current_front`, which recomputes it from evaluations.sqlite in that case, so a report never
shows fewer evaluations than were recorded. Nothing is written: the next `--resume` writes
pareto.json itself.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any

from factory.run_report import load_pareto
from factory.search.pareto import (
    UNITS,
    ChanceFloor,
    ScoreError,
    dropped,
    front_rows,
    latest_per_arch,
)
from factory.search.pareto import pareto_front as compute_front
from factory.search.store import DB_NAME, RunStore


def recorded(run_dir: Path) -> int | None:
    """Evaluations in the run's database (None: it has none or cannot be read)."""
    path = Path(run_dir) / DB_NAME
    if not path.is_file():
        return None
    try:  # a plain connection: closing it removes the -wal and -shm files a read made
        with contextlib.closing(sqlite3.connect(path)) as db:
            return int(db.execute("SELECT COUNT(*) FROM evaluations").fetchone()[0])
    except sqlite3.Error:
        return None


def current_front(run_dir: Path) -> dict[str, Any]:
    """pareto.json, or the front recomputed from the database when that holds more
    evaluations (its "stale" key then says what pareto.json had)."""
    run_dir = Path(run_dir)
    count = recorded(run_dir)
    has_doc = (run_dir / "pareto.json").is_file()
    if count is None or not (run_dir / "config.json").is_file():
        return load_pareto(run_dir)
    doc = load_pareto(run_dir) if has_doc else None
    if doc is not None and doc["evaluations"] >= count:
        return doc
    return _recomputed(run_dir, doc)


def _recomputed(run_dir: Path, old: dict[str, Any] | None) -> dict[str, Any]:
    from factory.search.resolve import load_run_config
    from factory.spaces import get_space

    config = load_run_config(run_dir)
    space = get_space(config.space, options=config.space_options)
    floor = _floor(old, config)
    with RunStore(run_dir) as store:
        records = store.records()
    objectives = list(config.objectives)
    scored = (old or {}).get("rescore", {}).get("images", floor.val_images)  # n of rescores
    error = ScoreError.of(scored, floor.val_images)
    front = compute_front(records, objectives, floor, error)
    had = old["evaluations"] if old is not None else 0
    keep = {"space", "strategy", "target", "total_units", "latency_objective", "floor"}
    return {
        **{k: v for k, v in (old or {}).items() if k in keep},
        "objectives": objectives,
        "units": {o: UNITS[o] for o in objectives},
        "evaluations": len(records),
        "architectures": len(latest_per_arch(records)),
        "front": front_rows(front, space.format, objectives),
        "references": {},
        "dropped": dropped(records, objectives, floor),
        "stale": f"pareto.json holds {had} of the {len(records)} recorded evaluations"
        if old is not None
        else "the run wrote no pareto.json yet",
    }


def _floor(old: dict[str, Any] | None, config: Any) -> ChanceFloor:
    """The chance floor the run used: from pareto.json, else from the dataset itself."""
    saved = (old or {}).get("floor")
    if isinstance(saved, dict):
        return ChanceFloor(int(saved["num_classes"]), int(saved["val_images"]))
    from factory.search.rundir import load_data

    data = load_data(config)
    val = len(data.val) if config.val_size is None else min(config.val_size, len(data.val))
    return ChanceFloor(data.info.num_classes, val)
