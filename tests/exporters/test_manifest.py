"""The bundle manifest: a hand-built bundle whose hashes, sizes, params and MACs are recomputed,
and every way of lying about it (unknown/missing keys, tampered, extra or missing files)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from exporters import manifest as mf
from exporters.onnx_export import OUTPUT_NAME, export_onnx
from profilers.flops import count_costs
from targets.errors import UserError

SHAPE = (1, 1, 28, 28)
# conv 1->4, 3x3, 'same' on 28x28: 28*28 * 4*1*3*3 MACs; linear 4->3: 4*3 MACs
EXPECTED_MACS = 28 * 28 * 4 * 9 + 4 * 3
EXPECTED_PARAMS = 4 * 9 + 2 * 4 + 4 * 3 + 3  # conv weight, BN affine, linear weight + bias


def tiny_net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, bias=False),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    )
    with torch.no_grad():  # distinct BN affine values, so nothing deduplicates in the ONNX
        net[1].weight.uniform_(0.5, 1.5)
        net[1].bias.uniform_(-0.5, 0.5)
    return net.eval()


def write_bundle(directory: Path) -> mf.Manifest:
    """model.onnx, README.md and a manifest built from the torch model's own counts."""
    directory.mkdir(parents=True)
    net = tiny_net()
    export_onnx(net, SHAPE, directory / "model.onnx", dynamic_batch=True)
    (directory / "README.md").write_text("# tiny\n")
    costs = count_costs(net, SHAPE)
    files = tuple(
        mf.file_entry(directory, name, kind)
        for name, kind in (("model.onnx", "onnx"), ("README.md", "card"))
    )
    manifest = mf.Manifest(
        schema_version=1,
        name="tiny-net",
        version="1.0.0",
        created=mf.utc_now(),
        task=mf.TASK,
        architecture=mf.Architecture("test", "tiny", "0123456789ab"),
        dataset="fashion-mnist",
        input=mf.InputTensor("input", ("batch", 1, 28, 28), "float32", "NCHW"),
        output=mf.OutputTensor(OUTPUT_NAME, ("batch", 3), "float32"),
        preprocessing=mf.Preprocessing(1 / 255, (0.286,), (0.353,)),
        classes=("a", "b", "c"),
        macs=costs.macs,
        params=costs.params,
        files=files,
        metrics={"model.onnx": mf.ArtifactMetrics(0.5, 100)},
        latency=(
            mf.LatencyEntry(
                "model.onnx",
                "x86-cpu",
                1,
                0.1,
                0.09,
                0.12,
                0.1,
                50,
                "onnxruntime 1.x CPUExecutionProvider",
                1,
                "locally",
                "cpu",
                mf.utc_now(),
            ),
        ),
        source=mf.Source("runs/r", 10.0, False),
        tools=mf.Tools("0.1.0", torch.__version__, None, None, None, None),
    )
    mf.write_manifest(directory, manifest)
    return manifest


@pytest.fixture()
def bundle(tmp_path: Path) -> Path:
    write_bundle(tmp_path / "tiny-net")
    return tmp_path / "tiny-net"


def edit_manifest(bundle: Path, change) -> None:
    path = bundle / mf.MANIFEST
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def rejected(bundle: Path, match: str) -> str:
    with pytest.raises(UserError, match=match) as err:
        mf.validate_manifest(bundle)
    assert "\n" not in str(err.value)
    return str(err.value)


def test_recomputes_hashes_sizes_params_and_macs(bundle: Path) -> None:
    manifest = mf.validate_manifest(bundle)
    assert manifest.macs == EXPECTED_MACS and manifest.params == EXPECTED_PARAMS
    for entry in manifest.files:
        data = (bundle / entry.path).read_bytes()
        assert entry.sha256 == hashlib.sha256(data).hexdigest()
        assert entry.bytes == len(data)
    assert mf.read_manifest(bundle) == manifest  # JSON round trip loses nothing


