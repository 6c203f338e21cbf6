"""Where a registry's files come from: a directory or an http(s) URL, read with limits, and
every blob written through `write_verified`.

A blob is streamed to a temporary file beside its destination while it is hashed, and renamed
into place only when its sha256 (and size, where known) match: a tampered or cut download never
becomes a file anything could use. Plain `urllib` from the standard library: no extra
dependency, proxies from the environment.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

from factory import __version__
from factory.registry.index import ChecksumError, Index, blob_relpath
from targets.atomic import as_if_created
from targets.errors import UserError

SHIPPED_REGISTRY = Path(__file__).parent / "shipped"  # the registry inside the package
REGISTRY_ENV = "EMF_REGISTRY"
MAX_INDEX_BYTES = 16 << 20
MAX_MANIFEST_BYTES = 4 << 20
MAX_BLOB_BYTES = 4 << 30  # a bundle file larger than this is refused even if listed
DEFAULT_TIMEOUT_S = 30.0  # per socket operation, not for the whole download
_CHUNK = 1 << 16

Progress = Callable[[str, int], None]  # (label, bytes just received)


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def write_verified(
    chunks: Iterator[bytes],
    dest: Path,
    sha256: str,
    size_bytes: int | None,
    label: str,
    max_bytes: int = MAX_BLOB_BYTES,
    progress: Progress | None = None,
) -> Path:
    """Stream `chunks` to a temp file beside `dest` while hashing; rename it to `dest` only if
    the sha256 (and `size_bytes`, when given) match. On any failure nothing is left behind."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    limit = max_bytes if size_bytes is None else min(size_bytes, max_bytes)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    as_if_created(Path(tmp))
    try:
        digest, received = hashlib.sha256(), 0
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                received += len(chunk)
                if received > limit:
                    raise ChecksumError(f"{label}: more than the expected {limit} bytes; refused")
                digest.update(chunk)
                out.write(chunk)
                if progress is not None:
                    progress(label, len(chunk))
            out.flush()
            os.fsync(out.fileno())
        if size_bytes is not None and received != size_bytes:
            raise ChecksumError(
                f"{label}: received {received} of {size_bytes} bytes (interrupted or altered "
                f"download); it was deleted"
            )
        if digest.hexdigest() != sha256:
            raise ChecksumError(
                f"checksum mismatch for {label}: expected sha256 {sha256[:16]}..., got "
                f"{digest.hexdigest()[:16]}...; the download was deleted"
            )
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return dest


class RegistrySource(ABC):
    """Where a registry's files come from. The base owns limits, hashing and messages;
    a subclass only opens one file as a byte stream."""

    location: str

    def read_index(self) -> Index:
        """The registry's index.json, validated."""
        where = f"{self.location}/index.json"
        return Index.loads(self._read_small("index.json", MAX_INDEX_BYTES, "index.json"), where)

    def fetch_blob(
        self,
        sha256: str,
        dest: Path,
        size_bytes: int | None,
        label: str,
        max_bytes: int = MAX_BLOB_BYTES,
        progress: Progress | None = None,
    ) -> Path:
        """Download the blob `sha256` to `dest`, verified (see `write_verified`)."""
        with self._open(blob_relpath(sha256), label, size_bytes) as stream:
            chunks = self._chunks(stream, label)
            return write_verified(chunks, dest, sha256, size_bytes, label, max_bytes, progress)

    def _read_small(self, relpath: str, max_bytes: int, label: str) -> bytes:
        with self._open(relpath, label, None) as stream:
            data = b"".join(self._chunks(stream, label, max_bytes + 1))
        if len(data) > max_bytes:
            raise UserError(f"{self.location}: {label} is larger than {max_bytes} bytes")
        return data

    def _chunks(
        self, stream: Readable, label: str, max_bytes: int | None = None
    ) -> Iterator[bytes]:
        read = 0
        while max_bytes is None or read < max_bytes:
            try:
                chunk = stream.read(_CHUNK)
            except (OSError, http.client.HTTPException) as exc:
                raise UserError(
                    f"download of {label} from {self.location} was interrupted ({_why(exc)}); "
                    f"nothing was kept"
                ) from exc
            if not chunk:
                return
            read += len(chunk)
            yield chunk

    @abstractmethod
    def _open(
        self, relpath: str, label: str, size_bytes: int | None
    ) -> contextlib.AbstractContextManager[Readable]:
        """Open `relpath` (e.g. `blobs/sha256/<hex>`) of the registry for reading."""


