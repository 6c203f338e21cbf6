"""The dataset contract: what a loader returns, how splits are carved and batched.

A registered loader reads files and returns a `Source` (the whole training pool and the
test set, already normalised); `load_dataset` carves the seeded validation split out of
the pool, so the test set is never used for selection.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from factory.spaces.base import InputSpec
from targets import cache_dir
from targets.errors import UserError
from targets.registry import Registry

DEFAULT_DATASET = "fashion-mnist"
ImageSize = tuple[int, int]  # (height, width)


def default_data_root() -> Path:
    """Where `--download` and `make data` put datasets: the user cache, so any cwd finds them."""
    return cache_dir() / "datasets"


@dataclass(frozen=True)
class DatasetInfo:
    """What a model and a manifest need to know about the data it was trained on."""

    name: str
    input_shape: tuple[int, int, int]  # (C, H, W)
    class_names: tuple[str, ...]
    mean: tuple[float, ...]  # per channel, of pixels scaled to [0, 1]
    std: tuple[float, ...]
    train_size: int
    val_size: int
    test_size: int

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def input_spec(self) -> InputSpec:
        """The spec a search space adapts its stem and head to."""
        c, h, w = self.input_shape
        return InputSpec(channels=c, height=h, width=w, num_classes=self.num_classes)


class Split(ABC):
    """A sized set of (image, label) pairs that can hand out batches by index."""

    labels: torch.Tensor  # (N,) int64

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @abstractmethod
    def take(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised images (B, C, H, W) float32 and labels (B,) int64 at `idx`."""

    @abstractmethod
    def subset(self, idx: torch.Tensor) -> Split:
        """The samples at `idx`, as a split of the same kind."""


class TensorSplit(Split):
    """An in-memory split: batches are slices of two tensors, no per-sample calls."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        if images.shape[0] != labels.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
        self.images = images  # (N, C, H, W) float32, normalised
        self.labels = labels

    def take(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images.index_select(0, idx), self.labels.index_select(0, idx)

    def subset(self, idx: torch.Tensor) -> TensorSplit:
        return TensorSplit(*self.take(idx))


@dataclass(frozen=True)
class Source:
    """A loader's result: the full training pool and the test set, both normalised."""

    class_names: tuple[str, ...]
    input_shape: tuple[int, int, int]  # (C, H, W)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    pool: Split  # the official training set; train and val are carved from it
    test: Split


class Loader(Protocol):
    """A registered dataset: reads (or downloads) files into a `Source`."""

    def __call__(
        self, root: Path | None, download: bool, image_size: ImageSize | None
    ) -> Source: ...


DATASETS: Registry[Loader] = Registry("dataset")


@dataclass(frozen=True)
class DataSplits:
    """Train/val/test for one run; val is carved from the training pool with the run's seed."""

    info: DatasetInfo
    train: Split
    val: Split
    test: Split
    # training images a `limit_train` left out: never trained on, so a search's final
    # rescoring may score on them beside val (factory/search/scoring.py); None: none left
    spare: Split | None = None


def in_memory_source(
    train_u8: np.ndarray,
    train_labels: np.ndarray,
    test_u8: np.ndarray,
    test_labels: np.ndarray,
    class_names: tuple[str, ...],
) -> Source:
    """Normalise uint8 (N, C, H, W) arrays with the training pool's per-channel stats."""
    # one float copy per array, normalised in place: CIFAR-10's pool is 600 MB as float32
    pool = torch.from_numpy(train_u8.astype(np.float32)).div_(255.0)
    std_t, mean_t = torch.std_mean(pool, dim=(0, 2, 3))
    std_t = std_t.clamp_min(1e-6)  # a constant channel would divide by zero
    shape = (-1, 1, 1)
    pool.sub_(mean_t.view(shape)).div_(std_t.view(shape))
    test = torch.from_numpy(test_u8.astype(np.float32)).div_(255.0)
    test.sub_(mean_t.view(shape)).div_(std_t.view(shape))
    return Source(
        class_names=class_names,
        input_shape=tuple(int(s) for s in train_u8.shape[1:]),
        mean=tuple(float(m) for m in mean_t),
        std=tuple(float(s) for s in std_t),
        pool=TensorSplit(pool, torch.from_numpy(train_labels.astype(np.int64))),
        test=TensorSplit(test, torch.from_numpy(test_labels.astype(np.int64))),
    )


