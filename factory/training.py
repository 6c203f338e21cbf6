"""Training one network from scratch (or fine-tuning it) on a run's full training split.

The recipe is the usual one for small CNNs: SGD with Nesterov momentum, weight decay on
weights only (decaying BatchNorm scales and biases only hurts), a per-step cosine schedule
after a short linear warm-up, label smoothing 0.1, and the standard flip + padded random
crop (`factory.augment`: batched tensor ops on the normalised tensors, a few milliseconds
per batch, no PIL). Nothing is written here: the caller saves the
result atomically, so an interrupted run leaves no half-written file.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from rich.progress import Progress, TaskID
from torch import nn

from factory.augment import augment_batch, augment_for
from factory.data import DataSplits, Split, iterate_batches
from targets.errors import UserError


@dataclass(frozen=True)
class TrainRecipe:
    """How a network is trained; saved in train.json so a result can be reproduced."""

    epochs: float = 5.0  # fractional: the last epoch stops part-way
    batch_size: int = 128
    lr: float = 0.1  # peak learning rate for batch 128; scale it with the batch size
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4  # on conv/linear weights only
    warmup_epochs: float = 0.5  # linear warm-up, at most a fifth of all steps
    label_smoothing: float = 0.1
    crop_padding: int | None = None  # None: 2 px for grey images, H/8 for colour
    hflip: bool = True
    erase_p: float = 0.0  # random erasing probability per image (helps long schedules)
    eval_batch_size: int = 512
    channels_last: bool = True  # ~1.6x faster grouped/depthwise convs on x86 CPUs

    def __post_init__(self) -> None:
        if not self.epochs > 0:
            raise UserError(f"epochs must be positive, got {self.epochs}")
        if self.batch_size < 1 or self.eval_batch_size < 1:
            raise UserError(f"batch size must be at least 1, got {self.batch_size}")
        if not self.lr > 0:
            raise UserError(f"learning rate must be positive, got {self.lr}")
        if not 0.0 <= self.erase_p <= 1.0:
            raise UserError(f"erase probability must be in [0, 1], got {self.erase_p}")
        if self.warmup_epochs < 0 or not 0.0 <= self.label_smoothing < 1.0:
            raise UserError("warm-up must be >= 0 epochs and label smoothing in [0, 1)")
        if self.crop_padding is not None and self.crop_padding < 0:
            raise UserError(f"crop padding must be >= 0, got {self.crop_padding}")

    def to_dict(self) -> dict[str, float | int | bool | None]:
        return asdict(self)


@dataclass(frozen=True)
class EvalResult:
    accuracy: float  # fraction correct, in [0, 1]
    loss: float  # mean cross-entropy without label smoothing
    images: int


@dataclass(frozen=True)
class EpochRecord:
    """One pass over the training images (the last may be partial: `epoch` is fractional)."""

    epoch: float
    train_loss: float  # with label smoothing, as optimised
    train_accuracy: float  # on the augmented images
    val_loss: float
    val_accuracy: float
    lr: float  # at the epoch's last step
    seconds: float  # training and validation of this epoch


@dataclass(frozen=True)
class TrainResult:
    history: tuple[EpochRecord, ...]
    test: EvalResult
    train_images: int
    steps: int
    seconds: float  # whole training, validation included, test evaluation excluded

    def history_dicts(self) -> list[dict[str, float]]:
        return [asdict(r) for r in self.history]


def lr_at(step: int, total_steps: int, warmup_steps: int, base_lr: float) -> float:
    """Linear warm-up to base_lr over warmup_steps, then cosine decay towards 0 at total."""
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    span = max(total_steps - warmup_steps, 1)
    return 0.5 * base_lr * (1.0 + math.cos(math.pi * (step - warmup_steps) / span))


def make_optimizer(model: nn.Module, recipe: TrainRecipe) -> torch.optim.SGD:
    """SGD with weight decay on conv/linear weights, none on BatchNorm parameters and biases."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    return torch.optim.SGD(
        [
            {"params": decay, "weight_decay": recipe.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=recipe.lr,
        momentum=recipe.momentum,
        nesterov=recipe.nesterov and recipe.momentum > 0,
    )


@contextmanager
def seeded_torch(seed: int) -> Iterator[None]:
    """Torch's global RNG (weight init, dropout) seeded inside, restored afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def build_seeded(build: Callable[[], nn.Module], seed: int) -> nn.Module:
    """A freshly initialised model whose initial weights depend only on `seed`."""
    with seeded_torch(seed):
        return build()


def _layout(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


@contextmanager
def _channels_last(model: nn.Module, enabled: bool) -> Iterator[None]:
    """The model's weights in channels_last inside (if enabled), NCHW again afterwards: the
    layout exporters and users expect. Activations follow the weights' layout."""
    if enabled:
        model.to(memory_format=torch.channels_last)
    try:
        yield
    finally:
        if enabled:
            model.to(memory_format=torch.contiguous_format)


def resolve_device(name: str) -> torch.device:
    """`auto` (a CUDA GPU when torch sees one, else the CPU), `cpu`, `cuda` or `cuda:N`."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}; use auto, cpu or cuda[:N]") from None
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"unknown device {name!r}; use auto, cpu or cuda[:N]")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name!r} asked for, but torch sees no CUDA GPU here")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise UserError(f"device {name!r} asked for, but there are {torch.cuda.device_count()}")
    return device


def device_name(device: torch.device) -> str:
    """`cpu`, or the GPU's name: how long a training took depends on it."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


@torch.no_grad()
def evaluate(
    model: nn.Module,
    split: Split,
    batch_size: int = 512,
    channels_last: bool = True,
) -> EvalResult:
    """Accuracy and mean cross-entropy of model (put in eval mode) over a whole split,
    computed where the model's weights are (CPU or GPU)."""
    model.eval()
    device = next(model.parameters()).device
    correct, loss_sum, seen = 0, 0.0, 0
    with _channels_last(model, channels_last):
        for x, y in iterate_batches(split, batch_size):
            x, y = x.to(device), y.to(device)
            logits = model(_layout(x, channels_last))
            loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
    if seen == 0:
        return EvalResult(0.0, float("nan"), 0)
    return EvalResult(correct / seen, loss_sum / seen, seen)


SYNC_STEPS = 20  # training steps between reads of the running loss


@dataclass(frozen=True)
class _Schedule:
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int
    drop_last: bool


def _schedule(recipe: TrainRecipe, train_images: int) -> _Schedule:
    if train_images < 1:
        raise UserError("the training split is empty")
    # a last short batch gives BatchNorm noisy statistics; drop it when there is a full one
    drop_last = train_images > recipe.batch_size
    per_epoch = train_images // recipe.batch_size if drop_last else 1
    total = max(1, round(recipe.epochs * per_epoch))
    warmup = min(round(recipe.warmup_epochs * per_epoch), total // 5)
    return _Schedule(per_epoch, total, warmup, drop_last)


def train_model(
    model: nn.Module,
    data: DataSplits,
    recipe: TrainRecipe,
    generator: torch.Generator,
    progress: Progress | None = None,
    label: str = "train",
    device: torch.device | None = None,
) -> TrainResult:
    """Train `model` in place on data.train, validate each epoch on data.val, then test once
    on data.test. `generator` draws the batch order, the augmentation and (through a seed
    for torch's global RNG) dropout, so the same generator state gives the same weights.
    On a GPU `device` the model trains there and comes back to the CPU at the end."""
    device = device or torch.device("cpu")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: pick the fastest conv kernels
    model.to(device)
    loop = _Loop(model, data, recipe, generator, _schedule(recipe, len(data.train)))
    epochs = math.ceil(loop.sched.total_steps / loop.sched.steps_per_epoch)
    if progress is not None:
        loop.progress = progress
        loop.task = progress.add_task(label, total=loop.sched.total_steps, status="")
    history: list[EpochRecord] = []
    start = time.perf_counter()
    global_seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    try:
        with seeded_torch(global_seed):
            for epoch in range(epochs):
                if progress is not None and loop.task is not None:
                    progress.update(loop.task, description=f"{label} epoch {epoch + 1}/{epochs}")
                history.append(loop.epoch(epoch))
        seconds = time.perf_counter() - start
    finally:
        if progress is not None and loop.task is not None:
            progress.remove_task(loop.task)
    test = evaluate(model, data.test, recipe.eval_batch_size, recipe.channels_last)
    model.to("cpu")
    return TrainResult(tuple(history), test, len(data.train), loop.step, seconds)


class _Loop:
    """The state one training run carries from step to step."""

    def __init__(
        self,
        model: nn.Module,
        data: DataSplits,
        recipe: TrainRecipe,
        generator: torch.Generator,
        sched: _Schedule,
    ) -> None:
        self.model, self.data, self.recipe, self.generator = model, data, recipe, generator
        self.sched = sched
        self.aug = augment_for(recipe, data.info)
        self.optimizer = make_optimizer(model, recipe)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
        self.progress: Progress | None = None
        self.task: TaskID | None = None
        self.step = 0

    def epoch(self, index: int) -> EpochRecord:
        """Up to one pass over the training split (it stops at the last scheduled step),
        then the validation split. Loss and hits add up where the model lives and are read
        back every SYNC_STEPS steps: a read per step would stall a GPU on every batch."""
        start = time.perf_counter()
        self.model.train()
        device = next(self.model.parameters()).device
        sums = torch.zeros(2, dtype=torch.float64, device=device)  # loss * images, hits
        seen, steps, lr, shown = 0, 0, 0.0, 0
        batches = iterate_batches(
            self.data.train, self.recipe.batch_size, True, self.generator, self.sched.drop_last
        )
        with _channels_last(self.model, self.recipe.channels_last):
            for x, y in batches:
                if self.step >= self.sched.total_steps:
                    break
                lr = lr_at(
                    self.step, self.sched.total_steps, self.sched.warmup_steps, self.recipe.lr
                )
                sums += self._train_step(x.to(device), y.to(device), lr)
                steps, seen = steps + 1, seen + len(y)
                if steps % SYNC_STEPS == 0:
                    self._report(sums, seen, advance=steps - shown)
                    shown = steps
            loss_sum, correct = self._checked(sums)
            if self.progress is not None and self.task is not None:
                self.progress.update(self.task, advance=steps - shown)
        val = evaluate(
            self.model, self.data.val, self.recipe.eval_batch_size, self.recipe.channels_last
        )
        return EpochRecord(
            epoch=round(index + steps / self.sched.steps_per_epoch, 4),
            train_loss=loss_sum / max(seen, 1),
            train_accuracy=correct / max(seen, 1),
            val_loss=val.loss,
            val_accuracy=val.accuracy,
            lr=lr,
            seconds=time.perf_counter() - start,
        )

    def _checked(self, sums: torch.Tensor) -> tuple[float, int]:
        """(loss sum, hits) read back, or a clear error once the loss stopped being finite."""
        loss_sum, hits = sums.tolist()
        if not math.isfinite(loss_sum):
            raise UserError(f"training diverged (loss {loss_sum} by step {self.step}); lower --lr")
        return loss_sum, int(hits)

    def _report(self, sums: torch.Tensor, seen: int, advance: int) -> None:
        """Check the running sums and show them, moving the bar on by `advance` steps."""
        loss_sum, correct = self._checked(sums)
        if self.progress is not None and self.task is not None:
            status = f"loss {loss_sum / seen:.3f} acc {100 * correct / seen:.1f}%"
            self.progress.update(self.task, advance=advance, status=status)

    def _train_step(self, x: torch.Tensor, y: torch.Tensor, lr: float) -> torch.Tensor:
        """One SGD step on an augmented batch: (its loss * images, its correct predictions),
        left on the model's device."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        x = _layout(augment_batch(x, self.aug, self.generator), self.recipe.channels_last)
        self.optimizer.zero_grad(set_to_none=True)
        logits = self.model(x)
        loss = self.criterion(logits, y)
        loss.backward()
        self.optimizer.step()
        self.step += 1
        hits = (logits.argmax(1) == y).sum()
        return torch.stack([loss.detach().double() * len(y), hits.double()])


def limit_splits(data: DataSplits, train_images: int | None, eval_images: int | None) -> DataSplits:
    """The first `train_images` training and `eval_images` val/test images, for quick trials
    and tests; None keeps a split whole. The built-in datasets' file order mixes classes,
    so the first images are a fair sample (and the same ones every time)."""

    def first(split: Split, n: int | None) -> Split:
        if n is None or n >= len(split):
            return split
        if n < 1:
            raise UserError(f"an image limit must be at least 1, got {n}")
        return split.subset(torch.arange(n))

    train, val = first(data.train, train_images), first(data.val, eval_images)
    test = first(data.test, eval_images)
    sizes = {"train_size": len(train), "val_size": len(val), "test_size": len(test)}
    return DataSplits(replace(data.info, **sizes), train, val, test)
