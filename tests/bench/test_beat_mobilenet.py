"""bench/beat_mobilenet.py judges each model by its mean over training seeds: a second seed
trains through `factory train` into RUN/seeds/<seed>/, never over the run's own trained/
models, and a model trained with another recipe is refused rather than averaged."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import onnx
import pytest

from tests.tiny_run import FMNIST, tiny_random_run

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not FMNIST.exists(), reason="needs dataset-fashion-mnist")
sys.path.insert(0, str(ROOT / "bench"))

import beat_mobilenet as bench  # noqa: E402

MODEL = "shufflenet_g3@0.5"
SMALL = ("--limit-images", "128")  # a few batches and 128 test images


def _info_path(run: Path, seed: int) -> Path:
    return next((bench.seed_run(run, seed) / "trained").iterdir()) / "train.json"


def test_seeds_train_apart_are_averaged_and_must_share_the_recipe(tmp_path: Path) -> None:
    run = tiny_random_run(tmp_path / "run")
    bench.train([(run, MODEL, 0), (run, MODEL, 1)], 0.01, 1, at_once=2, extra=SMALL)

    assert sorted(p.name for p in (run / "seeds").iterdir()) == ["1"]
    infos = [json.loads(_info_path(run, s).read_text()) for s in (0, 1)]
    assert [i["recipe"]["seed"] for i in infos] == [0, 1]
    assert len(list((run / "trained").iterdir())) == 1  # seed 1 went to its own directory

    model, accs, recipe = bench.accuracies(run, MODEL, [0, 1])
    assert onnx.load_from_string(model).graph.node  # the seed-0 weights, exported
    assert accs == {0: infos[0]["test_accuracy"], 1: infos[1]["test_accuracy"]}
    assert recipe["seed"] == 0
    assert bench.mean(accs) == pytest.approx((accs[0] + accs[1]) / 2)

    infos[1]["recipe"]["lr"] *= 2  # as if seed 1 had been trained with another recipe
    _info_path(run, 1).write_text(json.dumps(infos[1]))
    with pytest.raises(SystemExit, match="another recipe"):
        bench.accuracies(run, MODEL, [0, 1])


def test_a_failed_training_stops_the_bench(tmp_path: Path) -> None:
    run = tiny_random_run(tmp_path / "run")
    with pytest.raises(SystemExit, match="training run failed"):
        bench.train([(run, "no_such_model", 0)], 0.01, 1, at_once=1)
