"""`factory train` on a real tiny search run over Fashion-MNIST (a few hundred images)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from factory.cli.main import app
from factory.trained import OpenRun, open_run, resolve_candidates, trained_dir, trained_model
from factory.training import evaluate, limit_splits
from tests.tiny_run import tiny_random_run

FMNIST = Path("/usr/share/datasets/fashion-mnist")
pytestmark = pytest.mark.skipif(not FMNIST.exists(), reason="needs dataset-fashion-mnist")
runner = CliRunner()
LIMIT = "256"  # training and test images per model: two SGD steps of 128


@pytest.fixture(autouse=True)
def _wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished random-search run: config, pareto.json and a supernet checkpoint."""
    return tiny_random_run(tmp_path_factory.mktemp("run") / "run")


@pytest.fixture(scope="module")
def opened(run_dir: Path) -> OpenRun:
    return open_run(run_dir)


def invoke(*args: str):
    return runner.invoke(app, ["train", *args, "--quiet"])


def test_trains_saves_and_reloads_to_the_reported_accuracy(run_dir: Path, opened: OpenRun) -> None:
    result = invoke(str(run_dir), "-c", "shufflenet_g8", "--epochs", "1", "--limit-images", LIMIT)
    assert result.exit_code == 0, result.output
    (cand,) = resolve_candidates(run_dir, opened.space, ["shufflenet_g8"], pareto=False)
    folder = trained_dir(run_dir, cand.arch_id)
    assert (folder / "model.safetensors").stat().st_size > 0
    info = json.loads((folder / "train.json").read_text())
    assert info["arch_id"] == cand.arch_id and info["from_supernet"] is False
    assert info["genotype"] == opened.space.format(cand.genotype)
    assert info["test_images"] == 256 and info["recipe"]["train_images"] == 256
    assert info["recipe"]["steps"] == 2 and len(info["history"]) == 1
    assert cand.arch_id in result.output and "shufflenet_g8" in result.output
    # the saved weights, loaded into space.build(genotype), score what train.json says
    model, _ = trained_model(run_dir, opened.space, cand)
    data = limit_splits(opened.data, 256, 256)
    assert evaluate(model, data.test).accuracy == info["test_accuracy"]


def test_trained_models_are_skipped_unless_forced(run_dir: Path, opened: OpenRun) -> None:
    args = (str(run_dir), "-c", "shufflenet_g3", "--epochs", "1", "--limit-images", "128")
    assert invoke(*args).exit_code == 0
    (cand,) = resolve_candidates(run_dir, opened.space, ["shufflenet_g3"], pareto=False)
    info_path = trained_dir(run_dir, cand.arch_id) / "train.json"
    before = info_path.read_text()
    again = invoke(*args)
    assert again.exit_code == 0 and "kept: already trained" in again.output
    assert info_path.read_text() == before
    forced = invoke(*args, "--force", "--seed", "1")
    assert forced.exit_code == 0 and "trained" in forced.output
    assert json.loads(info_path.read_text())["recipe"]["seed"] == 1
    assert not [p for p in info_path.parent.parent.iterdir() if p.name.startswith(".")]


def test_pareto_from_supernet(run_dir: Path) -> None:
    result = invoke(str(run_dir), "--pareto", "--from-supernet", "--limit-images", "128")
    assert result.exit_code == 0, result.output
    front = json.loads((run_dir / "pareto.json").read_text())["front"]
    for row in front:
        info = json.loads((trained_dir(run_dir, row["arch_id"]) / "train.json").read_text())
        assert info["from_supernet"] is True
        assert info["epochs"] == 2.0 and info["recipe"]["lr"] == 0.02  # fine-tune defaults
        assert row["arch_id"] in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("-c", "nonexistent"), "candidate 'nonexistent' is not an architecture of this run"),
        ((), "choose models with --pareto or --candidate ID"),
        (("-c", "shufflenet_g1", "--lr", "0"), "learning rate must be positive"),
        (("-c", "shufflenet_g1", "--device", "gpu0"), "unknown device 'gpu0'"),
    ],
)
def test_user_mistakes_are_one_line_exit_2(run_dir: Path, args: tuple, message: str) -> None:
    result = invoke(str(run_dir), *args)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without one")
def test_asking_for_a_missing_gpu_says_so(run_dir: Path) -> None:
    result = invoke(str(run_dir), "-c", "shufflenet_g1", "--device", "cuda")
    assert result.exit_code == 2 and "torch sees no CUDA GPU" in result.output


def test_help_says_what_an_epoch_costs() -> None:
    result = runner.invoke(app, ["train", "--help"])
    assert result.exit_code == 0
    assert "--from-supernet" in result.output and "min" in result.output


def test_not_a_run_directory_in_a_real_process(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "factory.cli.main", "train", str(tmp_path), "--pareto"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {tmp_path} is not a run directory (no config.json)"


def test_json_summary(run_dir: Path) -> None:
    result = runner.invoke(
        app, ["train", str(run_dir), "-c", "shufflenet_g1", "--epochs", "0.5", "--limit-images",
              LIMIT, "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    assert row["name"] == "shufflenet_g1" and row["status"] == "trained"
    assert 0 <= row["test_accuracy"] <= 1 and row["params"] > 0
