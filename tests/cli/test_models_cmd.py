"""`factory push / models / pull` as a user meets them: real bundles, a real HTTP server on
127.0.0.1, one-line errors with exit 2, a torchvision recipe exported offline, and one real
subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import typer
from typer.testing import CliRunner

from exporters.manifest import Manifest
from factory.cli import models_cmd
from factory.cli.errors import UserErrorGroup
from factory.registry.index import blob_relpath
from factory.registry.recipes import RECIPES
from tests.registry.bundles import files_under, serve, tiny_onnx, write_bundle

REPO = Path(__file__).resolve().parents[2]
root = typer.Typer(cls=UserErrorGroup, no_args_is_help=True, pretty_exceptions_enable=False)
root.command("push")(models_cmd.push)
root.command("models")(models_cmd.models)
root.command("pull")(models_cmd.pull)


@root.callback()
def _root() -> None:
    """Stands in for factory/cli/main.py."""


runner = CliRunner()


@pytest.fixture(autouse=True)
def _wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.delenv("EMF_REGISTRY", raising=False)


def invoke(*args: str):
    return runner.invoke(root, [str(a) for a in args])


def one_line_error(result, exit_code: int = 2) -> str:
    assert result.exit_code == exit_code, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    """A registry with tiny 1.0.0 and 1.1.0 and small 2.0.0, pushed through the CLI."""
    reg = tmp_path / "registry"
    for name, version, seed in (("tiny", "1.0.0", 0), ("tiny", "1.1.0", 1), ("small", "2.0.0", 2)):
        bundle = write_bundle(tmp_path / "bundles", name, version, seed=seed, accuracy=0.875)
        result = invoke("push", bundle, "--registry", reg)
        assert result.exit_code == 0, result.output
        assert result.output.startswith(f"added {name}:{version} in {reg} (3 files")
    return reg


def cache() -> Path:
    return Path(os.environ["EMF_CACHE_DIR"])


@pytest.mark.parametrize("command", ["push", "models", "pull"])
def test_help(command: str) -> None:
    result = invoke(command, "--help")
    assert result.exit_code == 0
    assert "--registry" in result.output


def test_models_table_and_json(registry: Path) -> None:
    result = invoke("models", "--registry", registry)
    assert result.exit_code == 0, result.output
    assert "tiny" in result.output and "1.1.0" in result.output and "87.50 %" in result.output
    assert "torchvision/mobilenet_v3_small" in result.output
    data = json.loads(invoke("models", "--registry", registry, "--json").output)
    assert [(m["name"], m["version"]) for m in data["models"]] == [
        ("small", "2.0.0"),
        ("tiny", "1.0.0"),
        ("tiny", "1.1.0"),
    ]
    assert data["models"][0]["summary"]["test_accuracy"] == 0.875
    assert {r["name"] for r in data["recipes"]} == set(RECIPES.names())


def test_default_registry_is_env_then_shipped(registry: Path, monkeypatch) -> None:
    shipped = json.loads(invoke("models", "--json").output)
    assert shipped["registry"].endswith(str(Path("factory", "registry", "shipped")))
    monkeypatch.setenv("EMF_REGISTRY", str(registry))
    assert json.loads(invoke("models", "--json").output)["registry"] == str(registry)
    result = invoke("pull", "small")
    assert result.exit_code == 0, result.output


def test_pull_says_which_shipped_file_to_deploy() -> None:
    index = json.loads(invoke("models", "--json").output)
    name = index["models"][0]["name"]
    result = invoke("pull", name, "--target", "x86-cpu")
    assert result.exit_code == 0, result.output
    bundle = Path(result.output.split(": ", 1)[1].split(" (", 1)[0])
    m = Manifest.from_dict(json.loads((bundle / "manifest.json").read_text()))
    medians = {e.artifact: e.median_ms for e in m.latency if e.target == "x86-cpu"}
    assert len(medians) == 2
    advice = [line for line in result.output.splitlines() if "deploy" in line]
    assert len(advice) == 1 and advice[0].startswith("x86-cpu, batch 1: deploy model.")
    for artifact, ms in medians.items():  # the chosen file, then the other
        assert any(f"{artifact} {form}" in advice[0] for form in (f"({ms:.3f} ms", f"{ms:.3f} ms"))
    # a target with no measurements gets no advice
    result = invoke("pull", name, "--target", "raspberry-pi-4")
    assert result.exit_code == 0 and "deploy" not in result.output


def test_pull_over_http_then_onnxruntime(registry: Path, tmp_path: Path) -> None:
    with serve(registry) as url:
        result = invoke("pull", "tiny", "--registry", url, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    cached = cache() / "models" / "tiny" / "1.1.0"
    assert f"tiny:1.1.0: {cached} (downloaded; 3 files, sha256 verified)" in result.output
    model = tmp_path / "out" / "tiny" / "model.onnx"
    assert model.read_bytes() == tiny_onnx(1)
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    x = np.zeros((2, 1, 28, 28), np.float32)
    assert session.run(None, {"input": x})[0].shape == (2, 10)
    again = invoke("pull", "tiny:1.1.0", "--registry", registry)
    assert "already in the cache" in again.output


def test_unknown_model_lists_what_exists(registry: Path) -> None:
    line = one_line_error(invoke("pull", "large", "--registry", registry))
    assert "unknown model 'large'; available: small, tiny" in line and "torchvision/" in line
    line = one_line_error(invoke("pull", "tiny:9.0.0", "--registry", registry))
    assert "no version '9.0.0'; available: 1.0.0, 1.1.0" in line
    line = one_line_error(invoke("pull", "torchvision/resnet152", "--no-pretrained"))
    assert "unknown recipe 'torchvision/resnet152'; valid: torchvision/mnasnet0_5" in line


def test_tampered_blob_refused_and_deleted(registry: Path) -> None:
    index = json.loads((registry / "index.json").read_text())
    sha = next(m for m in index["models"] if m["name"] == "small")["files"]["model.onnx"]
    blob = registry / blob_relpath(sha)
    blob.write_bytes(blob.read_bytes()[:-1] + b"\x00")
    with serve(registry) as url:
        line = one_line_error(invoke("pull", "small", "--registry", url))
    assert "checksum mismatch for model.onnx of small:2.0.0" in line and "deleted" in line
    assert files_under(cache()) == []


def test_interrupted_download_leaves_nothing(registry: Path) -> None:
    with serve(registry, "cut") as url:
        line = one_line_error(invoke("pull", "tiny", "--registry", url))
    assert "interrupted" in line
    assert files_under(cache()) == []


def test_traversal_names_refused(registry: Path) -> None:
    line = one_line_error(invoke("pull", "../../etc", "--registry", registry))
    assert "invalid model name '../../etc'" in line
    line = one_line_error(invoke("pull", "tiny:../../x", "--registry", registry))
    assert "invalid version" in line


def test_push_errors(registry: Path, tmp_path: Path) -> None:
    line = one_line_error(invoke("push", write_bundle(tmp_path / "x")))
    assert "--registry DIR" in line
    changed = write_bundle(tmp_path / "changed", seed=5)  # tiny 1.0.0 with other weights
    line = one_line_error(invoke("push", changed, "--registry", registry))
    assert "already in" in line and "--force" in line
    result = invoke("push", changed, "--registry", registry, "--force")
    assert result.exit_code == 0 and result.output.startswith("replaced tiny:1.0.0")
    line = one_line_error(invoke("push", changed, "--registry", "http://127.0.0.1:9/reg"))
    assert "push writes to a registry directory" in line


def test_tensorrt_target_without_gpu_is_one_line(registry: Path) -> None:
    from profilers.trt_engine import trt_available

    if trt_available()[0]:
        pytest.skip("TensorRT and a GPU are here: the engine would really be built")
    line = one_line_error(invoke("pull", "tiny", "--registry", registry, "--target", "cuda-gpu"))
    assert "factory agent" in line and "cuda-gpu" in line
    line = one_line_error(invoke("pull", "tiny", "--registry", registry, "--target", "pdp-11"))
    assert "unknown target 'pdp-11'" in line


def test_recipe_table_matches_torchvision() -> None:
    import torchvision

    for name in RECIPES.names():
        recipe = RECIPES.get(name)
        weights = torchvision.models.get_model_weights(recipe.arch)
        assert weights.DEFAULT.name == recipe.weights, name
        meta = weights.DEFAULT.meta
        assert meta["num_params"] == recipe.params
        assert meta["_metrics"]["ImageNet-1K"]["acc@1"] == pytest.approx(recipe.top1)
        assert weights.DEFAULT.transforms().resize_size == [recipe.resize]


def test_recipe_pull_offline_runs_in_onnxruntime(tmp_path: Path) -> None:
    result = invoke(
        "pull", "torchvision/shufflenet_v2_x0_5", "--no-pretrained", "--out", tmp_path / "out"
    )
    assert result.exit_code == 0, result.output
    assert "torchvision-shufflenet_v2_x0_5:untrained:" in result.output
    assert "(exported here; 3 files, sha256 verified)" in result.output
    bundle = tmp_path / "out" / "torchvision-shufflenet_v2_x0_5"
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["version"] == "untrained" and len(manifest["classes"]) == 1000
    assert manifest["architecture"]["genotype"] == "shufflenet_v2_x0_5"
    assert manifest["params"] == RECIPES.get("torchvision/shufflenet_v2_x0_5").params
    session = ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(np.float32)
    assert session.run(None, {session.get_inputs()[0].name: x})[0].shape == (2, 1000)
    again = invoke("pull", "torchvision/shufflenet_v2_x0_5", "--no-pretrained")
    assert "already in the cache" in again.output  # verified, not exported again


def test_real_subprocess(registry: Path) -> None:
    env = {**os.environ, "EMF_REGISTRY": str(registry)}
    proc = subprocess.run(
        [sys.executable, "-m", "factory.cli.main", "models", "--json"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert {m["name"] for m in json.loads(proc.stdout)["models"]} == {"small", "tiny"}
    proc = subprocess.run(
        [sys.executable, "-m", "factory.cli.main", "pull", "nope"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and proc.stderr.startswith("error: unknown model 'nope'")
