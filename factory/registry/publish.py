"""`factory push`: publish a verified bundle into a directory registry.

The bundle is checked first (every file its manifest lists, re-hashed; nothing unlisted),
then each file is copied to `blobs/sha256/<hex>` (one atomic rename per blob, so a reader
never sees half a blob), and only then is `index.json` rewritten (temp file + rename), under
an exclusive lock so two concurrent pushes cannot lose each other's entry.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from factory.registry.index import (
    MANIFEST,
    ChecksumError,
    Index,
    IndexEntry,
    ManifestView,
    ModelSummary,
    blob_relpath,
    hash_file,
)
from factory.registry.sources import write_verified
from targets.atomic import check_writable_dir, write_atomic
from targets.errors import UserError

INDEX = "index.json"
LOCK = ".index.lock"  # Windows only
SUMMARY_TARGET = "x86-cpu"  # the target whose latency `factory models` shows
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Bundle:
    """A bundle directory whose files all match its manifest."""

    path: Path
    manifest: ManifestView
    manifest_bytes: bytes

    @property
    def manifest_sha256(self) -> str:
        return hashlib.sha256(self.manifest_bytes).hexdigest()

    def entry(self) -> IndexEntry:
        """The index entry that publishes this bundle."""
        files = {f.path: f.sha256 for f in self.manifest.files}
        files[MANIFEST] = self.manifest_sha256
        view = self.manifest
        return IndexEntry(view.name, view.version, self.manifest_sha256, files, summarize(view))


@dataclass(frozen=True)
class PushResult:
    entry: IndexEntry
    registry: Path
    status: str  # "added" | "replaced" | "unchanged"
    size_bytes: int  # of the bundle, manifest included


def read_bundle(bundle_dir: Path | str) -> Bundle:
    """Read and verify a bundle: every listed file present, a regular file, with the listed
    sha256 and size; no file that the manifest does not list."""
    root = Path(bundle_dir).expanduser()
    if not root.is_dir():
        raise UserError(f"bundle {root} is not a directory (export one with `factory export`)")
    manifest_path = root / MANIFEST
    if manifest_path.is_symlink() or not manifest_path.is_file():
        raise UserError(f"bundle {root} has no {MANIFEST} (export it with `factory export`)")
    raw = manifest_path.read_bytes()
    view = ManifestView.loads(raw, str(manifest_path))
    for f in view.files:
        path = root / f.path
        if path.is_symlink() or not path.is_file():
            raise UserError(f"bundle {root}: {f.path} is listed in {MANIFEST} but is not a file")
        sha, size = hash_file(path)
        if (sha, size) != (f.sha256, f.size_bytes):
            raise ChecksumError(
                f"bundle {root}: {f.path} does not match {MANIFEST} (sha256 {sha[:16]}..., "
                f"{size} bytes; expected {f.sha256[:16]}..., {f.size_bytes} bytes)"
            )
    listed = {MANIFEST, *(f.path for f in view.files)}
    extra = sorted(p.name for p in root.iterdir() if p.name not in listed)
    if extra:
        raise UserError(f"bundle {root}: {', '.join(extra)} not listed in {MANIFEST}")
    return Bundle(root, view, raw)


def summarize(view: ManifestView) -> ModelSummary:
    """The index summary: model.onnx's test accuracy, params, MACs, x86-cpu median latency
    and the targets measured. Missing or odd values become null, never a guess."""
    data = view.data
    metrics = data.get("metrics") if isinstance(data.get("metrics"), dict) else {}
    onnx_metrics = metrics.get("model.onnx") if isinstance(metrics.get("model.onnx"), dict) else {}
    latency = [m for m in data.get("latency") or [] if isinstance(m, dict)]
    cpu_ms = next(
        (
            m.get("median_ms")
            for m in latency
            if m.get("artifact") == "model.onnx" and m.get("target") == SUMMARY_TARGET
        ),
        None,
    )
    return ModelSummary(
        test_accuracy=_float(onnx_metrics.get("test_accuracy")),
        params=_int(data.get("params")),
        macs=_int(data.get("macs")),
        latency_ms=_float(cpu_ms),
        targets=tuple(sorted({m["target"] for m in latency if isinstance(m.get("target"), str)})),
    )


def push(bundle_dir: Path | str, registry_dir: Path | str, force: bool = False) -> PushResult:
    """Publish the bundle into the directory registry (created if missing). The same name and
    version with other content is refused unless `force`; the same content is a no-op."""
    bundle = read_bundle(bundle_dir)
    root = _registry_root(registry_dir)
    entry = bundle.entry()
    with registry_lock(root):
        index = read_index_file(root)
        old = next((e for e in index.models if e.ref == entry.ref), None)
        if old is not None and old.manifest_sha256 != entry.manifest_sha256 and not force:
            raise UserError(
                f"{entry.ref} is already in {root} with different content; bump the version "
                f"or pass --force to replace it"
            )
        store_blob(root, entry.manifest_sha256, _chunks_of_bytes(bundle.manifest_bytes), MANIFEST)
        for f in bundle.manifest.files:
            store_blob(root, f.sha256, _chunks_of_file(bundle.path / f.path), f.path, f.size_bytes)
        if old is None or old != entry:
            write_atomic(root / INDEX, index.with_entry(entry).dumps())
    status = "added" if old is None else ("unchanged" if old == entry else "replaced")
    size_bytes = len(bundle.manifest_bytes) + sum(f.size_bytes for f in bundle.manifest.files)
    return PushResult(entry, root, status, size_bytes)


def store_blob(
    root: Path, sha256: str, chunks: Iterator[bytes], label: str, size_bytes: int | None = None
) -> Path:
    """Write one content-addressed blob unless an intact copy is already there."""
    dest = root / blob_relpath(sha256)
    if dest.is_file() and hash_file(dest)[0] == sha256:
        return dest
    return write_verified(chunks, dest, sha256, size_bytes, f"{label} (changed while pushed?)")


def read_index_file(root: Path) -> Index:
    """The registry's index, or an empty one for a new registry."""
    path = root / INDEX
    if not path.exists():
        return Index()
    return Index.loads(path.read_bytes(), str(path))


