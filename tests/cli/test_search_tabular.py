"""`factory search --benchmark`: a tabular search as a user runs it, and its mistakes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from factory.cli.main import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def _wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")


def test_tabular_search_prints_a_front_and_its_score(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["search", "--benchmark", "nb201", "--target", "pixel-3", "--strategy", "pnsga3",
            "--queries", "64", "--out", str(out)]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "tabular search on nb201, device column pixel3: 64 queries" in result.output
    doc = json.loads((out / "pareto.json").read_text())
    assert doc["architectures"] == 64 and doc["space"] == "nb201"
    assert 0.8 < doc["tabular"]["normalised_hypervolume"] <= 1.0
    assert set(doc["references"]) == {"resnet", "all_conv3x3", "all_conv1x1"}
    config = json.loads((out / "config.json").read_text())
    assert config["target"] == "pixel3" and config["queries"] == 64


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--target", "x86-cpu"], "no latency column for device 'x86-cpu'; device columns: raspi4"),
        (["--space", "vgg"], "--benchmark tables cover the nb201 space, not 'vgg'"),
        (["--benchmark", "missing.csv"], "'missing.csv' is neither a shipped table"),
    ],
)
def test_mistakes_are_one_line_exit_2(tmp_path: Path, extra: list[str], message: str) -> None:
    result = runner.invoke(app, ["search", "--benchmark", "nb201", *extra, "--out",
                                 str(tmp_path / "r")])  # fmt: skip
    assert result.exit_code == 2, result.output
    assert message in result.output and result.output.startswith("error: ")
    assert len(result.output.strip().splitlines()) == 1


def test_queries_need_a_benchmark(tmp_path: Path) -> None:
    result = runner.invoke(app, ["search", "--queries", "10", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "add --benchmark nb201" in result.output


def test_real_subprocess_cycle_annealing_on_a_malformed_and_the_shipped_table(tmp_path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("index,arch,test_accuracy,latency_ms_x\n0,|none~0|+|none~0|none~1|+|none~0|"
                   "none~1|none~2|,ninety,1.0\n")  # fmt: skip
    cmd = [sys.executable, "-m", "factory.cli.main", "search", "--benchmark"]
    proc = subprocess.run([*cmd, str(bad), "--out", str(tmp_path / "b")], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == (f"error: {bad}: line 2, column test_accuracy: 'ninety' is "
                                   "not a number")  # fmt: skip
    proc = subprocess.run(
        [*cmd, "nb201", "--space", "nb201", "--target", "raspberry-pi-4", "--strategy",
         "cycle-annealing", "--queries", "100", "--out", str(tmp_path / "ca")],
        capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "device column raspi4: 100 queries" in proc.stdout and "fast-anneal" in proc.stdout
