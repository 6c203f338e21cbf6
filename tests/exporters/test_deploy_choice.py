"""Which file to deploy: the fastest measured one, the more accurate one when two are level,
per target; read from a real shipped manifest with its latencies rewritten."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from exporters.deploy_choice import TIE, deploy_choices
from exporters.manifest import Manifest

SHIPPED = Path(__file__).resolve().parents[2] / "factory" / "registry" / "shipped"


@pytest.fixture(scope="module")
def shipped() -> Manifest:
    """The first shipped model's manifest: model.onnx and model.int8.onnx, timed on x86-cpu."""
    entry = json.loads((SHIPPED / "index.json").read_text())["models"][0]
    blob = SHIPPED / "blobs" / "sha256" / entry["manifest_sha256"]
    return Manifest.from_dict(json.loads(blob.read_text()))


def timed(m: Manifest, **medians: float) -> Manifest:
    """`m` with one x86-cpu entry per file, at these medians (keys: fp32, int8, ...)."""
    files = {"fp32": "model.onnx", "int8": "model.int8.onnx"}
    first = m.latency[0]
    entries = tuple(
        dataclasses.replace(first, artifact=files[k], median_ms=v) for k, v in medians.items()
    )
    return dataclasses.replace(m, latency=entries)


def test_the_slower_int8_file_is_not_recommended(shipped: Manifest) -> None:
    (choice,) = deploy_choices(timed(shipped, int8=0.68, fp32=0.46))
    assert (choice.target, choice.artifact, choice.tied) == ("x86-cpu", "model.onnx", False)
    (other,) = choice.others
    assert other.artifact == "model.int8.onnx" and other.ratio == pytest.approx(0.68 / 0.46)
    delta = shipped.metrics["model.int8.onnx"].test_accuracy
    delta -= shipped.metrics["model.onnx"].test_accuracy
    assert other.accuracy_delta == pytest.approx(delta)
    line = choice.sentence()
    assert line.startswith("x86-cpu, batch 1: deploy model.onnx (0.460 ms median, fastest)")
    assert "model.int8.onnx 0.680 ms (1.48x" in line


def test_a_clearly_faster_int8_file_wins(shipped: Manifest) -> None:
    (choice,) = deploy_choices(timed(shipped, fp32=0.50, int8=0.30))
    assert choice.artifact == "model.int8.onnx" and not choice.tied


def test_level_files_go_to_the_more_accurate(shipped: Manifest) -> None:
    acc = {n: r.test_accuracy for n, r in shipped.metrics.items()}
    better = max(acc, key=acc.__getitem__)
    worse = min(acc, key=acc.__getitem__)
    assert acc[better] > acc[worse]
    slower = 0.40 * (1 + TIE / 2)  # the more accurate file is slower, but within TIE
    key = {"model.onnx": "fp32", "model.int8.onnx": "int8"}
    (choice,) = deploy_choices(timed(shipped, **{key[worse]: 0.40, key[better]: slower}))
    assert choice.artifact == better and choice.tied
    assert "as fast within measurement noise, and more accurate" in choice.sentence()
    # outside TIE speed wins again
    far = 0.40 * (1 + 2 * TIE)
    (choice,) = deploy_choices(timed(shipped, **{key[worse]: 0.40, key[better]: far}))
    assert choice.artifact == worse and not choice.tied


def test_one_file_or_another_target_gives_no_advice(shipped: Manifest) -> None:
    assert deploy_choices(timed(shipped, fp32=0.4)) == []
    assert deploy_choices(timed(shipped, fp32=0.4, int8=0.3), "raspberry-pi-4") == []
    assert len(deploy_choices(timed(shipped, fp32=0.4, int8=0.3), "x86-cpu")) == 1
