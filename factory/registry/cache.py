"""The user's model cache: where pulled and exported bundles live (`<cache>/models/<name>/
<version>`), how a cached bundle is re-verified, and how a verified staging directory is moved
into place. Names and versions become path parts only after `index.check_name`, and no
symbolic link is followed inside the cache.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from factory.registry.index import MANIFEST, IndexEntry, ManifestView, check_name, hash_file
from targets.atomic import fsync_dir
from targets.errors import UserError
from targets.target import cache_dir


def models_dir() -> Path:
    """`<user cache>/models`: pulled bundles live in `<name>/<version>` below it."""
    return cache_dir() / "models"


def bundle_cache_path(name: str, version: str) -> Path:
    """The cache directory of `name:version`, refusing anything that could lead outside the
    cache: unsafe names, and symbolic links on the way."""
    root = cache_dir().expanduser()
    path = models_dir() / check_name(name) / check_name(version, "version")
    here = root
    for part in path.relative_to(root).parts:
        here = here / part
        if here.is_symlink():
            raise UserError(f"refusing to use {here}: a symbolic link inside the model cache")
    resolved_root = root.resolve()
    if not path.resolve().is_relative_to(resolved_root):
        raise UserError(f"refusing {name}:{version}: it resolves outside the cache {root}")
    return path


@dataclass(frozen=True)
class CachedBundle:
    """A verified bundle in the user cache."""

    entry: IndexEntry
    path: Path
    manifest: ManifestView
    downloaded: bool  # False: it was already in the cache and re-verified
    exported: bool = False  # a recipe exported by this call (never downloaded)


def verify_cached(path: Path, manifest_sha256: str | None) -> ManifestView | None:
    """The manifest if every file it lists under `path` re-hashes to its sha256 and size (and
    the manifest itself to `manifest_sha256`, when given), else None. Extra files (engines
    built for a target) are allowed."""
    manifest = path / MANIFEST
    if manifest.is_symlink() or not manifest.is_file():
        return None
    if manifest_sha256 is not None and hash_file(manifest)[0] != manifest_sha256:
        return None
    try:
        view = ManifestView.loads(manifest.read_bytes(), str(manifest))
    except UserError:
        return None
    for f in view.files:
        file = path / f.path
        if file.is_symlink() or not file.is_file() or hash_file(file) != (f.sha256, f.size_bytes):
            return None
    return view


def entry_of_bundle(path: Path, view: ManifestView) -> IndexEntry:
    """The index entry describing a verified bundle directory."""
    manifest_sha = hash_file(path / MANIFEST)[0]
    files = {f.path: f.sha256 for f in view.files} | {MANIFEST: manifest_sha}
    return IndexEntry(view.name, view.version, manifest_sha, files)


def move_into_place(staging: Path, final: Path, manifest_sha256: str | None) -> None:
    """Rename a verified staging dir to `final`, replacing a damaged copy if one is there."""
    if final.exists():  # a damaged or stale copy: move it aside, then drop it
        aside = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".old", dir=final.parent))
        os.replace(final, aside / final.name)
        shutil.rmtree(aside, ignore_errors=True)
    try:
        os.replace(staging, final)
    except OSError:  # a concurrent pull won the race: fine if what it put there verifies
        if verify_cached(final, manifest_sha256) is None:
            raise
    fsync_dir(final.parent)
