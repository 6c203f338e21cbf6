"""Class-per-folder images: inferred size and channels, resizing, the carved test split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from datafiles import write_images

from factory.data import iterate_batches, load_dataset
from factory.data.imagefolder import carve_test
from targets.errors import UserError

CLASSES = {"cat": 6, "dog": 5, "owl": 4}


def _all(split) -> tuple[torch.Tensor, torch.Tensor]:
    return split.take(torch.arange(len(split)))


def test_grey_images_infer_size_and_one_channel(tmp_path: Path) -> None:
    write_images(tmp_path, CLASSES, size_wh=(8, 6), mode="L")
    splits = load_dataset("imagefolder", root=tmp_path, val_fraction=0.2, seed=0)
    info = splits.info
    assert info.input_shape == (1, 6, 8) and info.class_names == ("cat", "dog", "owl")
    # 20% of each class goes to test: 1 + 1 + 1; the remaining 12 are split 10/2
    assert (info.train_size, info.val_size, info.test_size) == (10, 2, 3)
    x, y = _all(splits.train)
    assert x.shape == (10, 1, 6, 8) and x.dtype == torch.float32 and int(y.max()) <= 2
    assert info.input_spec().num_classes == 3


def test_rgb_images_give_three_channels_and_pixels_round_trip(tmp_path: Path) -> None:
    write_images(tmp_path, CLASSES, size_wh=(5, 5), mode="RGB")
    splits = load_dataset("imagefolder", root=tmp_path, val_fraction=0.0)
    assert splits.info.input_shape == (3, 5, 5) and len(splits.info.mean) == 3
    x, y = _all(splits.test)
    mean = torch.tensor(splits.info.mean).view(3, 1, 1)
    std = torch.tensor(splits.info.std).view(3, 1, 1)
    pixels = (x * std + mean) * 255
    # write_images paints class c, image i in (20c, 7i, 100)
    assert torch.allclose(pixels[:, 0, 0, 0], 20.0 * y.float(), atol=1e-3)
    assert torch.allclose(pixels[:, 2], torch.full_like(pixels[:, 2], 100.0), atol=1e-3)


def test_normalised_pool_has_zero_mean_unit_std(tmp_path: Path) -> None:
    write_images(tmp_path, CLASSES, size_wh=(4, 4), mode="L")
    splits = load_dataset("imagefolder", root=tmp_path, val_fraction=0.0)
    x, _ = _all(splits.train)
    assert float(x.mean()) == pytest.approx(0.0, abs=1e-5)
    assert float(x.std(unbiased=False)) == pytest.approx(1.0, abs=1e-4)


def test_explicit_size_resizes_every_image(tmp_path: Path) -> None:
    write_images(tmp_path, {"a": 3}, size_wh=(8, 8), mode="L")
    write_images(tmp_path, {"b": 3}, size_wh=(20, 10), mode="L")  # mixed sizes on disk
    splits = load_dataset("imagefolder", root=tmp_path, image_size=(12, 7), val_fraction=0.0)
    assert splits.info.input_shape == (1, 12, 7)
    for x, _ in iterate_batches(splits.train, batch_size=3):
        assert x.shape[1:] == (1, 12, 7)
    inferred = load_dataset("imagefolder", root=tmp_path, val_fraction=0.0)
    assert inferred.info.input_shape == (1, 8, 8)  # the first image's size


def test_train_and_test_folders_are_used_as_given(tmp_path: Path) -> None:
    write_images(tmp_path / "train", CLASSES, size_wh=(6, 6), mode="L")
    write_images(tmp_path / "test", {"cat": 2, "dog": 2, "owl": 2}, size_wh=(6, 6), mode="L")
    splits = load_dataset("imagefolder", root=tmp_path, val_fraction=0.2)
    assert (splits.info.train_size, splits.info.val_size, splits.info.test_size) == (12, 3, 6)
    assert all(p.startswith(str(tmp_path / "test")) for p in splits.test.paths)
    assert not set(splits.train.paths) & set(splits.test.paths)


def test_carved_test_split_ignores_the_run_seed(tmp_path: Path) -> None:
    write_images(tmp_path, CLASSES, size_wh=(4, 4), mode="L")
    a = load_dataset("imagefolder", root=tmp_path, seed=0, val_fraction=0.2)
    b = load_dataset("imagefolder", root=tmp_path, seed=7, val_fraction=0.2)
    assert a.test.paths == b.test.paths
    assert a.val.paths != b.val.paths  # while validation follows the seed
    for s in (a, b):
        used = s.train.paths + s.val.paths
        assert len(set(used)) == len(used) and not set(used) & set(s.test.paths)
        assert sorted(s.test.labels.tolist()) == [0, 1, 2]  # every class is tested


def test_carve_test_keeps_single_image_classes_for_training() -> None:
    labels = torch.tensor([0, 1, 1, 1, 1, 1, 2, 2])
    pool, test = carve_test(labels)
    assert np.array_equal(np.sort(np.concatenate([pool, test])), np.arange(8))
    assert 0 in pool and sorted(labels[test].tolist()) == [1, 2]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: None, "does not exist"),
        (lambda root: root.mkdir(), "class-per-folder"),
        (lambda root: (root / "cat").mkdir(parents=True), "class-per-folder"),
    ],
)
def test_unusable_folders_are_user_errors(tmp_path: Path, make, message: str) -> None:
    root = tmp_path / "imgs"
    make(root)
    with pytest.raises(UserError, match=message):
        load_dataset("imagefolder", root=root)


def test_mismatched_test_classes_and_missing_root(tmp_path: Path) -> None:
    write_images(tmp_path / "train", {"cat": 2, "dog": 2}, size_wh=(4, 4), mode="L")
    write_images(tmp_path / "test", {"cat": 2, "emu": 2}, size_wh=(4, 4), mode="L")
    with pytest.raises(UserError, match="differ"):
        load_dataset("imagefolder", root=tmp_path)
    with pytest.raises(UserError, match="needs a data root"):
        load_dataset("imagefolder")


def test_corrupt_image_names_the_file(tmp_path: Path) -> None:
    write_images(tmp_path, CLASSES, size_wh=(4, 4), mode="L")
    bad = tmp_path / "owl" / "003.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(UserError, match=r"003\.png"):  # at load (stats) or at first batch
        splits = load_dataset("imagefolder", root=tmp_path, val_fraction=0.0)
        for split in (splits.train, splits.test):
            _all(split)
