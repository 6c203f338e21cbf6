"""The contract every dataset keeps: seeded disjoint splits, sizes, batching, the registry."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from factory.data import (
    DATASETS,
    DEFAULT_DATASET,
    TensorSplit,
    carve_splits,
    iterate_batches,
    load_dataset,
    num_batches,
    split_indices,
)
from targets.errors import UnknownNameError, UserError


def _indexed_pool(n: int) -> TensorSplit:
    """A pool whose image i is filled with the value i, so a split reveals its indices."""
    images = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, 2, 2).clone()
    return TensorSplit(images, torch.arange(n) % 10)


def _ids(split: TensorSplit) -> list[int]:
    return split.images[:, 0, 0, 0].long().tolist()


@pytest.mark.parametrize(("n", "fraction", "n_val"), [(100, 0.1, 10), (7, 0.5, 4), (5, 0.0, 0)])
def test_split_indices_sizes_and_disjoint(n: int, fraction: float, n_val: int) -> None:
    train, val = split_indices(n, fraction, np.random.default_rng(0))
    assert len(val) == n_val and len(train) == n - n_val
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(n))


def test_same_seed_same_split_other_seed_other_split() -> None:
    pool = _indexed_pool(200)
    (t0, v0, _), (t0b, v0b, _) = carve_splits(pool, 0.1, seed=0), carve_splits(pool, 0.1, seed=0)
    _, v1, _ = carve_splits(pool, 0.1, seed=1)
    assert _ids(v0) == _ids(v0b) and _ids(t0) == _ids(t0b)
    assert _ids(v0) != _ids(v1)
    assert not set(_ids(t0)) & set(_ids(v0)) and len(_ids(t0)) + len(_ids(v0)) == 200


def test_limit_train_is_a_seeded_subset_that_leaves_val_alone() -> None:
    pool = _indexed_pool(300)
    full_train, full_val, _ = carve_splits(pool, 0.1, seed=4)
    train, val, _ = carve_splits(pool, 0.1, seed=4, limit_train=50)
    again, _, _ = carve_splits(pool, 0.1, seed=4, limit_train=50)
    assert len(train) == 50 and _ids(train) == _ids(again)
    assert set(_ids(train)) <= set(_ids(full_train)) and _ids(val) == _ids(full_val)
    assert len(carve_splits(pool, 0.1, seed=4, limit_train=10_000)[0]) == 270  # no padding


def test_spare_holds_training_images_the_limit_left_out() -> None:
    # what a search's final rescoring may score on beside val (--rescore-images)
    pool = _indexed_pool(100)
    train, val, spare = carve_splits(pool, 0.1, seed=3, limit_train=30, keep_spare=25)
    assert spare is not None and [len(train), len(val), len(spare)] == [30, 10, 25]
    assert not set(_ids(spare)) & (set(_ids(train)) | set(_ids(val)))  # never trained on
    assert _ids(spare) == _ids(carve_splits(pool, 0.1, seed=3, limit_train=30, keep_spare=25)[2])
    # keeping them changes neither train nor val: a run's splits stay as they were
    plain_train, plain_val, none = carve_splits(pool, 0.1, seed=3, limit_train=30)
    assert none is None and _ids(plain_train) == _ids(train) and _ids(plain_val) == _ids(val)
    assert len(carve_splits(pool, 0.1, seed=3, limit_train=30, keep_spare=999)[2]) == 60
    assert carve_splits(pool, 0.1, seed=3, keep_spare=25)[2] is None  # no limit: none left


@pytest.mark.parametrize(("fraction", "limit"), [(1.0, None), (-0.1, None), (0.1, 0)])
def test_bad_split_arguments_are_user_errors(fraction: float, limit: int | None) -> None:
    with pytest.raises(UserError):
        carve_splits(_indexed_pool(10), fraction, seed=0, limit_train=limit)


@pytest.mark.parametrize("drop_last", [False, True])
def test_batches_cover_the_split_once(drop_last: bool) -> None:
    split = _indexed_pool(23)
    batches = list(
        iterate_batches(
            split, 5, shuffle=True, generator=torch.Generator().manual_seed(0), drop_last=drop_last
        )
    )
    assert len(batches) == num_batches(split, 5, drop_last) == (4 if drop_last else 5)
    seen = [int(v) for x, _ in batches for v in x[:, 0, 0, 0]]
    assert len(seen) == len(set(seen)) == (20 if drop_last else 23)
    assert seen != sorted(seen)  # shuffled
    for x, y in batches:  # labels travel with their images
        assert torch.equal(y, x[:, 0, 0, 0].long() % 10)


def test_shuffle_is_reproducible_and_needs_a_generator() -> None:
    split = _indexed_pool(40)

    def order(seed: int) -> list[int]:
        gen = torch.Generator().manual_seed(seed)
        return [int(v) for x, _ in iterate_batches(split, 8, True, gen) for v in x[:, 0, 0, 0]]

    assert order(3) == order(3) and order(3) != order(4)
    plain = [int(v) for x, _ in iterate_batches(split, 8) for v in x[:, 0, 0, 0]]
    assert plain == list(range(40))
    with pytest.raises(ValueError, match="Generator"):
        next(iterate_batches(split, 8, shuffle=True))
    with pytest.raises(UserError):
        num_batches(split, 0)


def test_registry_names_and_unknown_name() -> None:
    assert set(DATASETS.names()) >= {"fashion-mnist", "cifar10", "imagefolder"}
    assert DEFAULT_DATASET == "fashion-mnist"
    with pytest.raises(UnknownNameError, match="fashion-mnist"):
        load_dataset("mnist-fashion")


@pytest.mark.parametrize("name", DATASETS.names())
def test_every_dataset_keeps_the_contract(name: str, tiny_roots) -> None:
    assert name in tiny_roots, f"add a tiny on-disk copy of {name!r} to tests/data/conftest.py"
    root = tiny_roots[name]()
    splits = load_dataset(name, root=root, val_fraction=0.2, seed=5)
    info = splits.info
    assert info.name == name
    assert (info.train_size, info.val_size, info.test_size) == tuple(
        len(s) for s in (splits.train, splits.val, splits.test)
    )
    assert info.val_size == round((info.train_size + info.val_size) * 0.2)
    assert len(info.mean) == len(info.std) == info.input_shape[0]
    spec = info.input_spec()
    for split in (splits.train, splits.val, splits.test):
        x, y = next(iterate_batches(split, batch_size=4))
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert tuple(x.shape[1:]) == spec.shape and int(y.max()) < spec.num_classes
    again = load_dataset(name, root=root, val_fraction=0.2, seed=5)
    assert torch.equal(again.val.labels, splits.val.labels)
    assert torch.equal(
        next(iterate_batches(again.val, 4))[0], next(iterate_batches(splits.val, 4))[0]
    )
    limited = load_dataset(name, root=root, val_fraction=0.2, seed=5, limit_train=3)
    assert limited.info.train_size == 3 and limited.info.val_size == info.val_size
    with pytest.raises(UserError):
        load_dataset(name, root=root, val_fraction=1.5)
