"""Training and evaluating the shared weights of a supernet.

Training samples paths uniformly (warm-up) or draws B architectures per batch from a given
population and steps on their summed gradients (CARS eq. 3). Evaluation inherits the shared
weights, recalibrates BatchNorm statistics for the chosen path on a few training batches
(shared running statistics belong to no single path), then measures accuracy.
"""

from __future__ import annotations

import copy
import itertools
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from rich.progress import Progress
from torch import nn

from factory.spaces.base import Genotype, SearchSpace, Supernet

Batches = Callable[[], Iterator[tuple[torch.Tensor, torch.Tensor]]]  # a fresh pass per call


@dataclass(frozen=True)
class SupernetTrainConfig:
    """Optimiser settings for the shared weights (defaults follow CARS: SGD, clip 5)."""

    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 3e-4
    nesterov: bool = True
    grad_clip: float = 5.0
    archs_per_batch: int = 1  # B: architectures whose gradients are summed per batch
    label_smoothing: float = 0.0
    # BigNAS's sandwich rule: the space's largest and smallest paths join every batch, and
    # (distill) every other path learns the largest one's soft predictions
    sandwich: bool = False
    distill: bool = False
    # uniformly sampled paths trained beside a population's in every batch: without them
    # the shared weights follow the population and rank paths outside it badly
    uniform_paths: int = 0


@dataclass(frozen=True)
class EpochStats:
    """What one pass over the training batches did."""

    loss: float  # mean training loss per path and batch
    accuracy: float  # training accuracy of the sampled paths, in [0, 1]
    steps: int
    images: int
    seconds: float

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0


def make_optimizer(supernet: nn.Module, cfg: SupernetTrainConfig) -> torch.optim.SGD:
    """SGD with momentum over all shared weights."""
    return torch.optim.SGD(
        supernet.parameters(),
        lr=cfg.lr,
        momentum=cfg.momentum,
        weight_decay=cfg.weight_decay,
        nesterov=cfg.nesterov and cfg.momentum > 0,
    )


PathSource = Sequence[Genotype] | Callable[[np.random.Generator], Genotype] | None


def _paths(
    space: SearchSpace,
    rng: np.random.Generator,
    count: int,
    population: PathSource,
    cfg: SupernetTrainConfig,
) -> list[Genotype]:
    """B paths for one batch: uniform samples, draws from a sampler (e.g. the RL
    controller), or distinct members of a population plus `cfg.uniform_paths` samples."""
    if callable(population):
        return [population(rng) for _ in range(count)]
    if not population:
        return [space.sample(rng) for _ in range(count)]
    idx = rng.choice(len(population), size=min(count, len(population)), replace=False)
    extra = [space.sample(rng) for _ in range(cfg.uniform_paths)]
    return [population[int(i)] for i in idx] + extra


def train_epoch(
    space: SearchSpace,
    supernet: Supernet,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    cfg: SupernetTrainConfig,
    rng: np.random.Generator,
    population: PathSource = None,
    progress: Progress | None = None,
    total: int | None = None,
) -> EpochStats:
    """One pass over `batches`, stepping on the summed gradients of B paths per batch.

    `population`: None samples paths uniformly (warm-up), a sequence gives B distinct members
    per batch (CARS eq. 3), a callable draws each path (one sampled child per batch, ENAS)."""
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    anchors = sandwich_paths(space) if cfg.sandwich else []
    supernet.train()
    task = progress.add_task("supernet", total=total, status="") if progress else None
    loss_sum, losses, correct, seen, steps, images = 0.0, 0, 0, 0, 0, 0
    start = time.perf_counter()
    for x, y in batches:
        optimizer.zero_grad(set_to_none=True)
        teacher = None
        for g in [*anchors, *_paths(space, rng, cfg.archs_per_batch, population, cfg)]:
            logits = supernet(x, g)
            if teacher is None:
                loss = criterion(logits, y)
                if cfg.distill and anchors:
                    teacher = logits.detach().softmax(1)  # the largest path: first anchor
            else:
                loss = nn.functional.cross_entropy(logits, teacher)
            loss.backward()  # gradients of the paths accumulate: their sum is the step
            loss_sum += loss.item()
            losses += 1
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
        if cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(supernet.parameters(), cfg.grad_clip)
        optimizer.step()
        steps += 1
        images += len(y)
        if progress is not None and task is not None:
            mean_loss = loss_sum / losses
            progress.update(task, advance=1, status=f"loss {mean_loss:.3f}")
    if progress is not None and task is not None:
        progress.remove_task(task)
    return EpochStats(
        loss=loss_sum / max(losses, 1),
        accuracy=correct / max(seen, 1),
        steps=steps,
        images=images,
        seconds=time.perf_counter() - start,
    )


def sandwich_paths(space: SearchSpace) -> list[Genotype]:
    """[largest, smallest] of the space, or [] where it names none."""
    ends = space.extremes()
    return list(ends) if ends is not None else []


@torch.no_grad()
def recalibrate_bn(
    model: Callable[[torch.Tensor], torch.Tensor],
    modules: Iterable[nn.Module],
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    num_batches: int,
) -> None:
    """Reset BatchNorm statistics and re-estimate them as a plain average over `num_batches`."""
    bns = [m for m in modules if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average: every batch weighs the same
        bn.train()
    for i, (x, _) in enumerate(batches):
        if i >= num_batches:
            break
        model(x)
    for bn, momentum in zip(bns, saved, strict=True):
        bn.momentum = momentum
        bn.eval()


@torch.no_grad()
def accuracy(
    model: Callable[[torch.Tensor], torch.Tensor],
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
) -> float:
    """Top-1 accuracy in [0, 1] over all batches."""
    correct, seen = 0, 0
    for x, y in batches:
        correct += int((model(x).argmax(1) == y).sum())
        seen += len(y)
    return correct / max(seen, 1)


def finetune_path(
    supernet: Supernet,
    g: Genotype,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    steps: int,
    lr: float,
) -> Supernet:
    """A copy of `supernet` whose path g trained `steps` more batches on its own.

    Why: one-shot scores rank architectures barely better than chance after a CPU-sized
    supernet training (Kendall tau 0.07-0.30 against training alone); 50 steps on the path
    alone, from the shared weights, lifted it to 0.53-0.76 (docs/search.md). The shared
    weights are left untouched."""
    net = copy.deepcopy(supernet)
    net.train()
    optimizer = make_optimizer(net, SupernetTrainConfig(lr=lr))
    for x, y in itertools.islice(batches, steps):
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(net(x, g), y).backward()
        nn.utils.clip_grad_norm_(net.parameters(), SupernetTrainConfig.grad_clip)
        optimizer.step()
    return net


def evaluate_genotype(
    supernet: Supernet,
    g: Genotype,
    val_batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    calib_batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    calib_steps: int = 10,
) -> float:
    """Validation accuracy of g with inherited weights, after BN recalibration on its path."""
    supernet.eval()  # dropout off; recalibrate_bn switches only the BatchNorm layers to train
    recalibrate_bn(lambda x: supernet(x, g), supernet.modules(), calib_batches, calib_steps)
    supernet.eval()
    return accuracy(lambda x: supernet(x, g), val_batches)
