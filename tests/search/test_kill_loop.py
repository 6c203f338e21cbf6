"""A search SIGKILLed 20 times (start-up, supernet training, evaluation, checkpoint writing)
and resumed each time keeps every recorded evaluation and ends with the front of a run that
was never interrupted. Slow (several minutes): `pytest -m slow`; bench/kill_loop.py records
the figures in docs/kill_loop.md."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.kill_loop import front, kill_loop, reference, rows


@pytest.mark.slow
def test_twenty_sigkills_lose_nothing_and_end_at_the_reference_front(tmp_path: Path) -> None:
    ref = reference(tmp_path / "reference")  # runs beside the loop
    result = kill_loop(tmp_path / "run", kills=20)
    assert ref.wait(timeout=3600) == 0
    assert len(result["kills"]) == 20, result["kills"]
    assert {k["moment"] for k in result["kills"]} == {"start", "training", "evaluation",
                                                     "checkpoint"}  # fmt: skip
    assert result["kept"], "an evaluation recorded before a kill was lost or changed"
    assert front(tmp_path / "run") == front(tmp_path / "reference")
    assert [r[1:] for r in rows(tmp_path / "run")] == [r[1:] for r in rows(tmp_path / "reference")]
    if report := os.environ.get("EMF_KILL_REPORT"):  # bench/kill_loop.py reads this
        result["front"] = front(tmp_path / "run")
        Path(report).write_text(json.dumps(result, indent=1))
