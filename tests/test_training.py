"""The training recipe on real Fashion-MNIST: augmentation, schedule, optimiser, a short run."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from factory.augment import Augment, augment_batch, augment_for
from factory.data import DataSplits, load_dataset
from factory.training import (
    TrainRecipe,
    build_seeded,
    evaluate,
    limit_splits,
    lr_at,
    make_optimizer,
    train_model,
)
from targets.errors import UserError

FMNIST = Path("/usr/share/datasets/fashion-mnist")
needs_fmnist = pytest.mark.skipif(not FMNIST.exists(), reason="needs dataset-fashion-mnist")


@pytest.fixture(scope="module")
def fmnist() -> DataSplits:
    if not FMNIST.exists():
        pytest.skip("needs dataset-fashion-mnist")
    return load_dataset("fashion-mnist", root=FMNIST, seed=0)


def tiny_cnn() -> nn.Module:
    """Small enough that a few epochs on 1000 images take seconds on one core."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1, bias=False),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    )


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- augmentation --------------------------------------------------------------------------


@needs_fmnist
def test_augment_keeps_shape_dtype_and_is_seeded(fmnist: DataSplits) -> None:
    x, _ = fmnist.train.take(torch.arange(64))
    aug = Augment(padding=2, hflip=True, erase_p=0.5, fill=(-0.8,))
    a, b = augment_batch(x, aug, gen(3)), augment_batch(x, aug, gen(3))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b)
    assert not torch.equal(a, augment_batch(x, aug, gen(4)))
    assert not torch.equal(a, x)


def test_augment_for_follows_the_dataset(fmnist: DataSplits) -> None:
    aug = augment_for(TrainRecipe(), fmnist.info)
    assert aug.padding == 2 and aug.hflip  # grey 28x28
    black = (0.0 - fmnist.info.mean[0]) / fmnist.info.std[0]
    assert aug.fill == pytest.approx((black,))
    colour = type(fmnist.info)(**{**vars(fmnist.info), "input_shape": (3, 32, 32)})
    colour = type(fmnist.info)(**{**vars(colour), "mean": (0.5,) * 3, "std": (0.25,) * 3})
    assert augment_for(TrainRecipe(), colour).padding == 4
    assert augment_for(TrainRecipe(crop_padding=0), colour).padding == 0


def test_crop_is_a_shifted_window_of_the_padded_image() -> None:
    x = torch.arange(2 * 3 * 6 * 5, dtype=torch.float32).view(2, 3, 6, 5)
    pad, fill = 2, (-1.0, -2.0, -3.0)
    out = augment_batch(x, Augment(pad, False, 0.0, fill), gen(0))
    padded = torch.stack(
        [nn.functional.pad(x[:, c], (pad,) * 4, value=fill[c]) for c in range(3)], 1
    )
    for i in range(2):
        windows = [
            padded[i, :, dy : dy + 6, dx : dx + 5]
            for dy in range(2 * pad + 1)
            for dx in range(2 * pad + 1)
        ]
        assert any(torch.equal(out[i], w) for w in windows)


def test_flip_only_mirrors_whole_images() -> None:
    x = torch.randn(32, 1, 4, 4, generator=gen(1))
    out = augment_batch(x, Augment(0, True, 0.0, (0.0,)), gen(2))
    flipped = [torch.equal(o, f) for o, f in zip(out, x.flip(3), strict=True)]
    same = [torch.equal(o, s) for o, s in zip(out, x, strict=True)]
    assert all(f or s for f, s in zip(flipped, same, strict=True))
    assert 4 <= sum(flipped) <= 28  # about half


def test_erasing_blanks_a_box_in_every_image_at_p1() -> None:
    x = torch.ones(16, 1, 28, 28)
    out = augment_batch(x, Augment(0, False, 1.0, (0.0,)), gen(0))
    erased = (out == 0).flatten(1).float().mean(1)
    assert bool((erased > 0).all()) and bool((erased < 0.5).all())


# --- schedule and optimiser ----------------------------------------------------------------


def test_cosine_schedule_warms_up_then_ends_near_zero() -> None:
    total, warm, base = 1000, 50, 0.1
    lrs = [lr_at(s, total, warm, base) for s in range(total)]
    assert lrs[0] == pytest.approx(base / warm)
    assert max(lrs) == pytest.approx(base)
    assert all(a <= b for a, b in itertools.pairwise(lrs[: warm + 1]))
    assert all(a >= b for a, b in itertools.pairwise(lrs[warm:]))
    assert lrs[-1] < 1e-3 * base
    assert lr_at(warm + (total - warm) // 2, total, warm, base) == pytest.approx(base / 2)


def test_no_weight_decay_on_batchnorm_and_bias() -> None:
    model = tiny_cnn()
    decay, no_decay = make_optimizer(model, TrainRecipe()).param_groups
    assert decay["weight_decay"] == 5e-4 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim > 1 for p in decay["params"])
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    bn_and_bias = {id(p) for m in bns for p in m.parameters()} | {id(model[-1].bias)}
    assert bn_and_bias == {id(p) for p in no_decay["params"]}


