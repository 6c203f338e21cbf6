"""bench/rescore_noise.py replays a run's final rescoring: its batch order 0 on the run's
validation images gives back exactly the scores the run recorded, and the wider score reads
the training images the search left out."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.tiny_run import FMNIST, tiny_random_run

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not FMNIST.exists(), reason="needs dataset-fashion-mnist")
sys.path.insert(0, str(ROOT / "bench"))

import rescore_noise as bench  # noqa: E402

MODELS = ["shufflenet_g1", "shufflenet_g3@0.5"]


def test_replay_gives_back_the_runs_rescored_scores(tmp_path: Path, capsys) -> None:
    # rescored on the 128 validation images, 4 fine-tuning steps (one pass at batch 64)
    run = tiny_random_run(tmp_path / "run", rescore=1, rescore_steps=4)
    refs = json.loads((run / "pareto.json").read_text())["references"]
    bench.main([str(run), "--models", *MODELS, "--orders", "0", "1", "--steps", "4",
                "--images", "300"])  # fmt: skip
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line.startswith("order ")]
    scores = {(r[1], r[2]): (float(r[3]), float(r[7])) for r in rows if r[4] == "%"}
    assert len(scores) == 4 and all(r[6] == "128" and r[10] == "300" for r in rows[:4])
    for name in MODELS:  # order 0 is the run's own rescoring
        assert scores[("0", name)][0] == pytest.approx(100 * refs[name]["accuracy"], abs=0.005)
    assert "differences in points" in out and len(rows) == 6  # 4 scores, 2 differences


def test_a_run_without_checkpoint_is_a_clear_error(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        bench.main([str(tmp_path), "--models", "shufflenet_g1"])
    assert exc.value.code == 2 and capsys.readouterr().err.startswith("error: ")
