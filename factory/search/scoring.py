"""Scoring a candidate's accuracy with inherited weights, packaged so that it can run away
from the driver: a `Scorer` holds everything but the shared weights (space, validation and
calibration images, settings) and pickles, so a Ray worker rebuilds the supernet from it once
and then only needs each generation's weights."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from factory.data import Split, TensorSplit, iterate_batches
from factory.spaces.base import Genotype, InputSpec, SearchSpace, Supernet
from factory.supernet import evaluate_genotype, finetune_path

FINETUNE_SEED = 0  # one batch order for every candidate's fine-tuning: a fair comparison


@dataclass(frozen=True)
class EvalSettings:
    """How candidates are trained and scored during search."""

    batch_size: int = 64
    eval_batch_size: int = 500
    calib_steps: int = 2  # BN recalibration batches per evaluation
    calib_batch_size: int = 128
    val_size: int | None = 5000  # validation images used to score a candidate (None: all)
    # `evaluate(cheap=True)`, the controller's inner updates: one batch, one recalibration
    # batch (ENAS scores its controller samples on one validation minibatch)
    cheap_val_size: int = 128
    cheap_calib_steps: int = 1
    # `evaluate(finetuned=True)`, the final rescoring (rescore.py): each candidate's path
    # first trains this many batches on its own, from a copy of the shared weights
    finetune_steps: int = 50
    finetune_lr: float = 0.05  # the supernet's own; 0.02 ranked a little worse (docs/search.md)
    # and scores it on this many images: val_size's, then spare training images (None: those)
    finetune_val_size: int | None = None


@dataclass(frozen=True)
class Scorer:
    """Validation accuracy of a genotype after BN recalibration on its path."""

    space: str
    spec: InputSpec
    val: Split  # the images that score a candidate
    calib: Split  # the first calib_steps x calib_batch_size training images
    settings: EvalSettings
    options: dict[str, str] = field(default_factory=dict)
    tune: Split | None = None  # set by `finetuned`: the images a path trains on first

    @classmethod
    def of(
        cls, space: SearchSpace, options: dict[str, str], train: Split, val: Split, s: EvalSettings
    ) -> Scorer:
        """The scorer of a run: val cut to `s.val_size`, calibration to what it reads."""
        if s.val_size is not None and s.val_size < len(val):
            val = val.subset(torch.arange(s.val_size))
        calib = train.subset(torch.arange(min(len(train), s.calib_steps * s.calib_batch_size)))
        return cls(space.name, space.spec, val, calib, s, dict(options))

    def cheapened(self) -> Scorer:
        """The scorer of a controller's inner updates: `cheap_val_size` images and
        `cheap_calib_steps` recalibration batches."""
        s = self.settings
        val = self.val.subset(torch.arange(min(s.cheap_val_size, len(self.val))))
        return replace(self, val=val, settings=replace(s, calib_steps=s.cheap_calib_steps))

    def finetuned(self, train: Split, spare: Split | None = None) -> Scorer:
        """The scorer of the final rescoring: every candidate's path first trains
        `finetune_steps` batches of `train` on its own (the same batches for every one),
        then is scored on `finetune_val_size` images: this scorer's, then `spare`'s."""
        n = self.settings.finetune_val_size
        if n is None:
            return replace(self, tune=train)
        xs: list[torch.Tensor] = []
        ys: list[torch.Tensor] = []
        for split in [self.val] if spare is None else [self.val, spare]:
            k = min(len(split), n - sum(len(y) for y in ys))
            if k > 0:
                x, y = split.take(torch.arange(k))
                xs.append(x)
                ys.append(y)
        return replace(self, tune=train, val=TensorSplit(torch.cat(xs), torch.cat(ys)))

    def build_supernet(self) -> Supernet:
        """A fresh supernet of the space, laid out as the run's (channels-last)."""
        from factory.spaces import get_space

        net = get_space(self.space, self.spec, self.options).supernet()
        return net.to(memory_format=torch.channels_last)

    def score(self, net: Supernet, g: Genotype, device: torch.device) -> float:
        """Accuracy in [0, 1]; recalibrates (so changes) `net`'s BatchNorm statistics.
        A fine-tuning scorer trains and scores a copy; `net`'s weights stay as they were."""
        s = self.settings
        if self.tune is not None and s.finetune_steps > 0:
            order = torch.Generator().manual_seed(FINETUNE_SEED)
            batches = endless_batches(self.tune, s.batch_size, order)
            net = finetune_path(net, g, prepared(device, batches), s.finetune_steps, s.finetune_lr)
        return evaluate_genotype(
            net,
            g,
            prepared(device, iterate_batches(self.val, s.eval_batch_size)),
            prepared(device, iterate_batches(self.calib, s.calib_batch_size)),
            s.calib_steps,
        )


def weights_of(net: Supernet) -> dict[str, np.ndarray]:
    """The shared weights (and BN buffers) as contiguous numpy arrays: Ray's object store
    hands them to every worker of a node without a copy."""
    return {k: v.detach().cpu().contiguous().numpy() for k, v in net.state_dict().items()}


def load_weights(net: Supernet, weights: dict[str, np.ndarray]) -> None:
    """`weights_of`'s arrays into `net` (copied: object-store arrays are read-only)."""
    net.load_state_dict({k: torch.tensor(np.array(v)) for k, v in weights.items()})


def prepared(
    device: torch.device, batches: Iterator[tuple[torch.Tensor, torch.Tensor]]
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches on the supernet's device, images channels-last."""
    for x, y in batches:
        x = x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        yield x, y.to(device, non_blocking=True)


def endless_batches(
    split: Split, batch_size: int, order: torch.Generator
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Shuffled batches of `split`, pass after pass (full ones where the split allows): the
    supernet's training stream and each rescored candidate's fine-tuning."""
    if len(split) == 0:
        raise ValueError("no images to fine-tune on")
    full = len(split) >= batch_size
    while True:
        yield from iterate_batches(split, batch_size, shuffle=True, generator=order, drop_last=full)
