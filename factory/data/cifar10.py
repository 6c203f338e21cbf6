"""CIFAR-10 from torchvision's python layout (`cifar-10-batches-py/`), read without trusting it.

The batches are pickles, and a pickle can run any code. `SafeUnpickler` only rebuilds numpy
arrays, so a tampered download cannot execute anything. torchvision's CIFAR10 class is not
used because it md5-checks every file (seconds) and calls plain `pickle.load`.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from factory.data.base import (
    DATASETS,
    ImageSize,
    Source,
    check_native_size,
    default_data_root,
    in_memory_source,
)
from targets.errors import UserError

BASE_FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
META_FILE = "batches.meta"
_PIXELS = 3 * 32 * 32  # one row of b"data": R plane, G plane, B plane, row-major


def _numpy_globals() -> dict[tuple[str, str], Any]:
    """The callables numpy pickles name, under both numpy 1 and numpy 2 module paths."""
    try:
        from numpy._core import multiarray, numeric  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray, numeric
    table: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _encode_text,  # protocol <= 2 pickles store bytes as str
    }
    for pkg in ("numpy.core", "numpy._core"):
        table[(f"{pkg}.multiarray", "_reconstruct")] = multiarray._reconstruct
        table[(f"{pkg}.multiarray", "scalar")] = multiarray.scalar
        table[(f"{pkg}.numeric", "_frombuffer")] = numeric._frombuffer
    return table


def _encode_text(text: str, encoding: str = "utf-8") -> bytes:
    """Stand-in for `_codecs.encode`: text to bytes only, whatever else it is asked."""
    return str(text).encode(encoding)


class SafeUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, strings and numpy arrays; any other global is refused."""

    _allowed = _numpy_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise UserError(
                f"refusing to unpickle {module}.{name}: CIFAR files hold only numpy arrays"
            ) from None


def safe_load(path: Path) -> Any:
    """The object in a pickle file, rebuilt by `SafeUnpickler` (latin1 for Python 2 files)."""
    try:
        data = path.read_bytes()
        return SafeUnpickler(io.BytesIO(data), encoding="latin1").load()
    except UserError as err:
        raise UserError(f"{path}: {err}") from None
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError) as err:
        raise UserError(f"cannot read {path} ({type(err).__name__}: {err})") from None


def _field(entry: Any, key: str, path: Path) -> Any:
    """entry[key] whether the file was written with str keys or bytes keys."""
    if isinstance(entry, dict):
        for k in (key, key.encode()):
            if k in entry:
                return entry[k]
    raise UserError(f"{path} has no {key!r} entry; is it a CIFAR-10 python batch?")


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, 32, 32) uint8 and labels (N,) of one batch file, shape-checked."""
    entry = safe_load(path)
    data, labels = _field(entry, "data", path), _field(entry, "labels", path)
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2):
        raise UserError(f"{path}: 'data' must be a uint8 (N, {_PIXELS}) array")
    labels = np.asarray(labels)
    if data.shape[1] != _PIXELS or labels.shape != (data.shape[0],):
        raise UserError(f"{path}: data {data.shape} and labels {labels.shape} do not match")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise UserError(f"{path}: labels must be in 0..9")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def read_class_names(path: Path) -> tuple[str, ...]:
    """The 10 class names from `batches.meta`."""
    names = _field(safe_load(path), "label_names", path)
    names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    if len(names) != 10:
        raise UserError(f"{path}: expected 10 label names, found {len(names)}")
    return names


def candidate_dirs(root: Path | None) -> list[Path]:
    """Folders that may be `cifar-10-batches-py`: under root, root itself, the cache."""
    dirs = [root / BASE_FOLDER, root] if root is not None else []
    return [*dirs, default_data_root() / BASE_FOLDER]


def find_batches_dir(dirs: Sequence[Path]) -> Path | None:
    """The first folder holding every batch and the meta file, or None."""
    names = (*TRAIN_FILES, TEST_FILE, META_FILE)
    for folder in dirs:
        if all((folder / name).is_file() for name in names):
            return folder
    return None


def download_cifar10(root: Path) -> Path:
    """Fetch and unpack the python archive with torchvision's checked downloader."""
    from torchvision.datasets import CIFAR10  # only its URL and archive checksum are used
    from torchvision.datasets.utils import download_and_extract_archive

    try:
        download_and_extract_archive(
            CIFAR10.url, str(root), filename=CIFAR10.filename, md5=CIFAR10.tgz_md5
        )
    except Exception as err:  # network errors come in many types; the user needs one line
        detail = " ".join(str(err).split())
        raise UserError(f"could not download CIFAR-10 into {root} ({detail})") from None
    return Path(root) / BASE_FOLDER


def open_cifar10(dirs: Sequence[Path], download_root: Path | None = None) -> Source:
    """Load from the first folder of `dirs` that has the batches, downloading if allowed."""
    folder = find_batches_dir(dirs)
    if folder is None and download_root is not None:
        folder = download_cifar10(download_root)
    if folder is None:
        searched = ", ".join(str(d) for d in dict.fromkeys(dirs))
        raise UserError(
            f"CIFAR-10 not found in {searched}: pass the folder holding {BASE_FOLDER}/ "
            "as --data-root, or let `factory search --download` fetch it"
        )
    train = [read_batch(folder / name) for name in TRAIN_FILES]
    test_x, test_y = read_batch(folder / TEST_FILE)
    train_x = np.concatenate([x for x, _ in train])
    train_y = np.concatenate([y for _, y in train])
    return in_memory_source(train_x, train_y, test_x, test_y, read_class_names(folder / META_FILE))


@DATASETS.decorator("cifar10")
def cifar10(root: Path | None, download: bool, image_size: ImageSize | None) -> Source:
    """CIFAR-10: 50k/10k colour 32x32 images of 10 classes."""
    check_native_size("cifar10", (32, 32), image_size)
    download_root = (root or default_data_root()) if download else None
    return open_cifar10(candidate_dirs(root), download_root)
