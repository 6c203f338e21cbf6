"""The registry's `index.json` (schema v1): typed, strictly validated, with safe names.

Every name, version and file path in an index or a manifest later becomes part of a path in
the user cache, so each one is checked here against a narrow charset before anything else
sees it. Unknown keys are rejected: a newer index must bump `schema_version`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from exporters.manifest import check_name, sha256_file
from targets.errors import UnknownNameError, UserError

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
_FILE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # one path component, no '/'
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_INDEX_KEYS = {"schema_version", "models"}
_ENTRY_KEYS = {"name", "version", "manifest_sha256", "summary", "files"}
_SUMMARY_KEYS = {"test_accuracy", "params", "macs", "latency_ms", "targets"}


def blob_relpath(sha256: str) -> str:
    """Where a blob lives in a registry: `blobs/sha256/<hex>`."""
    return f"blobs/sha256/{check_sha256(sha256)}"


def hash_file(path: Path) -> tuple[str, int]:
    """(sha256 hex, size in bytes) of a file."""
    return sha256_file(path), path.stat().st_size


class ChecksumError(UserError):
    """A file's sha256 or size is not what the manifest or index says."""


def check_file_name(value: object) -> str:
    """`value` if it is a plain file name a bundle may hold (no directories, no '..')."""
    if not isinstance(value, str) or not _FILE_RE.fullmatch(value) or ".." in value:
        raise UserError(f"invalid file name {value!r} in a bundle: plain names only, no paths")
    return value


def check_sha256(value: object) -> str:
    """`value` if it is 64 lowercase hex digits."""
    if not isinstance(value, str) or not _SHA256_RE.fullmatch(value):
        raise UserError(f"invalid sha256 {value!r}: expected 64 lowercase hex digits")
    return value


def parse_ref(ref: str) -> tuple[str, str | None]:
    """`NAME[:VERSION]` -> (name, version or None), both checked."""
    name, sep, version = ref.partition(":")
    return check_name(name), (check_name(version, "version") if sep else None)


def version_key(version: str) -> tuple[Any, ...]:
    """Semantic order: numeric parts as numbers, and a pre-release (`1.0.0-rc1`) before its
    release (`1.0.0`)."""
    main, _, pre = version.partition("-")
    return (_parts(main), pre == "", _parts(pre))


def _parts(text: str) -> tuple[tuple[int, int | str], ...]:
    # runs of digits compare as numbers (rc2 < rc10); numbers sort before words, as in semver
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.findall(r"\d+|[a-z]+", text))


@dataclass(frozen=True)
class ModelSummary:
    """What `factory models` shows without downloading the manifest."""

    test_accuracy: float | None = None  # of model.onnx on the dataset's test split, 0..1
    params: int | None = None
    macs: int | None = None
    latency_ms: float | None = None  # median on x86-cpu, batch 1
    targets: tuple[str, ...] = ()  # targets with a measured latency

    @classmethod
    def from_json(cls, data: object) -> ModelSummary:
        obj = _object(data, "summary", _SUMMARY_KEYS, required=set())
        targets = obj.get("targets", [])
        if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
            raise UserError("index summary.targets must be a list of target names")
        return cls(
            test_accuracy=_number(obj.get("test_accuracy"), "summary.test_accuracy"),
            params=_integer(obj.get("params"), "summary.params"),
            macs=_integer(obj.get("macs"), "summary.macs"),
            latency_ms=_number(obj.get("latency_ms"), "summary.latency_ms"),
            targets=tuple(targets),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "test_accuracy": self.test_accuracy,
            "params": self.params,
            "macs": self.macs,
            "latency_ms": self.latency_ms,
            "targets": list(self.targets),
        }


@dataclass(frozen=True)
class IndexEntry:
    """One published model version: its manifest blob and the blob of every file."""

    name: str
    version: str
    manifest_sha256: str
    files: Mapping[str, str]  # file name in the bundle -> sha256 (manifest.json included)
    summary: ModelSummary = field(default_factory=ModelSummary)

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"

    @classmethod
    def from_json(cls, data: object) -> IndexEntry:
        obj = _object(data, "index entry", _ENTRY_KEYS, required=_ENTRY_KEYS - {"summary"})
        files = obj["files"]
        if not isinstance(files, dict) or not files:
            raise UserError("index entry files must be a non-empty object of name -> sha256")
        entry = cls(
            name=check_name(obj["name"]),
            version=check_name(obj["version"], "version"),
            manifest_sha256=check_sha256(obj["manifest_sha256"]),
            files={check_file_name(k): check_sha256(v) for k, v in files.items()},
            summary=ModelSummary.from_json(obj.get("summary", {})),
        )
        if entry.files.get(MANIFEST) != entry.manifest_sha256:
            raise UserError(f"index entry {entry.ref}: files[{MANIFEST!r}] != manifest_sha256")
        return entry

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "manifest_sha256": self.manifest_sha256,
            "summary": self.summary.to_json(),
            "files": dict(sorted(self.files.items())),
        }


