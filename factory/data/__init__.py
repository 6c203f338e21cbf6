"""Datasets. Importing this package registers the built-in ones; the key is `--dataset`."""

from __future__ import annotations

from factory.data import cifar10, fashion_mnist, imagefolder  # noqa: F401  (registers built-ins)
from factory.data.base import (
    DATASETS,
    DEFAULT_DATASET,
    DatasetInfo,
    DataSplits,
    Source,
    Split,
    TensorSplit,
    carve_splits,
    default_data_root,
    iterate_batches,
    load_dataset,
    num_batches,
    split_indices,
)
from factory.data.fashion_mnist import download_fashion_mnist

__all__ = [
    "DATASETS",
    "DEFAULT_DATASET",
    "DataSplits",
    "DatasetInfo",
    "Source",
    "Split",
    "TensorSplit",
    "carve_splits",
    "default_data_root",
    "download_fashion_mnist",
    "iterate_batches",
    "load_dataset",
    "num_batches",
    "split_indices",
]
