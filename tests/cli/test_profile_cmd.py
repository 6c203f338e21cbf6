"""`factory profile`: a model on a target (ONNX file, torchvision, SPACE:GENOTYPE, through a
real agent on 127.0.0.1) and `factory profile lut build|validate`, mounted the way
factory/cli/main.py mounts it."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from factory.cli import profile_cmd
from factory.cli.errors import UserErrorGroup
from tests.agent_process import free_port, running_agent, tiny_onnx

REPO = Path(__file__).resolve().parents[2]
TOKEN = "profile-cmd-t0ken"
FAST = ("--warmup-ms", "5", "--min-duration-ms", "30", "--min-iters", "5")
LATENCY_KEYS = {"min", "mean", "median", "p90", "p95", "p99", "std", "cv", "n"}

root = typer.Typer(cls=UserErrorGroup, no_args_is_help=True, pretty_exceptions_enable=False)
root.add_typer(profile_cmd.app, name="profile")


@root.callback()
def _root() -> None:
    """Stands in for factory/cli/main.py."""


runner = CliRunner()


@pytest.fixture(autouse=True)
def _wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")


def profile(*args: str):
    return runner.invoke(root, ["profile", *args])


def profile_json(*args: str) -> dict:
    result = profile(*args, *FAST, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.fixture
def onnx_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.onnx"
    path.write_bytes(tiny_onnx())
    return path


def test_help_explains_both_forms() -> None:
    result = profile("--help")
    assert result.exit_code == 0
    assert "factory profile MODEL --target T" in result.output and "lut" in result.output
    model_help = profile("x.onnx", "--help")
    assert model_help.exit_code == 0 and "--per-op" in model_help.output


def test_onnx_file_costs_from_the_graph(onnx_file: Path) -> None:
    data = profile_json(str(onnx_file), "--target", "x86-cpu", "--per-op")
    assert data["macs"] == 28 * 28 * 4 * 9 and data["params"] == 4 * 9
    assert "Conv" in data["per_op_ms"]
    assert data["input_shape"] == [1, 1, 28, 28] and data["how"] == "measured"
    assert set(data["latency_ms"]) == LATENCY_KEYS and data["latency_ms"]["n"] >= 5
    assert (data["target"], data["runtime"], data["threads"]) == ("x86-cpu", "onnxruntime", 1)


def test_space_genotype_matches_the_space_costs() -> None:
    from factory.spaces import get_space
    from profilers.flops import count_costs

    space = get_space("shufflenet")
    costs = count_costs(space.build(space.manual()["shufflenet_g3"]), (1, 1, 28, 28))
    data = profile_json("shufflenet:shufflenet_g3")
    assert (data["macs"], data["params"]) == (costs.macs, costs.params)
    assert data["input_shape"] == [1, 1, 28, 28] and data["macs_note"] is None


def test_torchvision_model_json_keys() -> None:
    data = profile_json("torchvision:mobilenet_v3_small", "--input-shape", "3x96x96")
    for key in ("macs", "params", "latency_ms", "target", "runtime", "how", "unstable"):
        assert key in data
    for key in ("provider", "threads", "input_shape", "runtime_version", "device"):
        assert key in data
    assert data["input_shape"] == [1, 3, 96, 96]
    assert 9e6 < data["macs"] < 14e6  # 56.5 M at 224 px, ~(96/224)^2 of it here
    assert set(data["latency_ms"]) >= {"median", "p90", "p99", "cv"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("shufflenet:shufflenet_g3", "--target", "pdp-11"), "unknown target 'pdp-11'"),
        (("resnet:1-2",), "unknown space 'resnet'"),
        (("nonsense",), "cannot read MODEL 'nonsense'"),
        (("missing.onnx",), "ONNX model not found"),
        (("shufflenet:1-2-x",), "cannot parse shufflenet genotype"),
        (("torchvision:resnet9000",), "unknown torchvision model 'resnet9000'"),
        (("shufflenet:shufflenet_g3", "--input-shape", "28x28"), "input shape must look like"),
        (("lut", "validate", "--space", "shufflenet"), "no latency table for space shufflenet"),
        (("lut", "build", "--space", "resnet"), "unknown space 'resnet'"),
    ],
)
def test_bad_input_is_one_line_exit_2(args: tuple[str, ...], message: str) -> None:
    result = profile(*args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]


def test_corrupt_onnx_is_one_line_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a protobuf at all")
    result = profile(str(bad))
    assert result.exit_code == 2 and result.output.startswith("error: cannot read ONNX model")


def test_lut_build_then_validate() -> None:
    common = ("--space", "shufflenet", "--input-shape", "1x16x16", "--target", "x86-cpu")
    build = profile(
        "lut", "build", *common, "--max-blocks", "8", "--samples", "1", "--patience", "1",
        "--calibration", "2", *FAST, "--json",
    )  # fmt: skip
    assert build.exit_code == 0, build.output
    built = json.loads(build.output)
    assert built["key"]["input_shape"] == [1, 16, 16] and Path(built["path"]).is_file()
    assert built["build"]["blocks_found"] == 8
    validate = profile("lut", "validate", *common, "--archs", "2", "--json")
    assert validate.exit_code == 0, validate.output
    report = json.loads(validate.output)
    assert report["n"] == 2 and {"mape_pct", "max_error_pct", "kendall_tau"} <= set(report)


def test_profile_module_imports_without_torch() -> None:
    code = "import sys, factory.cli.profile_cmd; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, cwd=REPO)


# ---- through a real agent -------------------------------------------------------------


@pytest.fixture(scope="module")
def agent_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`python -m profilers.agent_server` on 127.0.0.1, a free port, a token file."""
    with running_agent(tmp_path_factory.mktemp("agent"), TOKEN) as url:
        yield url


