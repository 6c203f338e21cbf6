"""Latency lookup tables on real ONNX Runtime sessions: a small shufflenet table (16x16
input, short timings, a capped block count) is built once per module."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from torch import nn

from factory import lut
from factory.lut import LutSettings, build_table, load_table, space_for
from factory.lut import fit as lut_fit
from factory.spaces import Block
from targets import AgentRef, get_target
from targets.errors import UserError

SHAPE = (1, 16, 16)
TINY = LutSettings(
    warmup_ms=2,
    min_duration_ms=10,
    min_iters=3,
    calibration_archs=4,
    patience=2,
    max_samples=3,
    max_blocks=16,
)


@pytest.fixture(scope="module")
def cpu(tmp_path_factory: pytest.TempPathFactory):
    """x86-cpu with its tables in a temp dir (module scope: before conftest's cache env)."""
    tables = tmp_path_factory.mktemp("lut")
    return dataclasses.replace(get_target("x86-cpu"), latency_table=str(tables))


@pytest.fixture(scope="module")
def table(cpu):
    return build_table(space_for("shufflenet", SHAPE, 10), cpu, TINY, np.random.default_rng(0))


def test_build_writes_json_under_its_key(table, cpu) -> None:
    assert table.path.parent == Path(cpu.latency_table)
    assert (
        table.path.name == f"x86-cpu_shufflenet_1x16x16_k10_fp32_onnxruntime-{ort.__version__}.json"
    )
    data = json.loads(table.path.read_text())
    assert data["key"] == {
        "space": "shufflenet",
        "target": "x86-cpu",
        "input_shape": [1, 16, 16],
        "num_classes": 10,
        "precision": "fp32",
        "runtime": "onnxruntime",
        "runtime_version": ort.__version__,
    }
    assert data["build"]["blocks_found"] == TINY.max_blocks  # the cap held
    assert len(data["blocks"]) >= TINY.max_blocks  # + blocks of the calibration archs
    assert {b["source"] for b in data["blocks"].values()} == {"build"}
    assert all(b["min_ms"] >= 0 and b["median_ms"] >= 0 for b in data["blocks"].values())
    assert any(b["min_ms"] > 0 for b in data["blocks"].values())
    assert len(data["calibration"]) == TINY.calibration_archs
    for stat in lut.STATISTICS:
        assert set(data["fit"][stat]) >= {"a", "b", "c_ms_per_mparam", "degenerate", "n"}
    assert data["filled_on_demand"] == 0


def test_rebuild_with_the_same_key_is_cached(table, cpu) -> None:
    mtime = table.path.stat().st_mtime_ns
    again = build_table(table.space, cpu, TINY, np.random.default_rng(99))
    assert again.path == table.path and table.path.stat().st_mtime_ns == mtime
    assert again.blocks.keys() == table.blocks.keys() and again.fit == table.fit


def test_prediction_is_near_an_end_to_end_measurement(table) -> None:
    # calibration archs: all their blocks are in the table, none is profiled here
    archs = [table.space.parse(c["genotype"]) for c in table.calibration[:2]]
    measured = lut.measure_archs(table.space, archs, table.target, TINY)
    for g, timing in zip(archs, measured, strict=True):
        ratio = table.predict(g, "min") / timing.min_ms
        assert 0.4 < ratio < 2.5, (table.space.format(g), ratio)  # loose: a loaded machine


def test_missing_blocks_are_profiled_on_demand_and_saved(table) -> None:
    g = table.space.parse(table.calibration[0]["genotype"])
    key = table.space.blocks(g)[3].key
    table.blocks.pop(key, None)
    before = table.filled_on_demand
    assert table.predict(g) > 0
    assert table.blocks[key]["source"] == "on_demand" and table.filled_on_demand == before + 1
    saved = json.loads(table.path.read_text())
    assert key in saved["blocks"] and saved["filled_on_demand"] == before + 1


def test_a_remote_table_never_profiles_missing_blocks(table) -> None:
    g = table.space.parse(table.calibration[1]["genotype"])
    remote = dataclasses.replace(table.target, agent=AgentRef("http://127.0.0.1:9"))
    copy = dataclasses.replace(table, target=remote, blocks=dict(table.blocks))
    copy.blocks.pop(table.space.blocks(g)[5].key)
    with pytest.raises(UserError, match=r"lacks 1 block.*factory profile lut build --space"):
        copy.predict(g)


def test_validate_reports_mape_max_and_tau(table) -> None:
    rep = lut.validate_table(table, n=3, rng=np.random.default_rng(3), statistic="min")
    assert rep.n == 3 and len(rep.rows) == 3 and rep.statistic == "min"
    assert 0 <= rep.mape_pct <= rep.max_error_pct
    assert -1 <= rep.kendall_tau <= 1
    calibrated = {c["genotype"] for c in table.calibration}
    assert not calibrated & {r["genotype"] for r in rep.rows}  # fresh architectures
    row = rep.rows[0]
    expected = abs(row["predicted_ms"] - row["measured_ms"]) / row["measured_ms"] * 100
    assert math.isclose(row["error_pct"], expected)


def test_a_table_is_refused_for_another_key(table, cpu) -> None:
    other = space_for("shufflenet", SHAPE, 5)  # 5 classes: another head, another table
    with pytest.raises(UserError, match=r"built for another setup \(num_classes 10 != 5\)"):
        load_table(other, cpu, table.path)
    with pytest.raises(UserError, match=r"no latency table .* run `factory profile lut build"):
        load_table(other, cpu)


def test_identity_blocks_cost_nothing_and_are_not_timed(cpu) -> None:
    blocks = [Block("skip:8x4x4", nn.Identity(), (8, 4, 4))]
    entries = lut.profile_blocks(blocks, cpu, TINY, lut.Timing(0.01, 0.01), "build")
    assert entries["skip:8x4x4"] == {"median_ms": 0.0, "min_ms": 0.0, "params": 0, "source": "noop"}


def test_fit_recovers_a_line_and_falls_back_when_degenerate() -> None:
    def calib(xs, ys, mparams):
        return [
            {"sum": {"min_ms": x, "mparams": m}, "measured": {"min_ms": y}}
            for x, y, m in zip(xs, ys, mparams, strict=True)
        ]

    xs = [1.0, 2.0, 3.0, 4.0, 5.0]
    fit = lut_fit.fit_overhead(calib(xs, [1.5 * x + 0.2 for x in xs], [0.1] * 5), "min")
    assert math.isclose(fit["a"], 1.5) and math.isclose(fit["b"], 0.2, abs_tol=1e-9)
    assert not fit["degenerate"] and fit["c_ms_per_mparam"] == 0.0
    params = [0.5, 0.1, 0.9, 0.3, 0.7, 0.2]
    xs6 = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    ys = [1.1 * x + 0.4 * m + 0.05 for x, m in zip(xs6, params, strict=True)]
    fit = lut_fit.fit_overhead(calib(xs6, ys, params), "min")
    assert math.isclose(fit["c_ms_per_mparam"], 0.4, rel_tol=1e-6)
    flat = lut_fit.fit_overhead(calib([2.0] * 4, [2.5, 2.6, 2.4, 2.5], [0.1] * 4), "min")
    assert flat["degenerate"] and flat["a"] == 1.0 and math.isclose(flat["b"], 0.5)


def test_kendall_tau_b_matches_scipy_with_ties() -> None:
    kendalltau = pytest.importorskip("scipy.stats").kendalltau  # scipy is optional
    rng = np.random.default_rng(0)
    x = rng.integers(0, 5, 30).astype(float).tolist()
    y = (np.array(x) + rng.normal(0, 1.5, 30)).round().tolist()
    assert math.isclose(lut_fit.kendall_tau_b(x, y), kendalltau(x, y).statistic, rel_tol=1e-12)


def test_kendall_tau_b_by_hand() -> None:
    assert lut_fit.kendall_tau_b([1, 2, 3], [3, 2, 1]) == -1.0
    assert lut_fit.kendall_tau_b([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)
    # one tie in x: 5 untied pairs in x, 6 in y, score 5 -> 5 / sqrt(5 * 6)
    assert lut_fit.kendall_tau_b([1, 1, 2, 3], [1, 2, 3, 4]) == pytest.approx(5 / math.sqrt(30))


def test_biased_samples_are_valid_and_seeded() -> None:
    space = space_for("mobilenet", (1, 28, 28), 10)
    a = lut.distinct_samples(space, 5, np.random.default_rng(4), sampling="biased")
    b = lut.distinct_samples(space, 5, np.random.default_rng(4), sampling="biased")
    assert a == b and len(set(a)) == 5
    assert all(space.validate(g) == g for g in a)
    with pytest.raises(UserError, match="sampling must be one of"):
        lut.distinct_samples(space, 1, np.random.default_rng(0), sampling="sobol")
