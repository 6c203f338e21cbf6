"""Atomic file writes: a reader sees the old file or the new one, never a torn one.

In `targets`, the bottom of the dependency graph, so every package writes files one way.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from targets.errors import UserError


def write_atomic(path: Path, data: bytes) -> Path:
    """Write `data` to a temp file in the same directory, fsync it, rename it over `path`,
    and fsync the directory so the rename survives a crash."""
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        as_if_created(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)
    return path


def as_if_created(path: Path) -> Path:
    """Give a temp file or directory the permissions a plain open() or mkdir() would: mkstemp
    and mkdtemp make them private (0600/0700), and once renamed into place they are results
    (reports, bundles, registries) that other users and web servers are meant to read."""
    mode = 0o777 if path.is_dir() else 0o666
    os.chmod(path, mode & ~_umask())
    return path


def _umask() -> int:
    """The process umask, read from /proc where possible (setting it to read it is racy)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def fsync_dir(path: Path) -> None:
    """Make a rename inside `path` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_writable_dir(path: Path, what: str) -> Path:
    """Refuse, before any work, a directory that cannot be created or written: a file in its
    place or on its way (`/etc/passwd/x`), or a parent this user may not write. Creates
    nothing; `what` names the option in the message, e.g. "--out"."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise UserError(f"{what} {path} is a file, not a directory; choose a directory")
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is None:
        return path
    if not existing.is_dir():
        raise UserError(f"{what} {path} cannot be created: {existing} is a file; choose another")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{what} {path}: {existing} is not writable by you; choose another")
    return path


def check_writable_file(path: Path, what: str) -> Path:
    """Like `check_writable_dir`, for a file to be written (its directory must be usable)."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise UserError(f"{what} {path} is a directory; give a file name")
    check_writable_dir(path.parent, what)
    return path
