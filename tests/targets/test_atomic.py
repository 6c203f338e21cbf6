"""Atomic writes leave results as readable as any file the user makes, never private."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from targets.atomic import as_if_created, write_atomic


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_written_file_follows_the_umask_not_mkstemp(tmp_path: Path, umask_022: None) -> None:
    path = write_atomic(tmp_path / "report.md", b"# hello\n")
    assert path.read_bytes() == b"# hello\n"
    assert mode(path) == 0o644  # mkstemp alone would leave 0600
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]  # no temp file left


def test_temp_directories_become_ordinary_ones(tmp_path: Path, umask_022: None) -> None:
    import tempfile

    made = Path(tempfile.mkdtemp(dir=tmp_path))
    assert mode(made) == 0o700
    assert mode(as_if_created(made)) == 0o755


def test_a_stricter_umask_is_respected(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        assert mode(write_atomic(tmp_path / "secret", b"x")) == 0o600
    finally:
        os.umask(old)
