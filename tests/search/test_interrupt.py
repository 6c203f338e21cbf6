"""Interrupting a search loses nothing: SIGINT and SIGTERM keep the unit under way (its
supernet steps and evaluations), and a resumed run ends with exactly the evaluations of a
run that was never interrupted.

Every signal is sent on an event, never after a delay: at a given supernet step (in
process), or once the run's database holds a given number of evaluations (subprocesses).
"""

from __future__ import annotations

import contextlib
import json
import os
import pty
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from factory.cli.main import app
from factory.search import runner
from factory.search.checkpoint import load_checkpoint
from factory.search.config import SearchConfig
from factory.search.runner import run_search
from factory.search.store import RunStore
from tests.search.signal_progress import SignalAtAdvance
from tests.tiny_run import TINY

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = {"samples_per_unit": 3, "warmup_epochs": 2.0, "epochs_per_generation": 2.0}
STEPS_PER_UNIT = 8  # 2 epochs of 256 images in batches of 64
CLI = [
    *("search", "--space", "shufflenet", "--strategy", "random", "--generations", "1"),
    *("--objectives", "accuracy,macs", "--cost", "macs", "--train-size", "256"),
    *("--val-size", "128", "--rescore-images", "0", "--threads", "1"),
    *(f"--set={k}={v}" for k, v in SETTINGS.items()),
]


def config() -> SearchConfig:
    return SearchConfig(**{**TINY, "strategy": "random", "units": 2, "strategy_config": SETTINGS})


def evaluations(run_dir: Path) -> list[tuple[Any, ...]]:
    """What every recorded evaluation found, in order."""
    with RunStore(run_dir) as store:
        return [
            (r.arch_id, r.phase, r.step, r.objectives["accuracy"], r.objectives["macs"])
            for r in store.records()
        ]


def test_ctrl_c_mid_training_keeps_the_steps_and_resumes_to_the_same_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = run_search(config(), tmp_path / "reference", quiet=True)
    at = STEPS_PER_UNIT + 3  # the third step of unit 1's training
    monkeypatch.setattr(runner, "make_progress", lambda disable: SignalAtAdvance("supernet", at))
    stopped = run_search(config(), tmp_path / "run", quiet=True)
    assert stopped.stopped == "interrupted" and stopped.units_done == 1
    assert stopped.kept == "3 supernet steps and 0 evaluations of unit 2"
    ckpt = load_checkpoint(tmp_path / "run")
    assert ckpt is not None and ckpt.unit == 0 and ckpt.state["partial"]["calls"][0]["steps"] == 3
    doc = json.loads((tmp_path / "run" / "pareto.json").read_text())
    assert doc["stopped"] == "interrupted" and doc["evaluations"] == 3
    monkeypatch.undo()
    resumed = run_search(config(), tmp_path / "run", resume=True, quiet=True)
    assert resumed.stopped is None and resumed.units_done == reference.units_done == 3
    assert evaluations(tmp_path / "run") == evaluations(tmp_path / "reference")
    again = run_search(config(), tmp_path / "run", resume=True, quiet=True)
    assert again.finished_before and again.evaluations == 9


# --- real processes, real signals ----------------------------------------------------------


def _recorded(run_dir: Path) -> int:
    try:
        uri = f"file:{run_dir / 'evaluations.sqlite'}?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
            return int(db.execute("SELECT COUNT(*) FROM evaluations").fetchone()[0])
    except sqlite3.Error:
        return 0


def _wait_for(done: Callable[[], bool], proc: subprocess.Popen, what: str) -> None:
    """Poll for an event; fail if the process ends first (no fixed sleeps decide anything)."""
    deadline = time.monotonic() + 600  # only a hung run gets here
    while not done():
        assert proc.poll() is None, f"the search ended before {what}"
        assert time.monotonic() < deadline, f"no {what} after 600 s"
        time.sleep(0.02)


def _factory(*args: str, **kwargs: Any) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "COLUMNS": "80"}
    return subprocess.Popen([sys.executable, "-m", "factory.cli.main", *args], env=env, **kwargs)


def _in_a_terminal(args: list[str], signal_when: Callable[[], bool], sig: int) -> tuple[int, str]:
    """Run `factory ARGS` on a pseudo-terminal, send `sig` once `signal_when()`; returns the
    exit code and everything it drew on the terminal."""
    main, child = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "factory.cli.main", *args],
        stdin=child, stdout=child, stderr=child, env=env,
    )  # fmt: skip
    os.close(child)
    chunks: list[bytes] = []
    reader = threading.Thread(target=_drain, args=(main, chunks))
    reader.start()
    _wait_for(signal_when, proc, "the event to signal on")
    proc.send_signal(sig)
    code = proc.wait(timeout=600)
    reader.join(timeout=60)
    os.close(main)
    return code, b"".join(chunks).decode(errors="replace")


def _drain(fd: int, chunks: list[bytes]) -> None:
    while True:
        try:
            data = os.read(fd, 4096)
        except OSError:  # EIO: the other side closed
            return
        if not data:
            return
        chunks.append(data)


def test_sigterm_and_sigint_from_outside_keep_everything_and_resume(tmp_path: Path) -> None:
    run, ref = tmp_path / "run", tmp_path / "reference"
    reference = _factory(*CLI, "--quiet", "--out", str(ref), stdout=subprocess.DEVNULL)
    # SIGTERM once the first evaluation of the warm-up unit is recorded
    code, screen = _in_a_terminal([*CLI, "--out", str(run)], lambda: _recorded(run) >= 1, 15)
    assert code == 143, screen
    assert screen.rfind("\x1b[?25h") > screen.rfind("\x1b[?25l") >= 0  # the cursor is back
    assert f"continue with: factory search --resume {run}" in screen
    if _recorded(run) < SETTINGS["samples_per_unit"]:  # stopped inside unit 1: kept
        assert "keeping 8 supernet steps and" in screen
    doc = json.loads((run / "pareto.json").read_text())
    assert doc["stopped"] == "terminated" and doc["evaluations"] == _recorded(run)
    # SIGINT once the resumed run has recorded two more
    count = _recorded(run)
    resume = _factory("search", "--resume", str(run), "--quiet", stdout=subprocess.DEVNULL,
                      stderr=subprocess.PIPE, text=True)  # fmt: skip
    _wait_for(lambda: _recorded(run) >= count + 2, resume, "two more evaluations")
    resume.send_signal(signal.SIGINT)
    _, err = resume.communicate(timeout=600)
    assert resume.returncode == 130, err
    assert err.strip().splitlines()[-1].startswith("stopped (interrupted) after")
    report = CliRunner().invoke(app, ["report", str(run), "--json"])
    assert json.loads(report.stdout)["evaluations"] == _recorded(run)
    # to the end, then compare with the run nobody interrupted
    finish = _factory("search", "--resume", str(run), "--quiet", stdout=subprocess.DEVNULL)
    assert finish.wait(timeout=600) == 0 and reference.wait(timeout=600) == 0
    assert evaluations(run) == evaluations(ref)
    before = (run / "pareto.json").read_bytes()
    done = CliRunner().invoke(app, ["search", "--resume", str(run)])
    assert done.exit_code == 0 and "already finished (2/2 units, 6 evaluations)" in done.stdout
    assert (run / "pareto.json").read_bytes() == before
