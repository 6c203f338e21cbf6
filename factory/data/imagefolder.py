"""A user's own images, one sub-folder per class (torchvision's ImageFolder layout).

`root/train/` and `root/test/` are used when present; otherwise the test split is carved off
`root/` with a fixed seed, so it is the same for every run and never used for selection.
Images are decoded per batch (the folder may not fit in memory), resized to one size and
converted to the channel count of the first image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from factory.data.base import DATASETS, ImageSize, Source, Split
from targets.errors import UserError

TEST_FRACTION = 0.2  # of each class, when there is no test/ folder
_TEST_SEED = 20240601  # fixed: the carved test split must not change with the run's seed
_STATS_SAMPLES = 512  # images used for mean/std; evenly spaced so it is deterministic
_GREY_MODES = {"1", "L", "LA", "I", "I;16", "F"}


def _open_image(path: str, mode: str, size: ImageSize) -> np.ndarray:
    """One image as uint8 (C, H, W) in `mode` ("L" or "RGB"), resized to (H, W)."""
    try:
        with Image.open(path) as img:
            img = img.convert(mode)
            if img.size != (size[1], size[0]):  # PIL sizes are (W, H)
                img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            arr = np.asarray(img, dtype=np.uint8)
    except (OSError, UnidentifiedImageError) as err:
        raise UserError(f"cannot read image {path}: {err}") from None
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


class ImageSplit(Split):
    """Image files decoded and normalised when a batch is taken."""

    def __init__(
        self,
        paths: list[str],
        labels: torch.Tensor,
        mode: str,
        size: ImageSize,
        mean: tuple[float, ...] = (0.0,),
        std: tuple[float, ...] = (1.0,),
    ) -> None:
        self.paths, self.labels, self.mode, self.size = paths, labels, mode, size
        self.mean, self.std = mean, std

    @property
    def channels(self) -> int:
        return 1 if self.mode == "L" else 3

    def with_stats(self, mean: tuple[float, ...], std: tuple[float, ...]) -> ImageSplit:
        """The same images, normalised with these per-channel stats."""
        return ImageSplit(self.paths, self.labels, self.mode, self.size, mean, std)

    def pixels(self, i: int) -> np.ndarray:
        """Sample i as uint8 (C, H, W), not normalised."""
        return _open_image(self.paths[i], self.mode, self.size)

    def take(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if len(idx):
            x = torch.from_numpy(np.stack([self.pixels(int(i)) for i in idx])).float()
        else:
            x = torch.empty(0, self.channels, *self.size)
        mean = torch.tensor(self.mean).view(-1, 1, 1) * 255.0
        std = torch.tensor(self.std).view(-1, 1, 1) * 255.0
        return (x - mean) / std, self.labels.index_select(0, idx)

    def subset(self, idx: torch.Tensor) -> ImageSplit:
        paths = [self.paths[int(i)] for i in idx]
        labels = self.labels.index_select(0, idx)
        return ImageSplit(paths, labels, self.mode, self.size, self.mean, self.std)


def scan(folder: Path) -> tuple[list[str], list[str], torch.Tensor]:
    """(class names, image paths, labels) of a class-per-folder directory."""
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    try:
        classes, class_to_idx = find_classes(folder)
        samples = make_dataset(folder, class_to_idx, extensions=IMG_EXTENSIONS)
    except FileNotFoundError as err:
        detail = " ".join(str(err).split())
        raise UserError(f"{folder} is not a class-per-folder image set: {detail}") from None
    labels = torch.tensor([label for _, label in samples], dtype=torch.int64)
    return classes, [path for path, _ in samples], labels


def _infer_format(path: str, image_size: ImageSize | None) -> tuple[str, ImageSize]:
    """("L" or "RGB", (H, W)) from the first image unless a size is given."""
    try:
        with Image.open(path) as img:
            mode = "L" if img.mode in _GREY_MODES else "RGB"
            width, height = img.size
    except (OSError, UnidentifiedImageError) as err:
        raise UserError(f"cannot read image {path}: {err}") from None
    return mode, image_size or (height, width)


def carve_test(labels: torch.Tensor, fraction: float = TEST_FRACTION) -> tuple[np.ndarray, ...]:
    """(pool, test) indices: a fixed-seed share of every class that has two or more images."""
    rng = np.random.default_rng(_TEST_SEED)
    y = labels.numpy()
    test = []
    for c in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == c))
        n_test = max(1, round(len(members) * fraction)) if len(members) >= 2 else 0
        test.extend(members[:n_test].tolist())
    test_idx = np.sort(np.asarray(test, dtype=np.int64))
    return np.setdiff1d(np.arange(len(y)), test_idx), test_idx


def channel_stats(split: ImageSplit) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of pixels in [0, 1] over evenly spaced training images."""
    picks = np.unique(np.linspace(0, len(split) - 1, num=min(len(split), _STATS_SAMPLES)))
    total = total_sq = 0.0
    count = 0
    for i in picks.astype(int):
        px = split.pixels(int(i)).reshape(split.channels, -1) / 255.0
        total, total_sq = total + px.sum(1), total_sq + (px**2).sum(1)
        count += px.shape[1]
    mean = np.asarray(total) / count
    std = np.sqrt(np.maximum(np.asarray(total_sq) / count - mean**2, 0.0)).clip(min=1e-6)
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def open_imagefolder(root: Path, image_size: ImageSize | None = None) -> Source:
    """Read the layout under root; the test split is `root/test/` or carved with a fixed seed."""
    if not root.is_dir():
        raise UserError(f"image folder {root} does not exist")
    has_test = (root / "train").is_dir() and (root / "test").is_dir()
    classes, paths, labels = scan(root / "train" if has_test else root)
    mode, size = _infer_format(paths[0], image_size)
    everything = ImageSplit(paths, labels, mode, size)
    if has_test:
        test_classes, test_paths, test_labels = scan(root / "test")
        if test_classes != classes:
            raise UserError(f"{root}/test classes {test_classes} differ from train's {classes}")
        pool, test = everything, ImageSplit(test_paths, test_labels, mode, size)
    else:
        pool_idx, test_idx = carve_test(labels)
        pool = everything.subset(torch.from_numpy(pool_idx))
        test = everything.subset(torch.from_numpy(test_idx))
    mean, std = channel_stats(pool)
    return Source(
        class_names=tuple(classes),
        input_shape=(pool.channels, *size),
        mean=mean,
        std=std,
        pool=pool.with_stats(mean, std),
        test=test.with_stats(mean, std),
    )


@DATASETS.decorator("imagefolder")
def imagefolder(root: Path | None, download: bool, image_size: ImageSize | None) -> Source:
    """Your own images: root/<class>/*.png, or root/train/<class>/ and root/test/<class>/."""
    if root is None:
        raise UserError(
            "imagefolder needs a data root: pass --data-root DIR, a folder with one sub-folder "
            "per class"
        )
    if download:
        raise UserError("imagefolder reads local images only; drop --download")
    return open_imagefolder(root, image_size)
