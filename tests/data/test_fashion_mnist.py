"""Fashion-MNIST: the real files from Debian's package, the search order, damaged files."""

from __future__ import annotations

import gzip
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from datafiles import write_fashion, write_idx

from factory.data import load_dataset
from factory.data.fashion_mnist import (
    CLASS_NAMES,
    SYSTEM_DIR,
    candidate_dirs,
    find_idx_dir,
    open_fashion_mnist,
    read_idx,
)
from factory.spaces.base import InputSpec
from targets.errors import UserError

needs_real = pytest.mark.skipif(
    not (SYSTEM_DIR / "train-images-idx3-ubyte.gz").is_file(),
    reason=f"real Fashion-MNIST absent from {SYSTEM_DIR} (apt-get install dataset-fashion-mnist)",
)


@pytest.fixture(scope="module")
def real():
    start = time.perf_counter()
    splits = load_dataset("fashion-mnist", root=SYSTEM_DIR, val_fraction=0.1, seed=0)
    print(f"loaded real Fashion-MNIST in {time.perf_counter() - start:.2f} s")
    return splits


@needs_real
def test_real_counts_shapes_and_labels(real) -> None:
    info = real.info
    assert (info.train_size, info.val_size, info.test_size) == (54000, 6000, 10000)
    assert len(real.train) + len(real.val) == 60000 and len(real.test) == 10000
    assert info.input_shape == (1, 28, 28) and real.train.images.shape == (54000, 1, 28, 28)
    assert real.train.images.dtype == torch.float32 and real.test.labels.dtype == torch.int64
    for split in (real.train, real.val, real.test):
        assert int(split.labels.min()) == 0 and int(split.labels.max()) == 9
    # the published test set is balanced: 1000 images per class
    assert torch.bincount(real.test.labels).tolist() == [1000] * 10
    assert info.class_names == CLASS_NAMES and info.class_names[9] == "Ankle boot"
    assert info.input_spec() == InputSpec(channels=1, height=28, width=28, num_classes=10)


@needs_real
def test_real_normalisation(real) -> None:
    (mean,), (std,) = real.info.mean, real.info.std
    assert mean == pytest.approx(0.2860, abs=1e-3) and std == pytest.approx(0.3530, abs=1e-3)
    train = real.train.images
    assert float(train.mean()) == pytest.approx(0.0, abs=0.02)
    assert float(train.std()) == pytest.approx(1.0, abs=0.02)
    # undoing the normalisation gives back bytes: values are k/255 exactly (to float error)
    pixels = (real.test.images[:50] * std + mean) * 255
    assert torch.allclose(pixels, pixels.round(), atol=1e-3)
    assert float(pixels.min()) >= -1e-3 and float(pixels.max()) <= 255.001


@needs_real
def test_real_file_matches_raw_bytes() -> None:
    raw = gzip.decompress((SYSTEM_DIR / "t10k-labels-idx1-ubyte.gz").read_bytes())
    labels = read_idx(SYSTEM_DIR / "t10k-labels-idx1-ubyte.gz", ndim=1)
    assert labels.shape == (10000,) and labels.tobytes() == raw[8:]


def test_search_order_prefers_explicit_root_then_torchvision_layout(tmp_path: Path) -> None:
    dirs = candidate_dirs(tmp_path)
    assert dirs[:3] == [tmp_path, tmp_path / "FashionMNIST" / "raw", SYSTEM_DIR]
    write_fashion(tmp_path / "FashionMNIST" / "raw", n_train=30)
    assert find_idx_dir(dirs) == tmp_path / "FashionMNIST" / "raw"
    splits = load_dataset("fashion-mnist", root=tmp_path, val_fraction=0.2)
    assert (splits.info.train_size, splits.info.val_size, splits.info.test_size) == (24, 6, 20)
    write_fashion(tmp_path, n_train=40)  # a flat copy in root itself wins
    assert load_dataset("fashion-mnist", root=tmp_path, val_fraction=0.0).info.train_size == 40


def test_uncompressed_files_read_like_compressed(tmp_path: Path) -> None:
    a = open_fashion_mnist([write_fashion(tmp_path / "gz", compress=True)])
    b = open_fashion_mnist([write_fashion(tmp_path / "raw", compress=False)])
    assert torch.equal(a.pool.images, b.pool.images) and torch.equal(a.test.labels, b.test.labels)


def test_missing_data_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(UserError) as err:
        open_fashion_mnist([tmp_path / "x", tmp_path / "y"])
    message = str(err.value)
    assert "\n" not in message and str(tmp_path / "x") in message
    assert "make data" in message and "dataset-fashion-mnist" in message and "--download" in message


def test_truncated_gzip_names_the_file(tmp_path: Path) -> None:
    folder = write_fashion(tmp_path)
    path = folder / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(UserError, match=r"train-images-idx3-ubyte\.gz"):
        open_fashion_mnist([folder])


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        (b"\x00\x00\x08", "bad header"),
        (b"\x00\x00\x0d\x01" + (3).to_bytes(4, "big") + b"abc", "bad header"),  # float type
        (b"\x00\x00\x08\x01" + (9).to_bytes(4, "big") + b"abc", "truncated"),
    ],
)
def test_corrupt_idx_names_the_file(tmp_path: Path, payload: bytes, problem: str) -> None:
    path = tmp_path / "t10k-labels-idx1-ubyte"
    path.write_bytes(payload)
    with pytest.raises(UserError, match=problem) as err:
        read_idx(path, ndim=1)
    assert str(path) in str(err.value)


def test_mismatched_counts_and_bad_labels_are_refused(tmp_path: Path) -> None:
    folder = write_fashion(tmp_path)
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.zeros(19))
    with pytest.raises(UserError, match="20 images"):
        open_fashion_mnist([folder])
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.full(20, 10))
    with pytest.raises(UserError, match="label 10"):
        open_fashion_mnist([folder])


def test_image_size_other_than_28_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="imagefolder only"):
        load_dataset("fashion-mnist", root=write_fashion(tmp_path), image_size=32)
