"""`pull`: resolve a model in a registry and fetch it, verified, into the user cache.

A bundle is assembled in a temporary directory beside its final place and renamed to
`<cache>/models/<name>/<version>` (see `cache`) only once every file in it has been verified,
so nothing ever uses an unverified file and a failed pull leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from factory.registry.cache import CachedBundle, bundle_cache_path, move_into_place, verify_cached
from factory.registry.index import (
    MANIFEST,
    ChecksumError,
    IndexEntry,
    ManifestView,
    hash_file,
    parse_ref,
)
from factory.registry.recipes import RECIPE_PREFIX
from factory.registry.sources import (
    MAX_MANIFEST_BYTES,
    Progress,
    RegistrySource,
    open_registry,
)
from targets import get_target
from targets.atomic import as_if_created, check_writable_dir, fsync_dir
from targets.errors import UnknownNameError, UserError

if TYPE_CHECKING:
    from factory.registry.engine import BuiltEngine

STALE_PART_S = 24 * 3600.0  # a staging directory this old belongs to no running pull


def fetch_bundle(
    source: RegistrySource, entry: IndexEntry, progress: Progress | None = None
) -> CachedBundle:
    """`entry`'s bundle in the cache: reused if it verifies, else downloaded and verified
    into a temporary directory that is renamed into place."""
    final = bundle_cache_path(entry.name, entry.version)
    view = verify_cached(final, entry.manifest_sha256) if final.exists() else None
    if view is not None:
        return CachedBundle(entry, final, view, downloaded=False)
    final.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(final.parent)
    staging = as_if_created(
        Path(tempfile.mkdtemp(prefix=f".{entry.version}.", suffix=".part", dir=final.parent))
    )
    try:
        view = _download(source, entry, staging, progress)
        move_into_place(staging, final, entry.manifest_sha256)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # renamed away on success
        with contextlib.suppress(OSError):
            final.parent.rmdir()  # only if empty: a failed first pull leaves no trace
    return CachedBundle(entry, final, view, downloaded=True)


def sweep_stale(parent: Path, max_age_s: float = STALE_PART_S) -> None:
    """Remove staging directories (`.*.part`) that a killed pull left behind; young ones may
    belong to a pull running now and are kept."""
    now = time.time()
    for leftover in parent.glob(".*.part"):
        with contextlib.suppress(OSError):
            if now - leftover.lstat().st_mtime > max_age_s:
                shutil.rmtree(leftover, ignore_errors=True)


def _download(
    source: RegistrySource, entry: IndexEntry, staging: Path, progress: Progress | None
) -> ManifestView:
    label = f"{MANIFEST} of {entry.ref}"
    manifest = staging / MANIFEST
    source.fetch_blob(entry.manifest_sha256, manifest, None, label, MAX_MANIFEST_BYTES, progress)
    view = ManifestView.loads(manifest.read_bytes(), label)
    listed = {f.path: f.sha256 for f in view.files}
    indexed = {k: v for k, v in entry.files.items() if k != MANIFEST}
    if (view.name, view.version) != (entry.name, entry.version) or listed != indexed:
        raise UserError(
            f"registry {source.location}: the index entry of {entry.ref} and its manifest "
            f"disagree (name, version or files); refused"
        )
    for f in view.files:
        label = f"{f.path} of {entry.ref}"
        source.fetch_blob(f.sha256, staging / f.path, f.size_bytes, label, progress=progress)
    fsync_dir(staging)
    return view


def pull(
    ref: str,
    registry: str | Path | None = None,
    *,
    target: str | None = None,
    out: Path | None = None,
    pretrained: bool = True,
    progress: Progress | None = None,
    force: bool = False,
) -> PulledModel:
    """Resolve `NAME[:VERSION]` (latest when omitted) in the registry, fetch and verify it
    into the cache, build a TensorRT engine when `target` runs one, copy it to `out/<name>`
    (a copy changed since it was made is replaced only with `force`).
    `torchvision/ARCH` names a recipe instead: exported locally (`pretrained` weights or not)."""
    if out is not None:
        check_writable_dir(out, "--out")  # before anything is downloaded
    if ref.startswith(RECIPE_PREFIX):
        from factory.registry.recipes import export_recipe  # lazy: torch, torchvision

        on_step = (lambda step: progress(step, 0)) if progress is not None else None
        return deliver(export_recipe(ref, pretrained, target, on_step), target, out, force)
    name, version = parse_ref(ref)
    if target is not None:
        get_target(target)  # an unknown target fails before anything is downloaded
    source = open_registry(registry)
    try:
        entry = source.read_index().get(name, version)
    except UnknownNameError as exc:
        hint = f" (or a recipe: {RECIPE_PREFIX}ARCH, listed by `factory models`)"
        raise UnknownNameError(f"{exc}{hint if version is None else ''}") from None
    return deliver(fetch_bundle(source, entry, progress), target, out, force)


def deliver(
    bundle: CachedBundle, target: str | None, out: Path | None, force: bool = False
) -> PulledModel:
    """The last steps of a pull: the target's engine, then the copy to `out`."""
    engine = None
    if target is not None:
        from factory.registry.engine import engine_for_target  # lazy: TensorRT, agent client

        engine = engine_for_target(bundle.path, bundle.manifest, target)
    extra = [engine.path.name] if engine is not None else []
    if out is not None and not force:
        refuse_changed_copy(Path(out).expanduser() / bundle.manifest.name)
    copied = copy_bundle(bundle.path, bundle.manifest, out, extra) if out is not None else None
    return PulledModel(bundle, engine, copied)


