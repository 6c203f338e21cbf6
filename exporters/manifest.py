"""The bundle manifest (`manifest.json`, schema version 1): typed, strict, and recomputable.

A bundle is one directory: model.onnx, optionally model.int8.onnx and model.engine, a model
card README.md, and manifest.json, which lists every other file with its sha256 and size.
`validate_manifest` trusts nothing in it: it rejects unknown or missing keys, recomputes the
hash and size of every file, refuses files the manifest does not list, and recounts the MACs
(and bounds the parameters) from model.onnx. Standard library plus onnx only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import types
import typing
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Union

from exporters.registry import file_kinds
from targets.errors import UserError

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
TASK = "image-classification"
NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")  # bundle names and versions
FILE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # plain file names, no '/'
_HASH_RE = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Architecture:
    space: str  # search space, or e.g. "torchvision" for a recipe
    genotype: str  # the space's text form, or the recipe's architecture name
    arch_id: str


@dataclass(frozen=True)
class InputTensor:
    name: str
    shape: tuple[int | str, ...]  # ("batch", C, H, W): the batch is dynamic
    dtype: str
    layout: str


@dataclass(frozen=True)
class OutputTensor:
    name: str
    shape: tuple[int | str, ...]  # ("batch", classes)
    dtype: str


@dataclass(frozen=True)
class Preprocessing:
    """x = (pixel * scale - mean) / std, per channel, pixels in 0..255."""

    scale: float
    mean: tuple[float, ...]
    std: tuple[float, ...]


@dataclass(frozen=True)
class FileEntry:
    path: str  # a plain file name inside the bundle
    kind: str  # one of `registry.file_kinds()`: a format's kind, or "card"
    sha256: str
    bytes: int


@dataclass(frozen=True)
class ArtifactMetrics:
    test_accuracy: float  # fraction in [0, 1], measured with onnxruntime
    test_images: int


@dataclass(frozen=True)
class LatencyEntry:
    artifact: str  # a file of the bundle
    target: str
    batch: int
    median_ms: float
    min_ms: float
    p90_ms: float
    mean_ms: float
    iterations: int
    runtime: str  # e.g. "onnxruntime 1.23.2 CPUExecutionProvider"
    threads: int | None
    measured: str  # "locally" or "agent <url>"
    device: str  # CPU or GPU name
    date: str


@dataclass(frozen=True)
class Source:
    run: str | None  # the search run it came from; None for a recipe
    trained_epochs: float | None  # None: weights inherited from the supernet or a recipe
    from_supernet: bool


@dataclass(frozen=True)
class Tools:
    factory: str
    torch: str | None
    onnx: str | None
    onnxruntime: str | None
    onnxslim: str | None
    tensorrt: str | None  # the TensorRT that built model.engine; None without one


@dataclass(frozen=True)
class Manifest:
    schema_version: int
    name: str
    version: str
    created: str
    task: str
    architecture: Architecture
    dataset: str
    input: InputTensor
    output: OutputTensor
    preprocessing: Preprocessing
    classes: tuple[str, ...]
    macs: int  # one multiply-add = 1, BatchNorm excluded, batch 1
    params: int  # parameters of the torch model (BatchNorm included)
    files: tuple[FileEntry, ...]
    metrics: dict[str, ArtifactMetrics]  # artifact file -> its test-split accuracy
    latency: tuple[LatencyEntry, ...]
    source: Source
    tools: Tools

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self, dict_factory=_json_dict)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: Any, where: str = MANIFEST) -> Manifest:
        """Strict: every key of the schema must be there, and no other key."""
        try:
            manifest = _parse(cls, data, "")
        except _SchemaError as exc:
            raise UserError(f"{where}: {exc}") from None
        check_manifest_fields(manifest, where)
        return manifest

    def file(self, kind: str) -> FileEntry | None:
        return next((f for f in self.files if f.kind == kind), None)


def utc_now() -> str:
    """'2026-11-22T13:00:00Z'."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_entry(bundle_dir: Path, name: str, kind: str) -> FileEntry:
    path = Path(bundle_dir) / name
    return FileEntry(name, kind, sha256_file(path), path.stat().st_size)