@dataclass(frozen=True)
class Index:
    """All models of a registry; at most one entry per (name, version)."""

    models: tuple[IndexEntry, ...] = ()

    @classmethod
    def from_json(cls, data: object, where: str = "index.json") -> Index:
        obj = _object(data, where, _INDEX_KEYS, required=_INDEX_KEYS)
        if obj["schema_version"] != SCHEMA_VERSION:
            raise UserError(
                f"{where}: schema_version {obj['schema_version']!r} is not supported (this "
                f"factory reads {SCHEMA_VERSION}); upgrade edge-model-factory"
            )
        if not isinstance(obj["models"], list):
            raise UserError(f"{where}: models must be a list")
        try:
            index = cls(tuple(IndexEntry.from_json(e) for e in obj["models"]))
        except UserError as exc:
            raise UserError(f"{where}: {exc}") from exc
        refs = [e.ref for e in index.models]
        if len(set(refs)) != len(refs):
            raise UserError(f"{where}: the same name:version appears twice")
        return index

    @classmethod
    def loads(cls, text: bytes | str, where: str = "index.json") -> Index:
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise UserError(f"{where} is not valid JSON ({exc})") from exc
        return cls.from_json(data, where)

    def to_json(self) -> dict[str, Any]:
        ordered = sorted(self.models, key=lambda e: (e.name, version_key(e.version)))
        return {"schema_version": SCHEMA_VERSION, "models": [e.to_json() for e in ordered]}

    def dumps(self) -> bytes:
        return (json.dumps(self.to_json(), indent=2) + "\n").encode()

    def names(self) -> list[str]:
        return sorted({e.name for e in self.models})

    def versions(self, name: str) -> list[str]:
        """The versions of `name`, oldest first."""
        return sorted((e.version for e in self.models if e.name == name), key=version_key)

    def get(self, name: str, version: str | None = None) -> IndexEntry:
        """The entry for `name` at `version` (latest when None); unknown ones list what exists."""
        versions = self.versions(name)
        if not versions:
            listed = ", ".join(self.names()) or "none (the registry is empty)"
            raise UnknownNameError(f"unknown model {name!r}; available: {listed}")
        wanted = version or versions[-1]
        for entry in self.models:
            if entry.name == name and entry.version == wanted:
                return entry
        raise UnknownNameError(
            f"model {name!r} has no version {wanted!r}; available: {', '.join(versions)}"
        )

    def with_entry(self, entry: IndexEntry) -> Index:
        """A copy with `entry` added, replacing any entry with the same name and version."""
        kept = tuple(e for e in self.models if e.ref != entry.ref)
        return replace(self, models=(*kept, entry))


def _object(data: object, where: str, allowed: set[str], required: Iterable[str]) -> dict:
    if not isinstance(data, dict):
        raise UserError(f"{where} must be a JSON object")
    unknown = sorted(set(data) - allowed)
    missing = sorted(set(required) - set(data))
    if unknown:
        raise UserError(f"{where}: unknown key(s) {', '.join(unknown)}")
    if missing:
        raise UserError(f"{where}: missing key(s) {', '.join(missing)}")
    return data


def _number(value: object, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UserError(f"index {what} must be a number or null, not {value!r}")
    return float(value)


def _integer(value: object, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UserError(f"index {what} must be a non-negative integer or null, not {value!r}")
    return value


@dataclass(frozen=True)
class ManifestFile:
    """One file a bundle's manifest lists: what it must hash to and how big it must be."""

    path: str
    sha256: str
    size_bytes: int


@dataclass(frozen=True)
class ManifestView:
    """The parts of a bundle's manifest.json the registry relies on (the exporter owns the
    full schema); read as plain JSON so a registry does not depend on the exporter."""

    name: str
    version: str
    files: tuple[ManifestFile, ...]
    data: Mapping[str, Any]  # the whole manifest, for summaries

    @classmethod
    def loads(cls, text: bytes, where: str) -> ManifestView:
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise UserError(f"{where} is not valid JSON ({exc})") from exc
        if not isinstance(data, dict) or data.get("schema_version") != SCHEMA_VERSION:
            raise UserError(f"{where}: not a schema_version {SCHEMA_VERSION} manifest")
        if not isinstance(data.get("files"), list) or not data["files"]:
            raise UserError(f"{where}: files must be a non-empty list")
        files = tuple(_manifest_file(f, where) for f in data["files"])
        paths = [f.path for f in files]
        if len(set(paths)) != len(paths) or MANIFEST in paths:
            raise UserError(f"{where}: files lists a path twice or lists {MANIFEST} itself")
        name = check_name(data.get("name"))
        return cls(name, check_name(data.get("version"), "version"), files, data)


def _manifest_file(item: object, where: str) -> ManifestFile:
    if not isinstance(item, dict):
        raise UserError(f"{where}: each files[] item must be an object")
    size = item.get("bytes")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise UserError(f"{where}: files[].bytes must be a non-negative integer, not {size!r}")
    return ManifestFile(check_file_name(item.get("path")), check_sha256(item.get("sha256")), size)
