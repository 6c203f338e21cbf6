"""The kill loop: one search SIGKILLed again and again at chosen moments, each time resumed.

Shared by the slow test (tests/search/test_kill_loop.py) and the bench record
(bench/kill_loop.py). The search has a deterministic cost (MACs) and a fixed seed, so an
uninterrupted run with the same options is the reference: every evaluation recorded before a
kill must still be there at the end, unchanged, and the final front must be the reference's.

Kills cycle through four moments, each found by watching the run directory: a random instant
of the first seconds of a process (start-up, data, the warm-up unit), supernet training (just
after a unit's checkpoint appears), evaluation (just after a new evaluation is recorded) and
checkpoint writing (while `checkpoint.tmp-*` exists).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MOMENTS = ("start", "training", "evaluation", "checkpoint")
SEARCH = [
    *("--space", "shufflenet", "--strategy", "pnsga3", "--objectives", "accuracy,macs"),
    *("--cost", "macs", "--train-size", "256", "--val-size", "128", "--seed", "3"),
    *("--generations", "12", "--set", "population=4", "--set", "warmup_epochs=1"),
    *("--set", "epochs_per_generation=0.5", "--threads", "1", "--quiet"),
    *("--rescore-images", "0"),  # the quick preset's 20,000 would take most of the time
]


def factory(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "factory.cli.main", *args]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def rows(run_dir: Path) -> list[tuple[Any, ...]]:
    """Every recorded evaluation: (id, arch_id, phase, step, objectives)."""
    path = run_dir / "evaluations.sqlite"
    if not path.exists():
        return []
    with contextlib.closing(sqlite3.connect(path)) as db:
        evals = db.execute(
            "SELECT id, arch_id, phase, step FROM evaluations ORDER BY id"
        ).fetchall()
        values: dict[int, dict[str, float]] = {}
        for eval_id, name, value in db.execute("SELECT eval_id, name, value FROM objectives"):
            values.setdefault(eval_id, {})[name] = value
    return [(*e, tuple(sorted(values.get(e[0], {}).items()))) for e in evals]


def _checkpoint_stamp(run_dir: Path) -> float:
    with contextlib.suppress(OSError):
        return (run_dir / "checkpoint" / "state.json").stat().st_mtime_ns
    return 0.0


def _until(done: Callable[[], bool], proc: subprocess.Popen, poll_s: float) -> bool:
    """Wait for an event; False if the process ended first (a 600 s hang guard)."""
    deadline = time.monotonic() + 600
    while not done():
        if proc.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(poll_s)
    return True


def wait_for(moment: str, proc: subprocess.Popen, run_dir: Path, rng: random.Random) -> bool:
    """Wait until `proc` is at `moment`; False if it ended before."""
    if moment == "start":  # start-up, data, the warm-up unit: a random instant
        time.sleep(rng.uniform(1.0, 8.0))
    elif moment == "training":
        stamp = _checkpoint_stamp(run_dir)
        if not _until(lambda: _checkpoint_stamp(run_dir) != stamp, proc, 0.01):
            return False
        time.sleep(rng.uniform(0.0, 0.5))
    elif moment == "evaluation":
        count = len(rows(run_dir))
        if not _until(lambda: len(rows(run_dir)) > count, proc, 0.02):
            return False
        time.sleep(rng.uniform(0.0, 0.3))
    else:  # checkpoint writing: the temporary directory exists only while it is written
        if not _until(lambda: any(run_dir.glob("checkpoint.tmp-*")), proc, 0.002):
            return False
    return proc.poll() is None


def kill_loop(run_dir: Path, kills: int = 20, seed: int = 0) -> dict[str, Any]:
    """Run the search in `run_dir`, SIGKILL it `kills` times, resume to the end; returns a
    record of the kills and whether every recorded evaluation survived."""
    rng = random.Random(seed)
    record: list[dict[str, Any]] = []
    seen: list[list[tuple[Any, ...]]] = []
    start = time.monotonic()
    while True:
        first = not (run_dir / "config.json").exists()
        proc = (
            factory("search", *SEARCH, "--out", str(run_dir))
            if first
            else factory("search", "--resume", str(run_dir), "--quiet", "--threads", "1")
        )
        moment = MOMENTS[len(record) % len(MOMENTS)]
        if len(record) < kills and wait_for(moment, proc, run_dir, rng):
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=600)
            seen.append(rows(run_dir))
            record.append({"kill": len(record) + 1, "moment": moment, "evaluations": len(seen[-1])})
            continue
        _, err = proc.communicate(timeout=3600)
        if proc.returncode != 0:
            raise AssertionError(f"the search failed ({proc.returncode}): {err.decode()[-2000:]}")
        break
    final = rows(run_dir)
    return {
        "kills": record,
        "kept": all(final[: len(before)] == before for before in seen),
        "evaluations": len(final),
        "seconds": time.monotonic() - start,
    }


def front(run_dir: Path) -> list[tuple[str, float, float]]:
    """The final front: (arch_id, accuracy, macs) of each member."""
    doc = json.loads((run_dir / "pareto.json").read_text())
    assert doc["stopped"] is None and doc["units_done"] == doc["total_units"]
    return [(r["arch_id"], r["accuracy"], r["macs"]) for r in doc["front"]]


def reference(run_dir: Path) -> subprocess.Popen:
    """The same search, never interrupted."""
    return factory("search", *SEARCH, "--out", str(run_dir))
