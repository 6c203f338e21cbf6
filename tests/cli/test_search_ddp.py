"""`torchrun --nproc-per-node 2 -m factory search ...`: a real data-parallel search on the
CPU (gloo). Rank 0 alone writes the run, which takes the decisions one process takes; a
killed run resumes under torchrun without losing what it recorded."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from factory.search.store import RunStore
from tests.agent_process import REPO, free_port
from tests.tiny_run import FMNIST

pytestmark = pytest.mark.skipif(not FMNIST.exists(), reason="needs dataset-fashion-mnist")
ARGS = [
    "--space", "shufflenet", "--strategy", "pnsga3", "--objectives", "accuracy,macs",
    "--cost", "macs", "--train-size", "256", "--val-size", "128", "--batch-size", "64",
    "--set", "population=4", "--set", "warmup_epochs=1", "--set", "epochs_per_generation=0.5",
    "--threads", "1", "--device", "cpu", "--quiet", "--rescore-images", "0",
]  # fmt: skip


def _env() -> dict[str, str]:
    paths = [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "OMP_NUM_THREADS": "1"}


def _torchrun(*args: str) -> list[str]:
    run = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2"]
    return [*run, "--master-port", str(free_port()), "-m", "factory", "search", *args]


def _records(run_dir: Path) -> list[tuple]:
    with RunStore(run_dir) as store:
        return [(r.arch_id, r.phase, r.step, r.objectives["accuracy"]) for r in store.records()]


def test_two_ranks_search_as_one_process_does(tmp_path: Path) -> None:
    args = [*ARGS, "--generations", "1"]
    ddp = subprocess.run(
        _torchrun(*args, "--out", str(tmp_path / "ddp")),
        capture_output=True, text=True, env=_env(), timeout=600,
    )  # fmt: skip
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert ddp.stdout.count("front of") == 1, ddp.stdout  # rank 0 alone prints the front
    single = subprocess.run(
        [sys.executable, "-m", "factory", "search", *args, "--out", str(tmp_path / "one")],
        capture_output=True, text=True, env=_env(), timeout=600,
    )  # fmt: skip
    assert single.returncode == 0, single.stderr[-3000:]
    two, one = _records(tmp_path / "ddp"), _records(tmp_path / "one")
    assert [r[:3] for r in two] == [r[:3] for r in one]  # the same candidates, in order
    # the same weights up to float rounding: accuracies agree within an image or two
    assert all(abs(a[3] - b[3]) <= 2 / 128 for a, b in zip(two, one, strict=True))
    assert not list((tmp_path / "ddp").glob("checkpoint.tmp-*"))


@pytest.mark.slow
def test_a_killed_data_parallel_run_resumes_under_torchrun(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    args = [*ARGS, "--generations", "3", "--out", str(run_dir)]
    proc = subprocess.Popen(
        _torchrun(*args), env=_env(), start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 400
    try:
        while not (run_dir / "checkpoint").exists() and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]  # type: ignore[union-attr]
            time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # torchrun and both ranks: the group we started
        proc.wait(timeout=30)
    before = _records(run_dir)
    assert before
    done = subprocess.run(
        _torchrun("--resume", str(run_dir), "--quiet"),
        capture_output=True, text=True, env=_env(), timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    after = _records(run_dir)
    assert after[: len(before)] == before and len(after) > len(before)
    doc = json.loads((run_dir / "pareto.json").read_text())
    assert doc["units_done"] == doc["total_units"] and doc["stopped"] is None
