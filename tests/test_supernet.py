"""Supernet training and evaluation on a real (small) slice of Fashion-MNIST."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from factory.spaces import get_space
from factory.supernet import (
    SupernetTrainConfig,
    accuracy,
    evaluate_genotype,
    make_optimizer,
    recalibrate_bn,
    train_epoch,
)


def _batches(n: int = 512, batch: int = 64, seed: int = 0):
    """Synthetic but learnable data: the class is encoded in which quadrant is bright."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (n,), generator=gen)
    x = torch.randn(n, 1, 28, 28, generator=gen) * 0.3
    for k in range(4):
        r, c = divmod(k, 2)
        x[y == k, :, r * 14 : (r + 1) * 14, c * 14 : (c + 1) * 14] += 1.5
    return [(x[i : i + batch], y[i : i + batch]) for i in range(0, n, batch)]


def test_training_a_path_learns_and_evaluation_recalibrates() -> None:
    torch.manual_seed(0)
    space = get_space("shufflenet")
    supernet = space.supernet()
    cfg = SupernetTrainConfig(lr=0.02)
    opt = make_optimizer(supernet, cfg)
    rng = np.random.default_rng(0)
    data = _batches(n=256, batch=32)
    g = space.manual()["shufflenet_g3"]
    stats = [train_epoch(space, supernet, data, opt, cfg, rng, [g]) for _ in range(4)]
    assert stats[0].steps == len(data) and stats[0].images == 256
    assert stats[-1].loss < 0.5 < stats[0].loss
    acc = evaluate_genotype(supernet, g, data, data, calib_steps=4)
    assert acc > 0.9  # 4 classes: chance is 0.25
    assert not supernet.training


def test_uniform_sampling_uses_many_paths() -> None:
    space = get_space("vgg")
    supernet = space.supernet()
    used: list[tuple[int, ...]] = []
    original = supernet.forward

    def spy(x, g):
        used.append(g)
        return original(x, g)

    supernet.forward = spy  # type: ignore[method-assign]
    cfg = SupernetTrainConfig()
    rng = np.random.default_rng(0)
    data = _batches(n=128, batch=16)
    stats = train_epoch(space, supernet, data, make_optimizer(supernet, cfg), cfg, rng)
    assert len(set(used)) == len(used) == 8 and np.isfinite(stats.loss)


def test_population_training_sums_b_paths_per_batch() -> None:
    space = get_space("shufflenet")
    supernet = space.supernet()
    rng = np.random.default_rng(1)
    population = [space.sample(rng) for _ in range(3)]
    used: list[tuple[int, ...]] = []
    original = supernet.forward

    def spy(x, g):
        used.append(g)
        return original(x, g)

    supernet.forward = spy  # type: ignore[method-assign]
    cfg = SupernetTrainConfig(archs_per_batch=2)
    data = _batches(n=128, batch=32)
    stats = train_epoch(space, supernet, data, make_optimizer(supernet, cfg), cfg, rng, population)
    assert stats.steps == 4 and len(used) == 8
    assert set(used) <= set(population)
    for i in range(0, 8, 2):  # the B paths of one batch are distinct members
        assert used[i] != used[i + 1]


def test_recalibration_estimates_batch_statistics() -> None:
    bn = torch.nn.BatchNorm2d(3)
    bn.running_mean.fill_(100.0)
    x = torch.randn(64, 3, 4, 4) + torch.tensor([1.0, 2.0, 3.0]).view(1, 3, 1, 1)
    recalibrate_bn(bn, [bn], [(x[:32], None), (x[32:], None)], num_batches=2)
    torch.testing.assert_close(bn.running_mean, x.mean((0, 2, 3)), atol=1e-5, rtol=1e-5)
    assert bn.momentum == pytest.approx(0.1) and not bn.training


def test_accuracy_counts_correct_predictions() -> None:
    x = torch.eye(4)
    y = torch.tensor([0, 1, 2, 0])
    assert accuracy(lambda t: t, [(x, y)]) == pytest.approx(0.75)


@pytest.mark.parametrize("name", ["mobilenet", "shufflenet"])
def test_sandwich_trains_the_largest_and_smallest_paths_every_batch(name: str) -> None:
    torch.manual_seed(0)
    space = get_space(name)
    largest, smallest = space.extremes()
    supernet = space.supernet()
    cfg = SupernetTrainConfig(lr=0.02, sandwich=True, distill=True)
    opt = make_optimizer(supernet, cfg)
    seen: list[tuple[int, ...]] = []
    forward = supernet.forward
    supernet.forward = lambda x, g: (seen.append(tuple(g)), forward(x, g))[1]
    mid = space.manual()[next(iter(space.manual()))]
    stats = train_epoch(space, supernet, _batches(n=64, batch=32), opt, cfg,
                        np.random.default_rng(0), [mid])  # fmt: skip
    assert seen == [largest, smallest, mid] * 2  # two batches, the anchors first in each
    assert stats.steps == 2 and np.isfinite(stats.loss)


def test_without_a_sandwich_only_the_sampled_paths_train() -> None:
    space = get_space("mobilenet")
    supernet = space.supernet()
    cfg = SupernetTrainConfig(lr=0.02)
    opt = make_optimizer(supernet, cfg)
    narrow = space.manual()["mobilenet_v2@0.35"]
    train_epoch(space, supernet, _batches(n=32, batch=32), opt, cfg, np.random.default_rng(0),
                [narrow])  # fmt: skip
    grad = supernet.stem[0].weight.grad
    assert grad[:16].abs().sum() > 0 and grad[16:].abs().sum() == 0  # only the narrow stem
    cfg = SupernetTrainConfig(lr=0.02, sandwich=True)
    opt.zero_grad()
    train_epoch(space, supernet, _batches(n=32, batch=32), opt, cfg, np.random.default_rng(0),
                [narrow])  # fmt: skip
    assert supernet.stem[0].weight.grad[16:].abs().sum() > 0  # the largest path's channels


def test_uniform_paths_join_a_population_but_not_a_sampler() -> None:
    space = get_space("shufflenet")
    supernet = space.supernet()
    cfg = SupernetTrainConfig(lr=0.02, uniform_paths=1)
    opt = make_optimizer(supernet, cfg)
    seen: list[tuple[int, ...]] = []
    forward = supernet.forward
    supernet.forward = lambda x, g: (seen.append(tuple(g)), forward(x, g))[1]
    member = space.manual()["shufflenet_g3"]
    data = _batches(n=64, batch=32)
    train_epoch(space, supernet, data, opt, cfg, np.random.default_rng(0), [member])
    assert len(seen) == 4 and seen[0] == seen[2] == member
    assert member not in (seen[1], seen[3]) and seen[1] != seen[3]
    seen.clear()
    train_epoch(space, supernet, data, opt, cfg, np.random.default_rng(0), lambda r: member)
    assert seen == [member, member]  # a controller's samples are its own: nothing added