def check_name(value: object, what: str = "model name") -> str:
    """`value` if it is a safe bundle name or version ([a-z0-9][a-z0-9._-]{0,63}, no '..'),
    so that it can never be read as a path (the registry checks names with this too)."""
    if not isinstance(value, str) or not NAME_RE.fullmatch(value) or ".." in value:
        raise UserError(
            f"invalid {what} {value!r}: use 1-64 of a-z 0-9 . _ - (starting with a letter or "
            f"digit, no '..')"
        )
    return value


def check_manifest_fields(m: Manifest, where: str = MANIFEST) -> None:
    """Checks that need no files: versions, names, kinds, cross-references."""

    def bad(why: str) -> UserError:
        return UserError(f"{where}: {why}")

    if m.schema_version != SCHEMA_VERSION:
        raise bad(f"schema_version {m.schema_version} is not supported (this reads 1)")
    for what, text in (("model name", m.name), ("version", m.version)):
        try:
            check_name(text, what)
        except UserError as exc:
            raise bad(str(exc)) from None
    if m.task != TASK:
        raise bad(f"task {m.task!r} is not {TASK!r}")
    paths = [f.path for f in m.files]
    if len(set(paths)) != len(paths):
        raise bad("a file is listed twice")
    kinds = file_kinds()
    for f in m.files:
        if not FILE_RE.fullmatch(f.path) or ".." in f.path or f.path == MANIFEST:
            raise bad(f"file path {f.path!r} is not a plain file name of the bundle")
        if f.kind not in kinds:
            raise bad(f"file {f.path}: kind {f.kind!r} is not one of {', '.join(kinds)}")
        if not _HASH_RE.fullmatch(f.sha256) or f.bytes < 0:
            raise bad(f"file {f.path}: sha256 must be 64 lowercase hex digits, bytes >= 0")
    if m.file("onnx") is None:
        raise bad("no file of kind 'onnx' (model.onnx) is listed")
    for artifact in [*m.metrics, *(e.artifact for e in m.latency)]:
        if artifact not in paths:
            raise bad(f"metrics or latency name {artifact!r}, which is not a listed file")
    if len(m.input.shape) != 4 or len(m.preprocessing.mean) != m.input.shape[1]:
        raise bad("input shape must be (batch, C, H, W) with one mean and std per channel")
    if len(m.preprocessing.std) != len(m.preprocessing.mean) or min(m.preprocessing.std) <= 0:
        raise bad("preprocessing std must be positive, one per channel")
    if m.output.shape[-1] != len(m.classes):
        raise bad(f"{len(m.classes)} class names for an output of shape {list(m.output.shape)}")


def write_manifest(bundle_dir: Path, manifest: Manifest) -> Path:
    """manifest.json, written last: its presence marks a complete bundle."""
    path = Path(bundle_dir) / MANIFEST
    path.write_text(manifest.to_json())
    return path


def read_manifest(bundle_dir: Path) -> Manifest:
    """The parsed, field-checked manifest of a bundle, without touching the other files."""
    path = Path(bundle_dir) / MANIFEST
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: no manifest (not a model bundle)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: cannot read it as JSON ({exc})") from None
    return Manifest.from_dict(data, str(path))


def validate_manifest(bundle_dir: Path) -> Manifest:
    """The bundle's manifest, after recomputing everything it claims that can be recomputed:
    sha256 and size of every file, no file it does not list, input/output of model.onnx,
    its MACs, and that the parameter count is not below the weights model.onnx holds."""
    bundle_dir = Path(bundle_dir)
    manifest = read_manifest(bundle_dir)
    _check_files(bundle_dir, manifest)
    _check_onnx(bundle_dir, manifest)
    return manifest


