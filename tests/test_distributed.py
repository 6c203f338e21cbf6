"""Data-parallel supernet training with real torch.distributed (gloo, 2 processes on the
CPU): after a few steps the weights equal one process trained on the combined batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from factory.distributed import DistContext
from factory.spaces import get_space
from factory.supernet import SupernetTrainConfig, make_optimizer, train_epoch
from tests.agent_process import free_port

STEPS, BATCH = 3, 16  # the combined batch; each of the 2 ranks trains on 8 images
# float32 mobilenet on noise is chaotic: one process with 1 vs 2 threads already differs by
# 2e-4 after a step (a near-constant BN channel amplifies rounding). float64 tests the
# arithmetic there; shufflenet shows it holds in float32 too.
DTYPES = {"shufflenet": torch.float32, "mobilenet": torch.float64}


def _batches(dtype: torch.dtype) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(7)
    return [
        (
            torch.randn(BATCH, 1, 28, 28, generator=gen, dtype=dtype),
            torch.randint(0, 10, (BATCH,), generator=gen),
        )
        for _ in range(STEPS)
    ]


def _train(space_name: str, archs: int, ctx: DistContext | None) -> dict[str, torch.Tensor]:
    """STEPS steps from the same initial weights and path stream; ctx None: one process."""
    space = get_space(space_name)
    dtype = DTYPES[space_name]
    torch.manual_seed(0)
    net = space.supernet().to(dtype)
    cfg = SupernetTrainConfig(lr=0.05, archs_per_batch=archs, sandwich=archs > 1)
    optimizer = make_optimizer(net, cfg)
    batches = _batches(dtype)
    model = net
    if ctx is not None:
        batches = [ctx.shard(x, y) for x, y in batches]
        model = ctx.wrap(net)
    rng = np.random.default_rng(3)  # the paths: the same stream on every rank
    train_epoch(space, model, batches, optimizer, cfg, rng)
    return {k: v.detach().clone() for k, v in net.named_parameters()}


def _rank(rank: int, port: int, space_name: str, archs: int, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        ctx = DistContext(rank, 2, torch.device("cpu"), dist.new_group())
        weights = _train(space_name, archs, ctx)
        torch.save(weights, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize(("space_name", "archs"), [("shufflenet", 2), ("mobilenet", 1)])
def test_two_gloo_ranks_train_what_one_process_trains_on_the_combined_batch(
    tmp_path: Path, space_name: str, archs: int
) -> None:
    mp.spawn(_rank, args=(free_port(), space_name, archs, str(tmp_path)), nprocs=2, join=True)
    single = _train(space_name, archs, None)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    initial, moved = _initial(space_name), 0
    for name, expected in single.items():
        for weights in ranks:
            torch.testing.assert_close(weights[name], expected, atol=1e-5, rtol=0)
        moved += int(not torch.equal(expected, initial[name].to(expected.dtype)))
    assert moved > 10  # the steps really trained something


def _initial(space_name: str) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return dict(get_space(space_name).supernet().named_parameters())
