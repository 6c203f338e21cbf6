"""Writers of tiny datasets in each loader's real on-disk format (idx, pickled batches, PNGs)."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
from PIL import Image

CIFAR_NAMES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)


def write_idx(path: Path, array: np.ndarray, compress: bool = True) -> Path:
    """An idx file of unsigned bytes: magic 0 0 8 ndim, big-endian dims, raw bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    payload = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(payload) if compress else payload)
    return path


def write_fashion(folder: Path, n_train: int = 50, n_test: int = 20, compress: bool = True) -> Path:
    """The four Fashion-MNIST idx files with random images and labels cycling 0..9."""
    rng = np.random.default_rng(1)
    suffix = ".gz" if compress else ""
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images, compress)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", np.arange(n) % 10, compress)
    return folder


def write_cifar(
    folder: Path,
    per_batch: int = 4,
    protocol: int = pickle.DEFAULT_PROTOCOL,
    str_keys: bool = False,
) -> dict[str, np.ndarray]:
    """torchvision's `cifar-10-batches-py` layout; returns the raw (N, 3072) arrays written."""
    rng = np.random.default_rng(2)
    folder.mkdir(parents=True, exist_ok=True)
    key = (lambda k: k) if str_keys else (lambda k: k.encode())
    written = {}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for b, name in enumerate(names):
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = [(b + i) % 10 for i in range(per_batch)]
        entry = {key("batch_label"): key(name), key("labels"): labels, key("data"): data}
        (folder / name).write_bytes(pickle.dumps(entry, protocol=protocol))
        written[name] = data
    meta = {key("label_names"): [key(n) for n in CIFAR_NAMES], key("num_vis"): 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=protocol))
    return written


def write_images(
    folder: Path, classes: dict[str, int], size_wh: tuple[int, int], mode: str
) -> None:
    """`count` PNGs per class, each a flat colour that differs by class and index."""
    for c, (name, count) in enumerate(classes.items()):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            colour = 20 * c + 7 * i if mode == "L" else (20 * c, 7 * i, 100)
            Image.new(mode, size_wh, colour).save(folder / name / f"{i:03d}.png")