def remote_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, token: str) -> None:
    (tmp_path / "remote-box.yaml").write_text(
        "name: remote-box\ndescription: a board behind its agent\nruntime: onnxruntime\n"
        "execution_provider: CPUExecutionProvider\nthreads: 1\ninput_shape: [1, 1, 28, 28]\n"
        f"agent:\n  url: {url}\n  token_env: EMF_TEST_PROFILE_TOKEN\n"
    )
    monkeypatch.setenv("EMF_TARGETS_DIR", str(tmp_path))
    monkeypatch.setenv("EMF_TEST_PROFILE_TOKEN", token)


def test_onnx_profiled_through_the_agent(agent_url, onnx_file, tmp_path, monkeypatch) -> None:
    remote_target(tmp_path, monkeypatch, agent_url, TOKEN)
    data = profile_json(str(onnx_file), "--target", "remote-box")
    assert (data["target"], data["how"], data["threads"]) == ("remote-box", "measured", 1)
    assert data["macs"] == 28 * 28 * 4 * 9 and data["latency_ms"]["median"] > 0


def test_wrong_token_is_one_line_exit_2(agent_url, onnx_file, tmp_path, monkeypatch) -> None:
    remote_target(tmp_path, monkeypatch, agent_url, "wrong")
    result = profile(str(onnx_file), "--target", "remote-box")
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1 and "HTTP 401" in result.output


def test_agent_down_is_one_line_exit_2(onnx_file, tmp_path, monkeypatch) -> None:
    remote_target(tmp_path, monkeypatch, f"http://127.0.0.1:{free_port()}", TOKEN)
    result = profile(str(onnx_file), "--target", "remote-box")
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1 and "cannot connect" in result.output


def test_lut_on_an_agent_target(agent_url, tmp_path, monkeypatch) -> None:
    """Blocks are timed through the agent; a block missing later is an error, not a fill."""
    remote_target(tmp_path, monkeypatch, agent_url, TOKEN)
    common = ("--space", "shufflenet", "--input-shape", "1x16x16", "--target", "remote-box")
    build = profile(
        "lut", "build", *common, "--max-blocks", "4", "--samples", "0", "--calibration", "2",
        *FAST, "--json",
    )  # fmt: skip
    assert build.exit_code == 0, build.output
    key = json.loads(build.output)["key"]
    assert key["target"] == "remote-box" and key["runtime_version"]
    validate = profile("lut", "validate", *common, "--archs", "2")
    assert validate.exit_code == 2
    assert "lacks" in validate.output and "factory profile lut build" in validate.output
