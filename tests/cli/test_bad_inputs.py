"""Every command against the mistakes a new (or hostile) user makes: one `error:` line that
names the problem and what to do, exit code 2, no traceback, and nothing left behind.

The table is the test: one row per bad input, `(command line, fragment of the message)`.
Placeholders in a command line: {box} an empty sandbox (with `afile` and `empty/` in it),
{run} a finished run whose front is empty, {badrun} a run with a damaged pareto.json,
{bundle} a real bundle, {busy} a port something listens on. A new command adds rows here.
"""

from __future__ import annotations

import json
import shlex
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from factory.cli.main import app
from factory.registry.sources import REGISTRY_ENV
from factory.search.config import SearchConfig
from factory.search.store import RunStore, save_config
from targets import TARGETS_ENV
from tests.registry.bundles import write_bundle

SHIPPED = "fmnist-small-shufflenet-4ccbcda569cc"  # a model of the shipped registry
runner = CliRunner()

# (command line, fragment of the one error line); env changes go in ENV below
ROWS: list[tuple[str, str]] = [
    # the root command
    ("nosuch", "no such command 'nosuch'"),
    ("--bogus", "no such option: --bogus"),
    # targets
    ("targets show pdp-11", "unknown target 'pdp-11'; valid:"),
    ("targets show", "missing argument"),
    ("targets --bogus", "no such option"),
    ("targets", "EMF_TARGETS_DIR=/nonexistent is not a directory"),
    # spaces
    ("spaces show resnet", "unknown space 'resnet'"),
    ("spaces show mobilenet -g 1-2-x", "cannot parse mobilenet genotype"),
    ("spaces show vgg --input-shape 28x28", "input shape must look like CxHxW"),
    ("spaces show vgg --input-shape 3x100000x100000", "elements, more than"),
    ("spaces show vgg --classes 1", "invalid value for '--classes'"),
    ("spaces show vgg --sample -1", "invalid value for '--sample'"),
    # search: refused before its run directory exists
    ("search --out /etc/passwd/x", "/etc/passwd is a file; choose another"),
    ("search --out {box}/afile", "is a file, not a directory"),
    ("search --latency nonsense --out {box}/r", "unknown latency mode 'nonsense'"),
    ("search --dataset nosuch --out {box}/r", "unknown dataset 'nosuch'; valid:"),
    ("search --f-min 5 --f-max 1 --out {box}/r", "--f-min (5) must be below --f-max (1)"),
    ("search --f-min -1 --out {box}/r", "--f-min must be a finite cost >= 0"),
    ("search --dataset imagefolder --out {box}/r", "pass --data-root DIR"),
    ("search --dataset cifar10 --data-root {box}/empty --out {box}/r", "CIFAR-10 not found"),
    ("search --data-root /nonexistent --out {box}/r", "--data-root /nonexistent is not a dir"),
    ("search --time 0s --out {box}/r", "--time must be longer than 0 s"),
    ("search --time soon --out {box}/r", "cannot read duration 'soon'"),
    ("search --set population=abc --out {box}/r", "population takes a whole number"),
    ("search --set population=true --out {box}/r", "population takes a whole number"),
    ("search --set warmup_epochs=x --out {box}/r", "warmup_epochs takes a number"),
    ("search --set nosuch=1 --out {box}/r", "unknown setting 'nosuch'"),
    ("search --set population --out {box}/r", "--set takes KEY=VALUE"),
    ("search --set space.widths=huge --space shufflenet --out {box}/r", "valid: small, paper"),
    ("search --generations 0", "invalid value for '--generations'"),
    ("search --threads -1", "invalid value for '--threads'"),
    ("search --batch-size 0", "invalid value for '--batch-size'"),
    ("search --val-size -1", "invalid value for '--val-size'"),
    ("search --refine -1", "invalid value for '--refine'"),
    ("search --benchmark nb201 --refine 4 --out {box}/r", "--refine refines a training search"),
    ("search --benchmark nb201 --challengers 2 --out {box}/r", "--challengers is for a training"),
    ("search --challenge bogus --out {box}/r", "--challenge bogus: no manual architecture"),
    ("search --challengers -1", "invalid value for '--challengers'"),
    ("search --space resnet --out {box}/r", "unknown space 'resnet'"),
    ("search --strategy nosuch --out {box}/r", "unknown strategy 'nosuch'"),
    ("search -t pdp-11 --out {box}/r", "unknown target 'pdp-11'"),
    ("search --objectives latency,accuracy --out {box}/r", "objectives must be 'accuracy'"),
    ("search --objectives accuracy,speed --out {box}/r", "unknown objective 'speed'"),
    ("search --cost params --out {box}/r", "add it: --objectives accuracy,latency_ms,params"),
    ("search --preset huge --out {box}/r", "unknown preset 'huge'"),
    ("search --init nosuch_net --out {box}/r", "cannot parse mobilenet genotype"),
    ("search --device tpu --out {box}/r", "unknown device 'tpu'"),
    ("search --resume {box}/nothere", "is not a run directory"),
    ("search --out {run}", "already holds a run; resume it with --resume"),
    ("search --resume {run} --seed 5", "cannot resume run"),
    # report
    ("report {box}/nothere", "has no pareto.json"),
    ("report {badrun}", "is not a front written by `factory search`"),
    ("report {run} --json --markdown", "choose one"),
    ("report {run} --out {box}/r.md", "add --markdown"),
    ("report {run} --markdown --out /etc/passwd/x/r.md", "/etc/passwd is a file"),
    ("report {run} --markdown --out {box}", "is a directory; give a file name"),
    # train
    ("train {run} --pareto", "is empty (no candidate scored clearly above chance)"),
    ("train {run}", "choose models with --pareto or --candidate ID"),
    ("train {run} -c zzzz", "'zzzz' is not an architecture of this run"),
    ("train {badrun} --pareto", "is not a front written by"),
    ("train {run} --epochs -1", "invalid value for '--epochs'"),
    ("train {run} --threads -1", "invalid value for '--threads'"),
    ("train {run} --erase 2", "invalid value for '--erase'"),
    ("train {run} -c shufflenet_g3 --device tpu", "unknown device 'tpu'"),
    ("train {box}/nothere --pareto", "not a run directory"),
    # export
    ("export {run} --pareto", "is empty (no candidate scored clearly above chance)"),
    ("export {run} -c shufflenet_g3 --out /etc/passwd/x", "/etc/passwd is a file"),
    ("export {run} -c shufflenet_g3 --out {box}/afile", "is a file, not a directory"),
    ("export {run} -c shufflenet_g3 --format tflite", "unknown export format 'tflite'"),
    ("export {run} -c shufflenet_g3 -t pdp-11", "unknown target 'pdp-11'"),
    ("export {run} -c shufflenet_g3 --calib-images 0", "invalid value for '--calib-images'"),
    ("export {run} -c shufflenet_g3 --out {box}/e", "no trained weights for"),
    # push
    ("push {run} --registry {box}/reg", "has no manifest.json"),
    ("push {bundle} --registry /etc/passwd/x", "/etc/passwd is a file"),
    ("push {bundle} --registry {box}/afile", "is not a directory"),
    ("push {bundle}", "pass --registry DIR"),
    ("push {bundle} --registry http://127.0.0.1:9/reg", "push writes to a registry directory"),
    # models
    ("models --registry ftp://example.org/reg", "only directories and http(s):// URLs"),
    ("models --bogus", "no such option"),
    # pull
    ("pull nosuch-model", "unknown model 'nosuch-model'"),
    (f"pull {SHIPPED}:9.9.9", "9.9.9"),
    (f"pull {SHIPPED} --out /etc/passwd/x", "/etc/passwd is a file"),
    (f"pull {SHIPPED} --out {{box}}/afile", "is a file, not a directory"),
    (f"pull {SHIPPED} -t pdp-11", "unknown target 'pdp-11'"),
    ("pull ../evil", "evil"),
    # profile
    ("profile model.onnx --input-shape 100000x1x28x28", "elements, more than the 16,777,216"),
    ("profile model.onnx --input-shape 28x28", "input shape must look like"),
    ("profile {box}/missing.onnx", "ONNX model not found"),
    ("profile nonsense", "cannot read MODEL 'nonsense'"),
    ("profile mobilenet:1-2-x", "cannot parse mobilenet genotype"),
    ("profile mobilenet:mobilenet_v2@0.5 -t pdp-11", "unknown target 'pdp-11'"),
    ("profile mobilenet:mobilenet_v2@0.5 --classes 1", "invalid value for '--classes'"),
    ("profile lut build --space vgg --classes 1", "invalid value for '--classes'"),
    ("profile lut build --space resnet", "unknown space 'resnet'"),
    ("profile lut build --space vgg --input-shape 1x28", "input shape must look like CxHxW"),
    ("profile lut validate --space vgg --statistic mode", "statistic must be one of"),
    # agent
    ("agent --port {busy}", "is in use by another program; choose another with --port"),
    ("agent --host 0.0.0.0", "refusing to bind 0.0.0.0 without a token"),
    ("agent --port 70000", "port must be in 0..65535"),
    ("agent --max-upload-mb 0", "max upload must be >= 1 MiB"),
    ("agent --job-timeout-s 0", "job timeout must be > 0 s"),
    ("agent --token-file {box}/missing", "cannot read token file"),
]
ENV: dict[str, dict[str, str | None]] = {
    "targets": {TARGETS_ENV: "/nonexistent"},
    "push {bundle}": {REGISTRY_ENV: None},
}


