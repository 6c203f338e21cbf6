"""Data-parallel supernet training with torch.distributed (`torchrun --nproc-per-node N -m
factory search ...`).

Every rank runs the same strategy on the same random streams, so every rank draws the same
path(s) for a step; each trains on its slice of the step's batch and DDP averages the
gradients (`find_unused_parameters=True`: a single path leaves most weights unused, which
`static_graph` cannot express). BatchNorm statistics are taken over the whole batch across
ranks, so N ranks train exactly what one process would on the combined batch. Rank 0 alone
scores candidates, writes the run's database and checkpoints, and broadcasts what the
strategy needs, so the ranks never drift apart.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.overrides import TorchFunctionMode

from targets.errors import UserError

T = TypeVar("T")
# rank 0 scores a whole generation while the others wait in a broadcast: allow hours
COLLECTIVE_TIMEOUT = timedelta(hours=12)


@dataclass
class DistContext:
    """This process's place in a torch.distributed job."""

    rank: int
    world: int
    device: torch.device
    bn_group: Any  # a process group of its own for BatchNorm statistics

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def from_main(self, fn: Callable[[], T]) -> T:
        """fn() run on rank 0 and its result (or its UserError) given to every rank."""
        box: list[Any] = [None]
        if self.is_main:
            try:
                box[0] = ("ok", fn())
            except UserError as exc:
                box[0] = ("error", str(exc))
        dist.broadcast_object_list(box, src=0, device=self._object_device())
        status, value = box[0]
        if status == "error":
            raise UserError(value)
        return value

    def mean(self, value: float) -> float:
        """The mean of a float over the ranks (the same on every rank)."""
        t = torch.tensor([value], dtype=torch.float64, device=self._object_device())
        dist.all_reduce(t)
        return float(t.item()) / self.world

    def check_same_stream(self, rng: np.random.Generator, what: str) -> None:
        """Refuse to go on when the ranks' random streams differ: their paths would too."""
        state = repr(rng.bit_generator.state).encode()
        digest = int.from_bytes(hashlib.sha256(state).digest()[:7], "big")
        mine = torch.tensor([digest], dtype=torch.int64, device=self._object_device())
        first = mine.clone()
        dist.broadcast(first, src=0)
        if int(first.item()) != digest:
            raise RuntimeError(f"rank {self.rank}: random stream differs from rank 0's at {what}")

    def shard(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's contiguous slice of a batch (the batch size divides by the ranks)."""
        return x.chunk(self.world)[self.rank], y.chunk(self.world)[self.rank]

    def wrap(self, net: nn.Module) -> nn.Module:
        """`net` for training: DDP over a module whose BatchNorms sync across ranks."""
        ids = [self.device.index] if self.device.type == "cuda" else None
        # channels-last depthwise weights (C_in = 1) have two equivalent stride patterns;
        # DDP notices the grads' and warns of a slow copy that costs nothing here
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view")
        return DistributedDataParallel(
            _SyncedBatchNorms(net, self.bn_group, self.world),
            device_ids=ids,
            find_unused_parameters=True,
            forward_sync_buffers=False,  # batch statistics train; rank 0 recalibrates its own
        )

    def _object_device(self) -> torch.device:
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")


def from_env(device: torch.device) -> DistContext | None:
    """Join the job torchrun describes in the environment (None: not under torchrun, or one
    process). On GPUs each rank takes the GPU of its LOCAL_RANK and NCCL; on CPUs, gloo."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    if "MASTER_ADDR" not in os.environ or "RANK" not in os.environ:
        raise UserError(
            "WORLD_SIZE > 1 without RANK/MASTER_ADDR: start data-parallel runs with torchrun"
        )
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=COLLECTIVE_TIMEOUT)
    return DistContext(dist.get_rank(), dist.get_world_size(), device, dist.new_group())


def close(ctx: DistContext | None) -> None:
    if ctx is not None and dist.is_initialized():
        dist.destroy_process_group()


class _SyncedBatchNorms(nn.Module):
    """Runs `net` with every training-mode batch norm (modules and the functional ones of
    elastic spaces alike) normalising over all ranks' images. torch's SyncBatchNorm does
    the same for modules on GPUs only; this works on CPUs (gloo) and GPUs."""

    def __init__(self, net: nn.Module, group: Any, world: int) -> None:
        super().__init__()
        self.net, self.group, self.world = net, group, world

    def forward(self, x: torch.Tensor, g: Any) -> torch.Tensor:
        with _SyncBatchNormMode(self.group, self.world):
            return self.net(x, g)


class _SyncBatchNormMode(TorchFunctionMode):
    """Intercepts `F.batch_norm` in training mode; everything else runs unchanged."""

    def __init__(self, group: Any, world: int) -> None:
        super().__init__()
        self.group, self.world = group, world

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.batch_norm:
            params = _bn_params(*args, **kwargs)
            if params["training"]:
                return synced_batch_norm(**params, group=self.group, world=self.world)
        return func(*args, **kwargs)


def _bn_params(
    input: torch.Tensor,
    running_mean: torch.Tensor | None,
    running_var: torch.Tensor | None,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> dict[str, Any]:
    return dict(x=input, running_mean=running_mean, running_var=running_var, weight=weight,
                bias=bias, training=training, momentum=momentum, eps=eps)  # fmt: skip


def synced_batch_norm(
    x: torch.Tensor,  # (N, C, ...) this rank's slice
    running_mean: torch.Tensor | None,
    running_var: torch.Tensor | None,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    training: bool,
    momentum: float,
    eps: float,
    group: Any,
    world: int,
) -> torch.Tensor:
    """Batch norm over all ranks' images (equal slices): mean, then the centred variance,
    each summed with a differentiable all-reduce, so gradients flow across ranks as they
    would through one big batch."""
    dims = [d for d in range(x.dim()) if d != 1]
    shape = [1, x.shape[1]] + [1] * (x.dim() - 2)
    count = x.numel() // x.shape[1] * world
    mean = _AllReduce.apply(x.sum(dims), group) / count
    centred = x - mean.view(shape)
    var = _AllReduce.apply((centred * centred).sum(dims), group) / count
    y = centred * torch.rsqrt(var + eps).view(shape)
    if weight is not None:
        y = y * weight.view(shape)
    if bias is not None:
        y = y + bias.view(shape)
    if running_mean is not None and running_var is not None:
        with torch.no_grad():  # as F.batch_norm: the unbiased variance feeds the running one
            running_mean.mul_(1 - momentum).add_(mean.detach(), alpha=momentum)
            unbiased = var.detach() * count / max(count - 1, 1)
            running_var.mul_(1 - momentum).add_(unbiased, alpha=momentum)
    return y


class _AllReduce(torch.autograd.Function):
    """A sum over ranks whose gradient is the sum of the ranks' gradients: each rank's
    statistics feed every rank's loss."""

    @staticmethod
    def forward(ctx, t: torch.Tensor, group: Any) -> torch.Tensor:
        ctx.group = group
        out = t.clone()
        dist.all_reduce(out, group=group)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        out = grad.contiguous().clone()
        dist.all_reduce(out, group=ctx.group)
        return out, None
