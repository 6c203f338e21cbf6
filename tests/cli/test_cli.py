"""The CLI as a user meets it: help, defaults, valid and invalid values, one real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from factory import __version__
from factory.cli.main import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def _wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")


def invoke(*args: str):
    return runner.invoke(app, list(args))


def test_help_lists_command_groups() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    for group in ("targets", "spaces"):
        assert group in result.output


def test_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0 and result.output.strip() == f"factory {__version__}"


def test_targets_table_and_show() -> None:
    result = invoke("targets")
    assert result.exit_code == 0
    assert "x86-cpu (default)" in result.output and "jetson-orin-nano" in result.output
    shown = invoke("targets", "show", "jetson", "--json")
    assert shown.exit_code == 0
    data = json.loads(shown.output)
    assert data["name"] == "jetson-orin-nano" and data["runtime"] == "tensorrt"


def test_targets_json_lists_all() -> None:
    result = invoke("targets", "--json")
    assert result.exit_code == 0
    assert len(json.loads(result.output)) == 6


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("targets", "show", "pdp-11"), "unknown target 'pdp-11'; valid: cuda-gpu"),
        (("spaces", "show", "resnet"), "unknown space 'resnet'; valid: mobilenet, nb201, shuf"),
        (("spaces", "show", "mobilenet", "-g", "1-2-x"), "cannot parse mobilenet genotype"),
        (("spaces", "show", "mobilenet", "-g", "0-0"), "needs 23 choices"),
        (("spaces", "show", "vgg", "--input-shape", "28x28"), "input shape must look like"),
    ],
)
def test_user_mistakes_are_one_line_exit_2(args: tuple[str, ...], message: str) -> None:
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert message in lines[0]
    assert "Traceback" not in result.output


def test_spaces_list() -> None:
    result = invoke("spaces")
    assert result.exit_code == 0
    for name in ("shufflenet", "mobilenet", "vgg", "vgg11", "mobilenet_v2", "shufflenet_g3"):
        assert name in result.output


def test_spaces_show_samples_json_with_costs() -> None:
    result = invoke("spaces", "show", "mobilenet", "--sample", "3", "--seed", "1", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["space"] == "mobilenet" and len(data["decisions"]) == 23
    models = data["models"]
    assert len(models) == 3 and len({m["genotype"] for m in models}) == 3
    for m in models:
        assert m["macs"] > 0 and m["params"] > 0
        assert m["layers"][-1]["out_shape"][0] == 10
    again = json.loads(
        invoke("spaces", "show", "mobilenet", "--sample", "3", "--seed", "1", "--json").output
    )
    assert again == data


def test_spaces_show_manual_by_default_adapts_to_input() -> None:
    result = invoke("spaces", "show", "vgg", "--input-shape", "3x32x32", "--classes", "5", "--json")
    assert result.exit_code == 0, result.output
    models = {m["label"]: m for m in json.loads(result.output)["models"]}
    assert "vgg11" in models
    assert models["vgg11"]["layers"][-1]["out_shape"][0] == 5


def test_real_subprocess_spaces_show() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "factory.cli.main", "spaces", "show", "mobilenet", "--sample", "3"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("MACs (1 multiply-add = 1, BatchNorm excluded)") == 3
    bad = subprocess.run(
        [sys.executable, "-m", "factory.cli.main", "targets", "show", "nope"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and bad.stderr.startswith("error: unknown target 'nope'")
    assert "Traceback" not in bad.stderr


def test_cli_imports_without_torch() -> None:
    """`factory agent` must start on a device that has only a runtime installed."""
    code = "import sys, factory.cli.main; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