@contextlib.contextmanager
def registry_lock(root: Path) -> Iterator[None]:
    """An exclusive lock on the registry for one read-modify-write of its index: an OS lock
    on the directory itself (no lock file to ship or serve), released by the kernel if the
    process dies, so it never goes stale. Windows, which cannot lock a directory, locks a
    `.index.lock` file instead."""
    try:
        import fcntl
    except ImportError:
        with _windows_lock(root / LOCK):
            yield
        return
    fd = os.open(root, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


@contextlib.contextmanager
def _windows_lock(path: Path) -> Iterator[None]:
    import msvcrt

    with open(path, "a+b") as fh:
        fh.seek(0)
        msvcrt.locking(fh.fileno(), msvcrt.LK_LOCK, 1)  # type: ignore[attr-defined]
        try:
            yield
        finally:
            fh.seek(0)
            msvcrt.locking(fh.fileno(), msvcrt.LK_UNLCK, 1)  # type: ignore[attr-defined]


def _registry_root(registry_dir: Path | str) -> Path:
    text = str(registry_dir)
    if text.startswith(("http://", "https://")):
        raise UserError(
            "push writes to a registry directory; push to a local copy and upload that "
            "directory to the web server"
        )
    root = Path(text).expanduser()
    if root.exists() and not root.is_dir():
        raise UserError(f"registry {root} is not a directory")
    check_writable_dir(root, "--registry")
    root.mkdir(parents=True, exist_ok=True)
    return root


def _chunks_of_file(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            yield chunk


def _chunks_of_bytes(data: bytes) -> Iterator[bytes]:
    yield data


def _float(value: Any) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    return float(value) if ok else None


def _int(value: Any) -> int | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
    return value if ok else None