def test_json_keys_are_the_schema(bundle: Path) -> None:
    data = json.loads((bundle / mf.MANIFEST).read_text())
    assert set(data) == {
        *("schema_version", "name", "version", "created", "task", "architecture", "dataset"),
        *("input", "output", "preprocessing", "classes", "macs", "params", "files"),
        *("metrics", "latency", "source", "tools"),
    }
    assert data["input"]["shape"] == ["batch", 1, 28, 28]
    assert set(data["files"][0]) == {"path", "kind", "sha256", "bytes"}


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda d: d.update(extra=1), "unknown key 'extra'"),
        (lambda d: d["files"][0].update(url="x"), r"unknown key 'files\[0\].url'"),
        (
            lambda d: d["metrics"]["model.onnx"].update(f1=0.3),
            "unknown key 'metrics.model.onnx.f1'",
        ),
        (lambda d: d.pop("latency"), "missing key 'latency'"),
        (lambda d: d["input"].pop("layout"), "missing key 'input.layout'"),
        (lambda d: d["tools"].pop("tensorrt"), "missing key 'tools.tensorrt'"),
        (lambda d: d.update(macs="28236"), "macs: '28236' is not int"),
        (lambda d: d.update(params=True), "params: True is not int"),
        (lambda d: d.update(schema_version=2), "schema_version 2 is not supported"),
        (lambda d: d.update(name="../evil"), "invalid model name"),
        (lambda d: d.update(version="1.0.0/x"), "invalid version"),
        (lambda d: d["files"][1].update(path="../README.md"), "not a plain file name"),
        (lambda d: d["files"][1].update(kind="weights"), "kind 'weights' is not one of"),
        (lambda d: d.update(classes=["a", "b"]), "2 class names for an output"),
        (lambda d: d["latency"][0].update(artifact="model.int8.onnx"), "not a listed file"),
    ],
)
def test_bad_manifests_are_rejected(bundle: Path, change, match: str) -> None:
    edit_manifest(bundle, change)
    message = rejected(bundle, match)
    assert str(bundle / mf.MANIFEST) in message


def test_tampered_file_is_rejected(bundle: Path) -> None:
    path = bundle / "model.onnx"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # same size, different content
    path.write_bytes(bytes(data))
    assert str(path) in rejected(bundle, "sha256 does not match")


def test_resized_file_is_rejected(bundle: Path) -> None:
    with open(bundle / "README.md", "a") as fh:
        fh.write("more\n")
    rejected(bundle, "README.md: 12 bytes, manifest.json says 7")


def test_unlisted_and_missing_files_are_rejected(bundle: Path) -> None:
    (bundle / "extra.bin").write_bytes(b"x")
    rejected(bundle, "extra.bin: not listed")
    (bundle / "extra.bin").unlink()
    (bundle / "README.md").unlink()
    rejected(bundle, "README.md: listed in manifest.json but missing")


def test_macs_and_params_are_checked_against_the_onnx(bundle: Path) -> None:
    edit_manifest(bundle, lambda d: d.update(macs=EXPECTED_MACS + 1))
    assert str(bundle / "model.onnx") in rejected(bundle, f"{EXPECTED_MACS} MACs counted")
    edit_manifest(bundle, lambda d: d.update(macs=EXPECTED_MACS, params=10))
    rejected(bundle, "holds .* weights, manifest.json says 10")


def test_input_and_output_names_must_match_the_onnx(bundle: Path) -> None:
    edit_manifest(bundle, lambda d: d["output"].update(name="logits"))
    rejected(bundle, "inputs/outputs differ")


def test_not_a_bundle(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no manifest"):
        mf.validate_manifest(tmp_path)
    (tmp_path / mf.MANIFEST).write_text("{not json")
    with pytest.raises(UserError, match="cannot read it as JSON"):
        mf.validate_manifest(tmp_path)


def test_sha256_file_matches_hashlib_across_chunks(tmp_path: Path) -> None:
    data = bytes(range(256)) * 9000  # > 2 chunks of 1 MiB
    (tmp_path / "f").write_bytes(data)
    assert mf.sha256_file(tmp_path / "f") == hashlib.sha256(data).hexdigest()


def test_manifest_dataclass_round_trip() -> None:
    m = mf.Manifest.from_dict(json.loads(_minimal().to_json()))
    assert m == _minimal() and isinstance(m.latency, tuple) and m.input.shape[0] == "batch"


def test_check_name() -> None:
    assert mf.check_name("fmnist-shufflenet_g3") == "fmnist-shufflenet_g3"
    for bad in ("", "A", "-x", "a/b", "a..b", "x" * 65):
        with pytest.raises(UserError):
            mf.check_name(bad)


def _minimal() -> mf.Manifest:
    return mf.Manifest(
        1,
        "m",
        "1",
        "2026-01-01T00:00:00Z",
        mf.TASK,
        mf.Architecture("s", "0-1", "ab"),
        "d",
        mf.InputTensor("input", ("batch", 3, 8, 8), "float32", "NCHW"),
        mf.OutputTensor("logits", ("batch", 2), "float32"),
        mf.Preprocessing(1 / 255, (0.5, 0.5, 0.5), (0.2, 0.2, 0.2)),
        ("x", "y"),
        1,
        1,
        (mf.FileEntry("model.onnx", "onnx", "0" * 64, 1),),
        {},
        (),
        mf.Source(None, None, True),
        mf.Tools("0", None, None, None, None, None),
    )


def test_replace_keeps_types() -> None:
    m = replace(_minimal(), files=())
    with pytest.raises(UserError, match="no file of kind 'onnx'"):
        mf.check_manifest_fields(m)