def _check_files(bundle_dir: Path, m: Manifest) -> None:
    listed = {f.path for f in m.files}
    for child in sorted(bundle_dir.iterdir()):
        if child.name != MANIFEST and (child.name not in listed or not child.is_file()):
            raise UserError(f"{child}: not listed in the bundle's manifest.json")
    for f in m.files:
        path = bundle_dir / f.path
        if not path.is_file():
            raise UserError(f"{path}: listed in manifest.json but missing")
        size = path.stat().st_size
        if size != f.bytes:
            raise UserError(f"{path}: {size} bytes, manifest.json says {f.bytes}")
        if sha256_file(path) != f.sha256:
            raise UserError(f"{path}: sha256 does not match manifest.json (modified or corrupt)")


def _check_onnx(bundle_dir: Path, m: Manifest) -> None:
    import onnx

    from profilers.onnx_costs import onnx_macs

    entry = m.file("onnx")
    assert entry is not None  # checked by check_manifest_fields
    path = bundle_dir / entry.path
    try:
        proto = onnx.load_model(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise UserError(f"{path}: not a readable ONNX model ({exc})") from None
    weights = {t.name for t in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in weights]
    outputs = list(proto.graph.output)
    if [i.name for i in inputs] != [m.input.name] or [o.name for o in outputs] != [m.output.name]:
        raise UserError(f"{path}: inputs/outputs differ from manifest.json's input and output")
    weight_elems = sum(
        _numel(t.dims) for t in proto.graph.initializer if t.data_type == onnx.TensorProto.FLOAT
    )
    if m.params < weight_elems:
        raise UserError(f"{path}: holds {weight_elems} weights, manifest.json says {m.params}")
    macs, note = onnx_macs(proto, (1, *(int(d) for d in m.input.shape[1:])))
    if macs is not None and note is None and macs != m.macs:
        raise UserError(f"{path}: {macs} MACs counted from the graph, manifest.json says {m.macs}")


def _numel(dims: Any) -> int:
    n = 1
    for d in dims:
        n *= int(d)
    return n


# ---- strict JSON <-> dataclasses ------------------------------------------------------------


def _json_dict(items: list[tuple[str, Any]]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in items}


class _SchemaError(Exception):
    """A schema mismatch at a key path; `Manifest.from_dict` adds the file name."""


def _at(key: str, sub: str) -> str:
    return f"{key}.{sub}" if key else sub


def _parse(tp: Any, value: Any, key: str) -> Any:
    """`value` (parsed JSON) as type `tp`; `key` is its path, e.g. 'files[0].sha256'."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _parse_dataclass(tp, value, key)
    if origin in (Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return _parse(option, value, key)
            except _SchemaError:
                continue
        raise _SchemaError(f"{key}: {value!r} is not {_type_name(tp)}")
    if origin is tuple:
        item = typing.get_args(tp)[0]
        _expect(value, list, key)
        return tuple(_parse(item, v, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        item = typing.get_args(tp)[1]
        _expect(value, dict, key)
        return {str(k): _parse(item, v, _at(key, str(k))) for k, v in value.items()}
    return _parse_scalar(tp, value, key)


def _expect(value: Any, kind: type, key: str) -> None:
    if not isinstance(value, kind):
        what = "a list" if kind is list else "an object"
        raise _SchemaError(f"{key or 'top level'}: expected {what}, got {type(value).__name__}")


def _parse_dataclass(tp: Any, value: Any, key: str) -> Any:
    _expect(value, dict, key)
    hints = typing.get_type_hints(tp)
    names = [f.name for f in dataclasses.fields(tp)]
    unknown = sorted(set(value) - set(names))
    missing = [n for n in names if n not in value]
    if unknown:
        raise _SchemaError(f"unknown key {_at(key, unknown[0])!r}")
    if missing:
        raise _SchemaError(f"missing key {_at(key, missing[0])!r}")
    return tp(**{n: _parse(hints[n], value[n], _at(key, n)) for n in names})


def _parse_scalar(tp: Any, value: Any, key: str) -> Any:
    if tp is type(None):
        ok = value is None
    elif tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif tp is str:
        ok = isinstance(value, str)
    else:
        raise TypeError(f"manifest field type {tp!r} is not handled")
    if not ok:
        raise _SchemaError(f"{key}: {value!r} is not {_type_name(tp)}")
    return value


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")