@dataclass(frozen=True)
class PulledModel:
    """What `pull` produced: the cached bundle, its engine for the target, the copy."""

    bundle: CachedBundle
    engine: BuiltEngine | None = None
    copy: Path | None = None


def refuse_changed_copy(dest: Path) -> None:
    """Refuse to replace `dest`, an earlier copy of a bundle, if its files were changed or
    files were added to it since (engines built for a target excepted)."""
    if not (dest / MANIFEST).is_file():
        return  # nothing there, or not a bundle: `copy_bundle` refuses the latter
    view = verify_cached(dest, None)
    if view is None:
        why = f"its files no longer match its {MANIFEST}"
    else:
        known = {MANIFEST, *(f.path for f in view.files)}
        added = sorted(
            p.relative_to(dest).as_posix()
            for p in dest.rglob("*")
            if p.is_file() and p.relative_to(dest).as_posix() not in known
            and p.suffix != ".engine"
        )  # fmt: skip
        why = f"it holds {added[0]}, which the bundle does not" if added else None
    if why is not None:
        raise UserError(
            f"{dest} was changed since it was pulled ({why}); pass --force to replace it, or "
            "choose another --out"
        )


def copy_bundle(src: Path, view: ManifestView, out_dir: Path, extra: Sequence[str] = ()) -> Path:
    """Copy a verified bundle (plus `extra` files, e.g. the engine just built) to
    `out_dir/<name>` through a temporary directory; an existing bundle of that name is
    replaced, anything else refused."""
    out_dir = Path(out_dir).expanduser()
    dest = out_dir / view.name
    if dest.exists() and not (dest / MANIFEST).is_file():
        raise UserError(f"{dest} exists and is not a model bundle; choose another --out")
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = as_if_created(
        Path(tempfile.mkdtemp(prefix=f".{view.name}.", suffix=".part", dir=out_dir))
    )
    try:
        for name in [MANIFEST, *(f.path for f in view.files), *extra]:
            shutil.copyfile(src / name, staging / name)
        for f in view.files:  # the copy is checked like any download
            if hash_file(staging / f.path) != (f.sha256, f.size_bytes):
                raise ChecksumError(f"{f.path}: the copy in {out_dir} does not verify; removed")
        move_into_place(staging, dest, hash_file(src / MANIFEST)[0])
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest
