"""80 columns (and piped output, which rich renders 80 wide): every table keeps whole the
values a user types or compares, and every `--help` shows its option names whole and ends
with examples."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer._click import Command  # typer vendors click
from typer.testing import CliRunner

from factory.cli.main import app
from factory.registry import Index, open_registry
from factory.search.config import SearchConfig
from factory.search.store import RunStore, save_config

runner = CliRunner()
LONG = ("search", "train", "export", "profile model", "profile lut build", "profile lut validate")


@pytest.fixture(autouse=True)
def _eighty_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")


def invoke(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def fits(text: str, lines: str = "┏┃┡│└") -> None:
    """No table line (a line starting with one of `lines`; "" for every line) wider than
    the terminal, nothing cut with an ellipsis. Notes may be longer: they hold a path."""
    assert "…" not in text
    assert all(len(line) <= 80 for line in text.splitlines() if line.startswith(tuple(lines))), text


def test_models_keeps_every_name_and_version_whole() -> None:
    out = invoke("models")
    fits(out)
    index: Index = open_registry(None).read_index()
    for e in index.models:
        assert any(e.name in line and e.version in line for line in out.splitlines()), e.ref
    assert "torchvision/mobilenet_v3_large" in out
    assert "not shown at this width" in out and "factory models --json" in out


def test_targets_keeps_every_name_and_alias_whole() -> None:
    import targets

    out = invoke("targets")
    fits(out)
    registry = targets.registry()
    for name in registry.names():
        assert name in out and all(alias in out for alias in registry.get(name).aliases)


def test_spaces_keep_every_manual_architecture_whole() -> None:
    from factory.spaces import SPACES, get_space

    out = invoke("spaces")
    fits(out)
    for name in SPACES.names():
        assert name in out and all(
            m in out.split() or f"{m}," in out for m in get_space(name).manual()
        )


def test_report_keeps_arch_ids_and_genotypes_whole(tmp_path: Path) -> None:
    from factory.spaces import get_space

    space = get_space("mobilenet")
    manual = space.manual()
    config = SearchConfig(objectives=("accuracy", "latency_ms"))
    save_config(tmp_path, config.to_dict())
    RunStore(tmp_path).close()
    row = {"phase": "generation", "step": 5, "accuracy": 0.754, "latency_ms": 0.105,
           "latency_ms_final": 0.111, "latency_how": "robust"}  # fmt: skip
    front = [{"arch_id": space.arch_id(g), "genotype": space.format(g), **row}
             for g in list(manual.values())[:2]]  # fmt: skip
    refs = {name: {"arch_id": space.arch_id(g), "genotype": space.format(g), **row,
                   "phase": "reference"} for name, g in manual.items()}  # fmt: skip
    doc = {"objectives": ["accuracy", "latency_ms"], "evaluations": 2, "architectures": 2,
           "front": front, "references": refs}  # fmt: skip
    (tmp_path / "pareto.json").write_text(json.dumps(doc))
    out = invoke("report", str(tmp_path))
    assert "…" not in out
    for r in [*front, *refs.values()]:
        assert r["arch_id"] in out or any(n in out for n in refs)
        assert any(line.rstrip().endswith(r["genotype"]) for line in out.splitlines())
    for name in refs:
        assert name in out


def test_train_summary_keeps_ids_and_names_whole(tmp_path: Path, capsys) -> None:
    from factory.cli.train_cmd import Row, _print_table

    rows = [
        Row("9ce808188291", "shufflenet_g3@0.5", 161_000, 6_100_000, 5.0, 0.9, 300.0, "trained"),
        Row("3a0e80fd5f05", "3a0e80fd5f05", 1, 1, 60.0, 0.95, 3600.0, "kept: already trained"),
    ]
    _print_table(tmp_path / "runs" / "20261122-113000-mobilenet-pnsga3", rows)
    out = capsys.readouterr().out
    fits(out)
    for needle in ("9ce808188291", "shufflenet_g3@0.5", "3a0e80fd5f05", "90.00 %", "95.00 %"):
        assert needle in out


def test_export_summary_keeps_bundle_and_file_names_whole(tmp_path: Path, capsys) -> None:
    from exporters.bundle import Bundle
    from exporters.manifest import read_manifest
    from factory.cli.export_cmd import _report

    name = "fmnist-medium-shufflenet-b2ff48269457"
    invoke("pull", name, "--out", str(tmp_path))
    capsys.readouterr()
    bundle = Bundle(tmp_path / name, read_manifest(tmp_path / name), 1e-6, 500, 60.0)
    _report([bundle], quiet=False)
    out = capsys.readouterr().out
    assert "…" not in out
    for needle in (name, "model.onnx", "model.int8.onnx", "x86-cpu ms"):
        assert needle in out


def _commands(group: Command, path: tuple[str, ...] = ()) -> Iterator[tuple]:
    """Every command and group under `group`, hidden ones (profile MODEL) included."""
    for name, cmd in getattr(group, "commands", {}).items():
        yield (*path, name), cmd
        yield from _commands(cmd, (*path, name))


COMMANDS = list(_commands(typer.main.get_command(app)))


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_help_shows_option_names_whole_and_ends_with_examples(
    path: tuple[str, ...], command: Command
) -> None:
    out = invoke(*path, "--help")
    fits(out, lines="")
    for param in (p for p in command.params if not getattr(p, "hidden", False)):
        for opt in [*param.opts, *param.secondary_opts]:
            if opt.startswith("-"):
                assert opt in out, opt
    tail = out[out.rindex("Examples:") :]
    assert tail.count("\n    factory ") in (1, 2, 3), tail
    if " ".join(path) in LONG:
        assert "Duration:" in tail
