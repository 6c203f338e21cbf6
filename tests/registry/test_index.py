"""index.json schema v1: safe names, semantic version order, strict keys, the shipped index."""

from __future__ import annotations

import hashlib
import json
import re

import pytest

from factory.registry.index import (
    Index,
    IndexEntry,
    ManifestView,
    ModelSummary,
    check_file_name,
    check_name,
    parse_ref,
    version_key,
)
from factory.registry.sources import SHIPPED_REGISTRY
from targets.errors import UnknownNameError, UserError

SHA = {c: c * 64 for c in "abcdef"}


def entry_json(name: str = "tiny", version: str = "1.0.0", **changes: object) -> dict:
    data = {
        "name": name,
        "version": version,
        "manifest_sha256": SHA["a"],
        "summary": {
            "test_accuracy": 0.9,
            "params": 10,
            "macs": 20,
            "latency_ms": 0.1,
            "targets": ["x86-cpu"],
        },
        "files": {"manifest.json": SHA["a"], "model.onnx": SHA["b"]},
    }
    data.update(changes)
    return data


def index_json(*entries: dict) -> dict:
    return {"schema_version": 1, "models": list(entries)}


@pytest.mark.parametrize("name", ["tiny", "fmnist-shufflenet-3a0e80fd5f05", "a", "v1.0_b-2"])
def test_safe_names_pass(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "..",
        "../evil",
        "a/b",
        "/abs",
        "a\\b",
        "Tiny",
        ".hidden",
        "-x",
        "a..b",
        "a b",
        "x" * 65,
        "torchvision/mobilenet_v2",
        "c:",
        None,
        3,
    ],
)
def test_unsafe_names_refused(name: object) -> None:
    with pytest.raises(UserError, match="invalid model name"):
        check_name(name)


@pytest.mark.parametrize("path", ["../x", "/etc/passwd", "a/b", "a\\b", "..", ".x", ""])
def test_unsafe_file_names_refused(path: str) -> None:
    with pytest.raises(UserError, match="plain names only"):
        check_file_name(path)


def test_parse_ref() -> None:
    assert parse_ref("tiny") == ("tiny", None)
    assert parse_ref("tiny:1.2.0") == ("tiny", "1.2.0")
    with pytest.raises(UserError, match="invalid version"):
        parse_ref("tiny:../../x")


def test_semantic_version_order() -> None:
    versions = ["1.10.0", "1.2.0", "1.0.0-rc1", "1.0.0", "0.9", "1.0.0-rc10", "1.0.0-rc2", "2"]
    ordered = sorted(versions, key=version_key)
    assert ordered == [
        "0.9",
        "1.0.0-rc1",
        "1.0.0-rc2",
        "1.0.0-rc10",
        "1.0.0",
        "1.2.0",
        "1.10.0",
        "2",
    ]


def test_round_trip_and_latest() -> None:
    index = Index.from_json(index_json(entry_json(version="1.2.0"), entry_json(version="1.10.0")))
    again = Index.loads(index.dumps())
    assert again == index
    assert index.get("tiny").version == "1.10.0"
    assert index.get("tiny", "1.2.0").summary == ModelSummary(0.9, 10, 20, 0.1, ("x86-cpu",))


def test_unknown_model_lists_names_and_versions() -> None:
    index = Index.from_json(index_json(entry_json("alpha"), entry_json("beta")))
    with pytest.raises(UnknownNameError, match="unknown model 'gamma'; available: alpha, beta"):
        index.get("gamma")
    with pytest.raises(UnknownNameError, match=re.escape("no version '9.9'; available: 1.0.0")):
        index.get("alpha", "9.9")
    with pytest.raises(UnknownNameError, match="registry is empty"):
        Index().get("alpha")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"schema_version": 2, "models": []}, "schema_version 2 is not supported"),
        ({"schema_version": 1, "models": [], "extra": 1}, "unknown key"),
        ({"models": []}, "missing key"),
        (index_json(entry_json(colour="red")), "unknown key"),
        (index_json({k: v for k, v in entry_json().items() if k != "files"}), "missing key"),
        (index_json(entry_json(name="../evil")), "invalid model name"),
        (index_json(entry_json(manifest_sha256="ABC")), "invalid sha256"),
        (
            index_json(entry_json(files={"manifest.json": SHA["a"], "../x": SHA["b"]})),
            "plain names only",
        ),
        (index_json(entry_json(files={"model.onnx": SHA["b"]})), "!= manifest_sha256"),
        (index_json(entry_json(summary={"params": -1})), "non-negative integer"),
        (index_json(entry_json(summary={"flops": 3})), "unknown key"),
        (index_json(entry_json(), entry_json()), "appears twice"),
    ],
)
def test_bad_index_refused(data: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        Index.from_json(data)


def test_not_json_refused() -> None:
    with pytest.raises(UserError, match="not valid JSON"):
        Index.loads(b"{nope")


def test_with_entry_replaces_same_version() -> None:
    index = Index.from_json(index_json(entry_json()))
    newer = IndexEntry("tiny", "1.0.0", SHA["c"], {"manifest.json": SHA["c"], "m.onnx": SHA["d"]})
    assert index.with_entry(newer).models == (newer,)


def test_shipped_index_is_valid() -> None:
    index = Index.loads((SHIPPED_REGISTRY / "index.json").read_bytes())
    for entry in index.models:  # every blob the shipped index names is shipped, intact
        for sha in entry.files.values():
            blob = SHIPPED_REGISTRY / "blobs" / "sha256" / sha
            assert hashlib.sha256(blob.read_bytes()).hexdigest() == sha


def manifest_bytes(files: list) -> bytes:
    return json.dumps(
        {"schema_version": 1, "name": "tiny", "version": "1", "files": files}
    ).encode()


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ([{"path": "../model.onnx", "sha256": SHA["b"], "bytes": 1}], "plain names only"),
        ([{"path": "sub/model.onnx", "sha256": SHA["b"], "bytes": 1}], "plain names only"),
        ([{"path": "/tmp/x", "sha256": SHA["b"], "bytes": 1}], "plain names only"),
        ([{"path": "a\\b", "sha256": SHA["b"], "bytes": 1}], "plain names only"),
        ([{"path": "manifest.json", "sha256": SHA["b"], "bytes": 1}], "manifest.json itself"),
        ([{"path": "m.onnx", "sha256": SHA["b"], "bytes": -1}], "non-negative"),
        ([{"path": "m.onnx", "sha256": "0", "bytes": 1}], "invalid sha256"),
        ([], "non-empty list"),
    ],
)
def test_manifest_view_refuses_bad_files(files: list, message: str) -> None:
    with pytest.raises(UserError, match=message):
        ManifestView.loads(manifest_bytes(files), "manifest.json")