@pytest.mark.parametrize(
    "kwargs", [{"epochs": 0}, {"lr": 0.0}, {"batch_size": 0}, {"erase_p": 2.0}]
)
def test_recipe_rejects_nonsense(kwargs: dict) -> None:
    with pytest.raises(UserError):
        TrainRecipe(**kwargs)


# --- training ------------------------------------------------------------------------------


def test_limit_splits_keeps_the_first_images(fmnist: DataSplits) -> None:
    small = limit_splits(fmnist, 300, 200)
    assert (len(small.train), len(small.val), len(small.test)) == (300, 200, 200)
    assert small.info.train_size == 300 and small.info.test_size == 200
    assert torch.equal(small.test.labels, fmnist.test.labels[:200])
    with pytest.raises(UserError):
        limit_splits(fmnist, 0, None)


def test_short_run_learns_and_reports_per_epoch(fmnist: DataSplits) -> None:
    data = limit_splits(fmnist, 1024, 500)
    model = build_seeded(tiny_cnn, 0)
    result = train_model(model, data, TrainRecipe(epochs=3, lr=0.2), gen(0))
    assert [r.epoch for r in result.history] == [1.0, 2.0, 3.0]
    assert result.steps == 3 * (1024 // 128) and result.train_images == 1024
    first, last = result.history[0], result.history[-1]
    assert last.train_loss < first.train_loss
    assert result.test.images == 500 and result.test.accuracy > 0.3  # chance is 0.1
    assert last.lr < 0.01  # cosine ends near zero
    assert evaluate(model, data.test) == result.test  # the returned model is the tested one
    assert model[0].weight.is_contiguous()  # channels_last undone for export


def test_same_generator_same_weights_and_fractional_epochs(fmnist: DataSplits) -> None:
    data = limit_splits(fmnist, 512, 128)
    recipe = TrainRecipe(epochs=1.5, batch_size=64)
    runs = []
    for _ in range(2):
        model = build_seeded(tiny_cnn, 7)
        result = train_model(model, data, recipe, gen(1))
        runs.append((model.state_dict(), result))
    (a, ra), (b, rb) = runs
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert ra.test == rb.test and [r.epoch for r in ra.history] == [1.0, 1.5]
    assert ra.steps == 12
    other = build_seeded(tiny_cnn, 8)
    assert not torch.equal(other[0].weight, build_seeded(tiny_cnn, 7)[0].weight)


def test_divergence_is_a_user_error(fmnist: DataSplits) -> None:
    data = limit_splits(fmnist, 256, 64)
    with pytest.raises(UserError, match="diverged"):
        train_model(build_seeded(tiny_cnn, 0), data, TrainRecipe(epochs=2, lr=1e30), gen(0))


def test_evaluate_matches_a_direct_count(fmnist: DataSplits) -> None:
    data = limit_splits(fmnist, 10, 300)
    model = build_seeded(tiny_cnn, 0).eval()
    x, y = data.test.take(torch.arange(300))
    with torch.no_grad():
        logits = model(x)
    result = evaluate(model, data.test, batch_size=128, channels_last=False)
    assert result.images == 300
    assert result.accuracy == pytest.approx(float((logits.argmax(1) == y).float().mean()))
    expected = float(nn.functional.cross_entropy(logits, y))
    assert math.isclose(result.loss, expected, rel_tol=1e-5)


def test_device_names_resolve_or_say_why() -> None:
    from factory.training import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    with pytest.raises(UserError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA GPU"):
            resolve_device("cuda")


@pytest.mark.gpu
def test_a_gpu_learns_like_the_cpu_and_hands_the_model_back(fmnist: DataSplits) -> None:
    from factory.training import resolve_device

    data = limit_splits(fmnist, 1024, 500)
    recipe = TrainRecipe(epochs=3, lr=0.2, erase_p=0.25)
    accuracy = {}
    for device in ("cpu", "cuda"):
        model = build_seeded(tiny_cnn, 0)
        result = train_model(model, data, recipe, gen(0), device=resolve_device(device))
        assert next(model.parameters()).device.type == "cpu"
        assert evaluate(model, data.test) == result.test
        accuracy[device] = result.test.accuracy
    assert accuracy["cuda"] > 0.3 and abs(accuracy["cuda"] - accuracy["cpu"]) < 0.05
