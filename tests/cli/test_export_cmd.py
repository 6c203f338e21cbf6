"""`factory export` end to end on a tiny real search run (real Fashion-MNIST): inherited
weights, trained weights written with `save_trained`, and the one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from typer.testing import CliRunner

from exporters import manifest as mf
from factory.cli.main import app
from factory.trained import TrainedInfo, open_run, save_trained
from tests.tiny_run import tiny_random_run

FMNIST = Path("/usr/share/datasets/fashion-mnist")
pytestmark = pytest.mark.skipif(not FMNIST.exists(), reason="needs dataset-fashion-mnist")
REPO = Path(__file__).resolve().parents[2]
FAST = ("--warmup-ms", "5", "--min-duration-ms", "30", "--min-iters", "5")
SMALL = ("--calib-images", "64", "--test-images", "200", *FAST)
runner = CliRunner()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_random_run(tmp_path_factory.mktemp("run") / "run", data_root=str(FMNIST))


@pytest.fixture(autouse=True)
def _wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")


def export(*args: str):
    return runner.invoke(app, ["export", *map(str, args)])


def one_line_error(result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_export_from_supernet(run_dir: Path) -> None:
    result = export(run_dir, "-c", "shufflenet_g3", "--from-supernet", *SMALL)
    assert result.exit_code == 0, result.output
    path = run_dir / "export" / "fmnist-shufflenet_g3"
    m = mf.validate_manifest(path)
    assert m.source.from_supernet and m.source.trained_epochs is None
    assert m.source.run.endswith("run") and not m.source.run.startswith("/")
    assert (m.architecture.space, m.dataset) == ("shufflenet", "fashion-mnist")
    assert m.metrics["model.int8.onnx"].test_images == 200
    assert {e.artifact for e in m.latency} == {"model.onnx", "model.int8.onnx"}
    for needle in ("fmnist-shufflenet_g3", "model.int8.onnx", "x86-cpu", "KiB"):
        assert needle in result.output
    # again without --force: refused, and the bundle is untouched
    again = export(run_dir, "-c", "shufflenet_g3", "--from-supernet", *SMALL)
    one_line_error(again, "already exists", "--force")
    assert mf.validate_manifest(path) == m


def test_export_trained_weights(run_dir: Path, tmp_path: Path) -> None:
    opened = open_run(run_dir)
    row = json.loads((run_dir / "pareto.json").read_text())["front"][0]  # a searched one
    g, arch_id = opened.space.parse(row["genotype"]), row["arch_id"]
    torch.manual_seed(3)
    model = opened.space.build(g).eval()
    info = TrainedInfo(
        arch_id, "shufflenet", opened.space.format(g), "fashion-mnist", 2.0, False, 0.5, 10000, 1.0
    )
    save_trained(run_dir, model, info)
    result = export(
        run_dir,
        "-c",
        arch_id[:6],
        "--format",
        "onnx",
        "--out",
        tmp_path,
        "--name-prefix",
        "t-",
        "--version",
        "2.1.0",
        "--quiet",
        *SMALL,
    )
    assert result.exit_code == 0, result.output
    path = tmp_path / f"t-shufflenet-{arch_id}"
    assert result.output.strip() == str(path)
    m = mf.validate_manifest(path)
    assert (m.version, m.source.trained_epochs, m.source.from_supernet) == ("2.1.0", 2.0, False)
    assert m.architecture.genotype == opened.space.format(g) and m.file("onnx-int8") is None
    x, _ = opened.data.test.take(torch.arange(7))
    got = ort.InferenceSession(str(path / "model.onnx")).run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        assert np.abs(got - model(x).numpy()).max() <= 1e-4  # the saved weights, not others


def test_missing_trained_weights(run_dir: Path) -> None:
    result = export(run_dir, "-c", "shufflenet_g8", *SMALL)
    one_line_error(result, "no trained weights", "factory train", "--from-supernet")
    assert not (run_dir / "export" / "fmnist-shufflenet_g8").exists()


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (
            ("-c", "shufflenet_g3", "--format", "onnx,tflite"),
            ("'tflite'", "onnx, onnx-int8, tensorrt"),
        ),
        (("-c", "shufflenet_g3", "--target", "nosuch"), ("nosuch", "x86-cpu")),
        (("-c", "shufflenet_g3", "--format", "tensorrt"), ("needs a TensorRT target",)),
        (("--from-supernet",), ("--pareto or --candidate",)),
        (("-c", "nosuch_arch"), ("nosuch_arch", "shufflenet_g3")),
        (
            ("-c", "shufflenet_g3", "--from-supernet", "--name-prefix", "A/"),
            ("invalid model name",),
        ),
    ],
)
def test_bad_input_is_one_line(run_dir: Path, args: tuple[str, ...], needles) -> None:
    one_line_error(export(run_dir, *args), *needles)


def test_not_a_run(tmp_path: Path) -> None:
    one_line_error(export(tmp_path, "--pareto"), "not a run directory")


def test_help_lists_the_options() -> None:
    result = export("--help")
    assert result.exit_code == 0
    for option in ("--pareto", "--candidate", "--format", "--target", "--from-supernet", "--force"):
        assert option in result.output


def test_real_subprocess_error(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "factory.cli.main", "export", str(tmp_path), "--format", "x"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert (
        proc.stderr.strip() == "error: unknown export format 'x'; valid: onnx, onnx-int8, tensorrt"
    )


def test_json_lists_each_bundle_with_its_manifest(run_dir: Path, tmp_path: Path) -> None:
    result = export(run_dir, "-c", "shufflenet_g1", "--from-supernet", "--format", "onnx",
                    "--out", tmp_path, *SMALL, "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    (bundle,) = json.loads(result.stdout)
    assert bundle["path"] == str(tmp_path / "fmnist-shufflenet_g1")
    assert bundle["manifest"]["name"] == "fmnist-shufflenet_g1"
    assert bundle["parity_max_abs_diff"] < 1