@dataclass(frozen=True)
class World:
    """The directories and port the rows name."""

    box: Path
    run: Path
    badrun: Path
    bundle: Path
    busy: int

    def fill(self, line: str) -> list[str]:
        return shlex.split(line.format(**{k: str(v) for k, v in vars(self).items()}))

    def snapshot(self) -> set[str]:
        """Every path below the directories a mistake must leave untouched."""
        roots = (self.box, self.run, self.badrun, self.bundle)
        return {str(p) for r in roots for p in r.rglob("*")}


def _empty_run(path: Path, pareto: object) -> Path:
    """A run directory as `factory search` leaves one, with the given pareto.json."""
    config = SearchConfig(
        space="shufflenet", strategy="random", objectives=("accuracy", "macs"), cost="macs"
    )
    save_config(path, config.to_dict())
    RunStore(path).close()
    (path / "pareto.json").write_text(json.dumps(pareto))
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("bad-inputs")
    box = root / "box"
    (box / "empty").mkdir(parents=True)
    (box / "afile").write_text("not a directory\n")
    front = {"objectives": ["accuracy", "macs"], "evaluations": 0, "architectures": 0}
    run = _empty_run(root / "run", {**front, "front": [], "references": {}})
    badrun = _empty_run(root / "badrun", {"front": 7})
    bundle = write_bundle(root / "bundles")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield World(box, run, badrun, bundle, listener.getsockname()[1])


