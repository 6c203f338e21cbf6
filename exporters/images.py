"""What the exporters read from a dataset: a sized set of labelled images handed out by index.

A protocol, so that `exporters` needs nothing from `factory`: `factory.data.Split` is one,
and so is anything with the same three methods.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

from targets.errors import UserError

if TYPE_CHECKING:
    import torch


class LabelledImages(Protocol):
    """Normalised images (N, C, H, W) float32 with int64 labels (N,)."""

    def __len__(self) -> int: ...

    def take(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (B, C, H, W) and labels (B,) at `idx`."""
        ...

    def subset(self, idx: torch.Tensor) -> LabelledImages:
        """The samples at `idx`, as a set of the same kind."""
        ...


def in_order(images: LabelledImages, batch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(images, labels) batches of `batch` in index order; the last one may be smaller."""
    import torch

    if batch < 1:
        raise UserError(f"batch size must be at least 1, got {batch}")
    n = len(images)
    for start in range(0, n, batch):
        yield images.take(torch.arange(start, min(start + batch, n)))
