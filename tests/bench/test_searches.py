"""A bench that runs searches back to back stops at the first SIGTERM: `run_search` keeps
the signal to itself (so the run stops cleanly), and without a check the loop went on."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.tiny_run import FMNIST

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not FMNIST.exists(), reason="needs dataset-fashion-mnist")

LOOP = """
import sys
from pathlib import Path
sys.path.insert(0, "bench")
from searches import search_or_exit
from factory.search.config import SearchConfig
from tests.tiny_run import TINY
settings = {"samples_per_unit": 3, "warmup_epochs": 2.0, "epochs_per_generation": 2.0}
for i in range(3):
    config = SearchConfig(**{**TINY, "strategy": "random", "units": 4,
                             "strategy_config": settings})
    search_or_exit(config, Path(sys.argv[1]) / f"r{i}")
print("all searches done")
"""


def _evaluations(db: Path) -> int:
    try:
        with sqlite3.connect(db) as conn:
            return conn.execute("SELECT COUNT(*) FROM evaluations").fetchone()[0]
    except sqlite3.Error:
        return 0  # not created yet


def test_sigterm_stops_the_whole_loop(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", LOOP, str(tmp_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    db = tmp_path / "r0" / "evaluations.sqlite"
    deadline = time.monotonic() + 120
    while _evaluations(db) < 1 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the first search ended before it was signalled"
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, out
    assert "terminated; the bench stops here" in out
    assert "all searches done" not in out
    assert not (tmp_path / "r1").exists()  # the next search never started
    assert _evaluations(db) >= 1  # the stopped run kept its work