class DirectorySource(RegistrySource):
    """A registry on a local or mounted file system."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser()
        self.location = str(self.root)
        if not (self.root / "index.json").is_file():
            raise UserError(
                f"registry {self.root}: no index.json there (a registry is a directory or an "
                f"http(s) URL holding index.json; `factory push BUNDLE --registry DIR` makes one)"
            )

    @contextlib.contextmanager
    def _open(self, relpath: str, label: str, size_bytes: int | None) -> Iterator[Readable]:
        try:
            stream = open(self.root / relpath, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            raise UserError(f"registry {self.root}: {relpath} ({label}) is missing") from None
        with stream:
            yield stream


class HttpSource(RegistrySource):
    """A registry served over http(s) by any static file server."""

    def __init__(self, url: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.location = url.rstrip("/")
        self.timeout_s = timeout_s

    @contextlib.contextmanager
    def _open(self, relpath: str, label: str, size_bytes: int | None) -> Iterator[Readable]:
        url = f"{self.location}/{relpath}"
        request = urllib.request.Request(
            url, headers={"User-Agent": f"edge-model-factory/{__version__}"}
        )
        try:
            response = urllib.request.urlopen(request, timeout=self.timeout_s)
        except urllib.error.HTTPError as exc:
            raise UserError(
                f"registry {self.location}: HTTP {exc.code} for {label} ({url})"
            ) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            raise UserError(f"cannot reach registry {self.location}: {_why(exc)}") from None
        with response:
            declared = response.headers.get("Content-Length")
            if size_bytes is not None and declared is not None and declared != str(size_bytes):
                raise ChecksumError(
                    f"{label}: the server announces {declared} bytes, the manifest {size_bytes};"
                    f" refused"
                )
            yield _LengthChecked(response, int(declared) if declared is not None else None)


class _LengthChecked:
    """`http.client` ends a body cut short by the server as if it were complete; this raises
    `IncompleteRead` instead when fewer bytes came than Content-Length announced."""

    def __init__(self, stream: Readable, declared_bytes: int | None) -> None:
        self._stream, self._declared, self._got = stream, declared_bytes, 0

    def read(self, size: int = -1, /) -> bytes:
        chunk = self._stream.read(size)
        self._got += len(chunk)
        if not chunk and self._declared is not None and self._got < self._declared:
            raise http.client.IncompleteRead(b"", self._declared - self._got)
        return chunk


def default_registry() -> str:
    """`$EMF_REGISTRY`, else the registry shipped inside the package."""
    return os.environ.get(REGISTRY_ENV) or str(SHIPPED_REGISTRY)


def open_registry(location: str | Path | None = None) -> RegistrySource:
    """A source for a directory path, `file://` URL or http(s) URL (None: `default_registry`)."""
    loc = str(location) if location is not None else default_registry()
    scheme = urllib.parse.urlsplit(loc).scheme.lower()
    if scheme in ("http", "https"):
        return HttpSource(loc)
    if scheme == "file":
        return DirectorySource(Path(urllib.request.url2pathname(urllib.parse.urlsplit(loc).path)))
    if "://" in loc:
        raise UserError(f"registry {loc!r}: only directories and http(s):// URLs are supported")
    return DirectorySource(Path(loc))


def _why(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    text = " ".join(str(reason).split()) or type(exc).__name__
    return text[:200]
