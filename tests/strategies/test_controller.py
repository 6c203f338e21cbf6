"""The LSTM controller: sampling, scoring, bounds, warm start, REINFORCE and its checkpoints."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from factory.spaces import get_space
from factory.strategies.controller import (
    Baseline,
    Controller,
    imitate,
    make_optimizer,
    optimizer_from_flat,
    optimizer_to_flat,
    reinforce_update,
)

CHOICES = (3, 4, 2, 3)  # decisions with different option counts


def make(seed: int = 0, choices: tuple[int, ...] = CHOICES) -> Controller:
    return Controller(choices, torch.Generator().manual_seed(seed))


def draw(c: Controller, n: int, seed: int) -> list[tuple[int, ...]]:
    with torch.no_grad():
        return c.sample(n, torch.Generator().manual_seed(seed)).genotypes


def test_init_is_uniform_in_range_and_seeded() -> None:
    a, b, other = make(0), make(0), make(1)
    for (name, pa), pb, po in zip(
        a.named_parameters(), b.parameters(), other.parameters(), strict=True
    ):
        assert pa.abs().max() <= 0.1, name
        assert torch.equal(pa, pb)
        assert not torch.equal(pa, po)


def test_samples_are_valid_and_seeded() -> None:
    c = make()
    genotypes = draw(c, 50, seed=3)
    assert all(len(g) == len(CHOICES) for g in genotypes)
    assert all(0 <= x < k for g in genotypes for x, k in zip(g, CHOICES, strict=True))
    assert draw(c, 50, seed=3) == genotypes
    assert draw(c, 50, seed=4) != genotypes
    assert len({g[1] for g in genotypes}) == 4  # near-uniform at init: every option shows up


def test_log_prob_of_a_sample_equals_its_sampling_log_prob() -> None:
    c = make()
    sample = c.sample(8, torch.Generator().manual_seed(5))
    log_prob, entropy = c.log_prob(sample.genotypes)
    torch.testing.assert_close(log_prob, sample.log_prob)
    torch.testing.assert_close(entropy, sample.entropy)
    assert (sample.log_prob < 0).all()
    max_entropy = sum(math.log(k) for k in CHOICES)
    assert ((entropy > 0) & (entropy <= max_entropy + 1e-6)).all()


def test_log_probs_of_all_genotypes_sum_to_one() -> None:
    c = make(choices=(3, 2, 2))
    every = [(a, b, d) for a in range(3) for b in range(2) for d in range(2)]
    with torch.no_grad():
        total = c.log_prob(every)[0].exp().sum()
    assert float(total) == pytest.approx(1.0, abs=1e-5)


def test_tanh_constant_bounds_the_logits() -> None:
    c = make()
    with torch.no_grad():
        c.heads[0].bias.copy_(torch.tensor([100.0, -100.0, -100.0]))
    probs = c.decision_probs()
    bound = math.exp(1.5) / (math.exp(1.5) + 2 * math.exp(-1.5))  # logits within ±1.5
    assert float(probs[0]) == pytest.approx(bound, abs=1e-4)
    assert float(probs.min()) > 0.04


def test_decision_probs_follow_the_prefix() -> None:
    c = make()
    g = (2, 1, 0, 1)
    log_prob = sum(math.log(float(c.decision_probs(g[:i])[g[i]])) for i in range(len(CHOICES)))
    assert log_prob == pytest.approx(float(c.log_prob([g])[0][0].detach()), abs=1e-5)


def test_log_prob_rejects_bad_genotypes() -> None:
    c = make()
    with pytest.raises(ValueError, match="out of range"):
        c.log_prob([(3, 0, 0, 0)])
    with pytest.raises(ValueError, match="4 choices"):
        c.log_prob([(0, 0)])


def test_learns_to_prefer_a_rewarded_choice() -> None:
    """Toy reward: 1 when decision 0 picks option 2, else 0; paper lr 1e-3, N = 10.

    Seeds 0-2 measured: p(option 2) 0.35 after 10 steps, 0.83 after 50, 0.87 after 60."""
    c = make()
    optimizer, baseline, gen = make_optimizer(c, 1e-3), Baseline(0.9), torch.Generator()
    gen.manual_seed(1)
    assert float(c.decision_probs()[2]) < 0.4
    for _ in range(60):
        with torch.no_grad():
            batch = c.sample(10, gen).genotypes
        rewards = [1.0 if g[0] == 2 else 0.0 for g in batch]
        reinforce_update(c, optimizer, batch, rewards, baseline, entropy_weight=0.1)
    assert float(c.decision_probs()[2]) > 0.8


def test_a_conditioned_controller_learns_a_choice_per_target() -> None:
    """Reward option 0 of decision 0 at target 0 and option 2 at target 1, alternating
    targets: the conditioned controller ends preferring each at its own target, while an
    unconditioned one cannot tell the targets apart (same probabilities at both)."""

    def train(conditioned: bool) -> tuple[torch.Tensor, torch.Tensor]:
        c = Controller(CHOICES, torch.Generator().manual_seed(0), conditioned=conditioned)
        optimizer, gen = make_optimizer(c, 0.01), torch.Generator().manual_seed(1)
        for step in range(120):
            target = float(step % 2)
            with torch.no_grad():
                batch = c.sample(10, gen, target).genotypes
            rewards = [1.0 if g[0] == 2 * target else 0.0 for g in batch]
            reinforce_update(c, optimizer, batch, rewards, Baseline(0.9), 0.1, True, target)
        pair = [(0, 0, 0, 0), (2, 0, 0, 0)]  # option 0 or 2 at decision 0
        with torch.no_grad():
            return c.log_prob(pair, 0.0)[0], c.log_prob(pair, 1.0)[0]

    at_0, at_1 = train(conditioned=True)
    assert at_0[0] > at_0[1] + 1 and at_1[1] > at_1[0] + 1  # e: 2.7x likelier each way
    plain_0, plain_1 = train(conditioned=False)
    assert torch.equal(plain_0, plain_1)


def test_bias_towards_makes_manual_designs_likelier() -> None:
    space = get_space("shufflenet")  # the CANAS space: a width, then 16 layers of 8 or 9 options
    c = make(choices=space.choices())
    manual = list(space.manual().values())  # g1, g3, g8 at width 1 and g3 at width 0.5
    with torch.no_grad():
        before = float(c.log_prob(manual)[0].mean())
    after = c.bias_towards(manual, steps=10, lr=0.01)
    assert after > before + 10  # e^10 ≈ 20000x likelier on average
    first = c.decision_probs()
    favoured = sorted({g[0] for g in manual})
    assert sorted(first.topk(len(favoured)).indices.tolist()) == favoured
    assert float(first.min()) > 0.02  # the tanh bound keeps every option reachable


def test_imitation_learns_a_front_member_per_target() -> None:
    """Imitating one genotype at target 0 and another at target 1, in turns (as the F sweep
    does), makes each the likelier of the two at its own target."""
    c = Controller(CHOICES, torch.Generator().manual_seed(0), conditioned=True)
    small, big = (0, 1, 0, 2), (2, 3, 1, 0)
    optimizer = make_optimizer(c, 0.01)
    for _ in range(10):
        last = imitate(c, optimizer, [small], steps=3, target=0.0)
        imitate(c, optimizer, [big], steps=3, target=1.0)
    with torch.no_grad():
        at_0, at_1 = (c.log_prob([small, big], t)[0] for t in (0.0, 1.0))
    assert float(at_0[0] - at_0[1]) > 5.0 and float(at_1[1] - at_1[0]) > 5.0
    assert float(at_0[0]) > -1.0 and -1.0 < last < 0
    assert math.isnan(imitate(c, optimizer, [], steps=3))


def test_baseline_restarts_centred_then_moves_average() -> None:
    b = Baseline(decay=0.75)
    np.testing.assert_allclose(b.advantages(np.array([1.0, 3.0])), [-1.0, 1.0])
    b.update(np.array([1.0, 3.0]))
    assert b.value == pytest.approx(2.0)
    np.testing.assert_allclose(b.advantages(np.array([6.0])), [4.0])  # before the update
    b.update(np.array([6.0]))
    assert b.value == pytest.approx(0.75 * 2.0 + 0.25 * 6.0)


def _train(c: Controller, optimizer: torch.optim.Optimizer, steps: int, seed: int) -> None:
    baseline, gen = Baseline(0.9, 0.0), torch.Generator().manual_seed(seed)
    for _ in range(steps):
        with torch.no_grad():
            batch = c.sample(4, gen).genotypes
        reinforce_update(c, optimizer, batch, [float(g[1]) for g in batch], baseline, 0.1)


def test_optimizer_state_round_trips_through_json_and_safetensors() -> None:
    c = make()
    optimizer = make_optimizer(c, 1e-3)
    _train(c, optimizer, 3, seed=0)
    meta, tensors = optimizer_to_flat(optimizer)
    meta = json.loads(json.dumps(meta))
    tensors = st_load(st_save(tensors))

    twin = make(seed=9)
    twin.load_state_dict(c.state_dict())
    twin_opt = make_optimizer(twin, 1e-3)
    optimizer_from_flat(twin_opt, meta, tensors)
    assert twin_opt.param_groups[0]["betas"] == (0.0, 0.999)
    _train(c, optimizer, 2, seed=1)
    _train(twin, twin_opt, 2, seed=1)
    for a, b in zip(c.parameters(), twin.parameters(), strict=True):
        assert torch.equal(a, b)


def test_round_trip_differs_without_optimizer_state() -> None:
    """The check above can fail: a fresh Adam after the same weights diverges."""
    c = make()
    optimizer = make_optimizer(c, 1e-3)
    _train(c, optimizer, 3, seed=0)
    twin = make(seed=9)
    twin.load_state_dict(c.state_dict())
    twin_opt = make_optimizer(twin, 1e-3)
    _train(c, optimizer, 2, seed=1)
    _train(twin, twin_opt, 2, seed=1)
    pairs = zip(c.parameters(), twin.parameters(), strict=True)
    assert any(not torch.equal(a, b) for a, b in pairs)
