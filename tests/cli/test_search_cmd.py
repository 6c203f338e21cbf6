"""`factory search` options checked before a run starts."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from factory.cli.main import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def _wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")


def test_latency_modes_in_help_and_unknown_one_refused(tmp_path) -> None:
    help_text = runner.invoke(app, ["search", "--help"]).output
    assert "robust" in help_text and "measure" in help_text
    result = runner.invoke(app, ["search", "--latency", "fast", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert "unknown latency mode 'fast'; valid: auto, measure, robust, table" in result.output
    assert not (tmp_path / "r").exists()  # refused before anything is written