@pytest.mark.parametrize(("line", "fragment"), ROWS, ids=[r[0] for r in ROWS])
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(
    world: World, line: str, fragment: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    before = world.snapshot()
    result = runner.invoke(app, world.fill(line), env=ENV.get(line, {}))
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert fragment in lines[0]
    assert result.stdout == ""
    assert world.snapshot() == before, "a refused command left files behind"


def test_the_table_covers_every_command() -> None:
    assert len(ROWS) >= 60
    firsts = {line.split()[0] for line, _ in ROWS}
    commands = {c.name for c in app.registered_commands} | {g.name for g in app.registered_groups}
    assert commands <= firsts


def test_a_real_process_prints_one_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "factory.cli.main", "search", "--generations", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("error: invalid value for '--generations'")
    assert proc.stderr.count("\n") == 1


def test_pull_never_replaces_a_changed_copy_without_force(tmp_path: Path) -> None:
    dest = tmp_path / SHIPPED
    pull = ["pull", SHIPPED, "--out", str(tmp_path)]
    assert runner.invoke(app, pull).exit_code == 0
    assert runner.invoke(app, pull).exit_code == 0  # an unchanged copy may be refreshed
    card = next(p for p in dest.iterdir() if p.suffix == ".md")
    card.write_text(card.read_text() + "\nmy notes\n")
    refused = runner.invoke(app, pull)
    assert refused.exit_code == 2, refused.output
    assert "was changed since it was pulled" in refused.stderr and "--force" in refused.stderr
    assert card.read_text().endswith("my notes\n")
    forced = runner.invoke(app, [*pull, "--force"])
    assert forced.exit_code == 0, forced.output
    assert "my notes" not in card.read_text()
    (dest / "notes.txt").write_text("mine\n")  # an added file is a change too
    added = runner.invoke(app, pull)
    assert added.exit_code == 2 and "it holds notes.txt" in added.stderr
    assert (dest / "notes.txt").exists()