def split_indices(
    n: int, val_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint (train, val) indices into range(n); val has round(n * val_fraction) items."""
    if not 0.0 <= val_fraction < 1.0:
        raise UserError(f"val fraction must be in [0, 1), got {val_fraction}")
    n_val = round(n * val_fraction)
    if n - n_val < 1:
        raise UserError(f"val fraction {val_fraction} leaves no training samples out of {n}")
    order = rng.permutation(n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def carve_splits(
    pool: Split,
    val_fraction: float,
    seed: int,
    limit_train: int | None = None,
    keep_spare: int = 0,
) -> tuple[Split, Split, Split | None]:
    """(train, val, spare) from the pool; same seed, same split. `limit_train` keeps a seeded
    subset of the training images; spare holds up to `keep_spare` of the others, a seeded
    draw (None: none kept; only what is asked for, as each kept image is a copy)."""
    rng = np.random.default_rng(seed)
    train_idx, val_idx = split_indices(len(pool), val_fraction, rng)
    spare = None
    if limit_train is not None:
        if limit_train < 1:
            raise UserError(f"limit on training samples must be at least 1, got {limit_train}")
        if limit_train < len(train_idx):  # drawn after val, so val does not depend on it
            kept = np.sort(rng.choice(train_idx, size=limit_train, replace=False))
            if keep_spare > 0:  # drawn after train, so train does not depend on it
                rest = rng.permutation(np.setdiff1d(train_idx, kept))[:keep_spare]
                spare = pool.subset(torch.from_numpy(rest)) if len(rest) else None
            train_idx = kept
    train, val = pool.subset(torch.from_numpy(train_idx)), pool.subset(torch.from_numpy(val_idx))
    return train, val, spare


def load_dataset(
    name: str = DEFAULT_DATASET,
    root: str | Path | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    download: bool = False,
    limit_train: int | None = None,
    image_size: int | ImageSize | None = None,
    keep_spare: int = 0,
) -> DataSplits:
    """The named dataset split into train/val/test; `image_size` is (H, W) or one side;
    `keep_spare` training images that `limit_train` leaves out are kept as `spare`."""
    canonical = DATASETS.resolve(name)
    size = (image_size, image_size) if isinstance(image_size, int) else image_size
    if size is not None and min(size) < 1:
        raise UserError(f"image size must be positive, got {image_size}")
    root_path = Path(root).expanduser() if root is not None else None
    source = DATASETS.get(canonical)(root_path, download, size)
    train, val, spare = carve_splits(source.pool, val_fraction, seed, limit_train, keep_spare)
    info = DatasetInfo(
        name=canonical,
        input_shape=source.input_shape,
        class_names=source.class_names,
        mean=source.mean,
        std=source.std,
        train_size=len(train),
        val_size=len(val),
        test_size=len(source.test),
    )
    return DataSplits(info=info, train=train, val=val, test=source.test, spare=spare)


def check_native_size(name: str, native: ImageSize, image_size: ImageSize | None) -> None:
    """Fixed-size datasets are not resized; say so instead of silently ignoring the size."""
    if image_size is not None and tuple(image_size) != native:
        h, w = native
        raise UserError(f"{name} images are {h}x{w}; an image size applies to imagefolder only")


def num_batches(split: Split, batch_size: int, drop_last: bool = False) -> int:
    """How many batches `iterate_batches` yields for these arguments."""
    if batch_size < 1:
        raise UserError(f"batch size must be at least 1, got {batch_size}")
    n = len(split)
    return n // batch_size if drop_last else -(-n // batch_size)


def iterate_batches(
    split: Split,
    batch_size: int,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(images, labels) batches in order, or in a permutation drawn from `generator`."""
    if shuffle and generator is None:
        raise ValueError("shuffling needs an explicit torch.Generator (randomness is an argument)")
    count = num_batches(split, batch_size, drop_last)
    n = len(split)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    for b in range(count):
        yield split.take(order[b * batch_size : (b + 1) * batch_size])
