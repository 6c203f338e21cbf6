"""Fashion-MNIST from idx(.gz) files, parsed with numpy (a second, not torchvision's loop).

Searched in order: an explicit root (flat or torchvision's `FashionMNIST/raw/`), Debian's
`dataset-fashion-mnist` package, then the download folder in the user cache.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Sequence
from pathlib import Path

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

SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
# (split, images file, labels file) without the .gz suffix, as published
FILES = (
    ("train", "train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    ("test", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
)
_UBYTE = 0x08  # idx type code for unsigned bytes


def candidate_dirs(root: Path | None) -> list[Path]:
    """Folders that may hold the four idx files, most specific first."""
    dirs = [root, root / "FashionMNIST" / "raw"] if root is not None else []
    return [*dirs, SYSTEM_DIR, default_data_root() / "FashionMNIST" / "raw"]


def _idx_path(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def find_idx_dir(dirs: Sequence[Path]) -> Path | None:
    """The first folder holding all four idx files (plain or .gz), or None."""
    stems = [stem for _, *pair in FILES for stem in pair]
    for folder in dirs:
        if all(_idx_path(folder, stem) is not None for stem in stems):
            return folder
    return None


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """An idx file of unsigned bytes as an array; a damaged file is a `UserError` naming it."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as err:  # BadGzipFile is an OSError
        raise UserError(f"cannot read {path}: {err}; delete it and fetch it again") from None
    header = 4 + 4 * ndim
    if len(raw) < header or raw[0:2] != b"\0\0" or raw[2] != _UBYTE or raw[3] != ndim:
        raise UserError(f"{path} is not a {ndim}-d ubyte idx file (bad header)")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(dims))
    if len(raw) - header != expected:
        raise UserError(
            f"{path} is truncated or corrupt: header says {dims}, "
            f"found {len(raw) - header} of {expected} bytes"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def read_split(folder: Path, images_stem: str, labels_stem: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 1, 28, 28) uint8 and labels (N,) uint8 of one split, cross-checked."""
    images_path = _idx_path(folder, images_stem)
    labels_path = _idx_path(folder, labels_stem)
    assert images_path is not None and labels_path is not None  # checked by find_idx_dir
    images = read_idx(images_path, ndim=3)
    labels = read_idx(labels_path, ndim=1)
    if images.shape[1:] != (28, 28):
        raise UserError(f"{images_path} holds {images.shape[1:]} images, expected 28x28")
    if len(images) != len(labels):
        raise UserError(f"{images_path} has {len(images)} images but {labels_path} {len(labels)}")
    if labels.size and int(labels.max()) >= len(CLASS_NAMES):
        raise UserError(f"{labels_path} has label {int(labels.max())}, expected 0..9")
    return images[:, None], labels


def download_fashion_mnist(root: Path | None = None) -> Path:
    """Fetch the idx files with torchvision's downloader; returns the folder holding them.

    The default root is the user cache, which `load_dataset` searches from any directory.
    """
    from torchvision.datasets import FashionMNIST  # heavy import, only needed here

    root = Path(root) if root is not None else default_data_root()
    try:
        FashionMNIST(str(root), train=False, download=True)
    except Exception as err:  # network errors come in many types; the user needs one line
        detail = " ".join(str(err).split())
        raise UserError(
            f"could not download Fashion-MNIST into {root} ({detail}); "
            "run `apt-get install dataset-fashion-mnist` or copy the idx files there"
        ) from None
    return root / "FashionMNIST" / "raw"


def open_fashion_mnist(dirs: Sequence[Path], download_root: Path | None = None) -> Source:
    """Load from the first folder of `dirs` that has the files, downloading if allowed."""
    folder = find_idx_dir(dirs)
    if folder is None and download_root is not None:
        folder = download_fashion_mnist(download_root)
    if folder is None:
        searched = ", ".join(str(d) for d in dict.fromkeys(dirs))
        raise UserError(
            f"Fashion-MNIST not found in {searched}: run `make data` or "
            "`apt-get install dataset-fashion-mnist`, or let `factory search --download` fetch it"
        )
    (train_x, train_y), (test_x, test_y) = (read_split(folder, i, lb) for _, i, lb in FILES)
    return in_memory_source(train_x, train_y, test_x, test_y, CLASS_NAMES)


@DATASETS.decorator("fashion-mnist")
def fashion_mnist(root: Path | None, download: bool, image_size: ImageSize | None) -> Source:
    """Fashion-MNIST: 60k/10k grey 28x28 images of 10 clothing classes."""
    check_native_size("fashion-mnist", (28, 28), image_size)
    download_root = (root or default_data_root()) if download else None
    return open_fashion_mnist(candidate_dirs(root), download_root)
