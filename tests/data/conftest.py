"""Tiny copies of every registered dataset, so each contract test can load all of them.

The real Fashion-MNIST is checked separately in test_fashion_mnist.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from datafiles import write_cifar, write_fashion, write_images


@pytest.fixture
def tiny_roots(tmp_path: Path) -> dict[str, Callable[[], Path]]:
    """Per registered dataset name, a function that writes a tiny copy and returns its root."""

    def fashion() -> Path:
        return write_fashion(tmp_path / "fashion")

    def cifar() -> Path:
        write_cifar(tmp_path / "cifar" / "cifar-10-batches-py")
        return tmp_path / "cifar"

    def images() -> Path:
        write_images(tmp_path / "images", {"cat": 6, "dog": 5, "owl": 4}, (8, 6), "L")
        return tmp_path / "images"

    return {"fashion-mnist": fashion, "cifar10": cifar, "imagefolder": images}
