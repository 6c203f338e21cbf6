"""The ENAS-style LSTM controller over a space's decisions, and its REINFORCE update.

One LSTM step per decision: the first input is a learned start embedding; each step's
hidden state goes through that decision's own linear head (decisions differ in option
count), the logits are squashed to tanh_constant · tanh(logits) so no option's probability
can run away, a choice is drawn, and that decision's embedding of the choice is the next
input. Sampling and scoring share one walk, so the log-probability of a sampled genotype is
exactly what `log_prob` returns for it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from factory.spaces.base import Genotype

Picker = Callable[[int, torch.Tensor], torch.Tensor]  # (decision, log-probs (n, k)) -> (n,)


@dataclass(frozen=True)
class ControllerSample:
    """n genotypes with their summed log-probabilities and summed entropies, each (n,)."""

    genotypes: list[Genotype]
    log_prob: torch.Tensor
    entropy: torch.Tensor


class Controller(nn.Module):
    """One-layer LSTM policy emitting one choice per decision of a search space."""

    def __init__(
        self,
        choices: Sequence[int],
        generator: torch.Generator,
        hidden: int = 64,
        tanh_constant: float = 1.5,
        init_range: float = 0.1,
        conditioned: bool = False,
    ) -> None:
        super().__init__()
        self.choices = tuple(int(c) for c in choices)
        if not self.choices or min(self.choices) < 1:
            raise ValueError(f"controller needs >= 1 decision with >= 1 option: {choices}")
        self.tanh_constant = tanh_constant
        self.start = nn.Parameter(torch.empty(1, hidden))
        self.lstm = nn.LSTMCell(hidden, hidden)
        self.embeddings = nn.ModuleList(nn.Embedding(c, hidden) for c in self.choices)
        self.heads = nn.ModuleList(nn.Linear(hidden, c) for c in self.choices)
        with torch.no_grad():  # ENAS: every weight U(−0.1, 0.1)
            for p in self.parameters():
                p.uniform_(-init_range, init_range, generator=generator)
        # target-conditioned (drawn last, so an unconditioned controller is unchanged): the
        # first input is start + (2t − 1)·target_embedding for a target t in [0, 1]
        self.target_embedding: nn.Parameter | None = None
        if conditioned:
            self.target_embedding = nn.Parameter(torch.empty(1, hidden))
            with torch.no_grad():
                self.target_embedding.uniform_(-init_range, init_range, generator=generator)

    def _first_input(self, n: int, target: float | None) -> torch.Tensor:
        if self.target_embedding is None or target is None:
            return self.start.expand(n, -1)
        return (self.start + (2 * float(target) - 1) * self.target_embedding).expand(n, -1)

    def _walk(
        self, n: int, pick: Picker, target: float | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Choices (n, D), summed log-prob (n,) and summed entropy (n,) along picked paths."""
        x = self._first_input(n, target)
        state: tuple[torch.Tensor, torch.Tensor] | None = None
        picked, log_prob, entropy = [], x.new_zeros(n), x.new_zeros(n)
        for i, head in enumerate(self.heads):
            state = self.lstm(x, state)
            logp = _log_softmax(self.tanh_constant * torch.tanh(head(state[0])))
            choice = pick(i, logp)  # (n,)
            log_prob = log_prob + logp.gather(1, choice[:, None]).squeeze(1)
            entropy = entropy - (logp.exp() * logp).sum(-1)
            picked.append(choice)
            x = self.embeddings[i](choice)
        return torch.stack(picked, 1), log_prob, entropy

    def sample(
        self, n: int, generator: torch.Generator, target: float | None = None
    ) -> ControllerSample:
        """n genotypes drawn from the policy (wrap in torch.no_grad() when not learning);
        `target` in [0, 1] conditions a conditioned controller (ignored otherwise)."""

        def draw(_: int, logp: torch.Tensor) -> torch.Tensor:
            return torch.multinomial(logp.exp(), 1, generator=generator).squeeze(1)

        picked, log_prob, entropy = self._walk(n, draw, target)
        genotypes = [tuple(int(c) for c in row) for row in picked.tolist()]
        return ControllerSample(genotypes, log_prob, entropy)

    def log_prob(
        self, genotypes: Sequence[Genotype], target: float | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed log-probability and entropy (each (n,)) of given genotypes (teacher-forced)."""
        idx = torch.as_tensor([list(g) for g in genotypes], dtype=torch.long)
        if idx.ndim != 2 or idx.shape[1] != len(self.choices):
            raise ValueError(f"genotypes must have {len(self.choices)} choices each")
        if (idx < 0).any() or (idx >= torch.tensor(self.choices)).any():
            raise ValueError(f"genotype choice out of range for option counts {self.choices}")
        _, log_prob, entropy = self._walk(len(idx), lambda i, _: idx[:, i], target)
        return log_prob, entropy

    def decision_probs(self, prefix: Genotype = ()) -> torch.Tensor:
        """Probabilities (k,) of the options of decision len(prefix), given the choices before."""
        if len(prefix) >= len(self.choices):
            raise ValueError("prefix must leave at least one decision open")
        probs: list[torch.Tensor] = []

        def follow(i: int, logp: torch.Tensor) -> torch.Tensor:
            if i == len(prefix):
                probs.append(logp.exp()[0])
            choice = prefix[i] if i < len(prefix) else 0
            return torch.full((1,), choice, dtype=torch.long)

        with torch.no_grad():
            self._walk(1, follow)
        return probs[0]

    def bias_towards(self, genotypes: Sequence[Genotype], steps: int, lr: float) -> float:
        """Warm start: a few cross-entropy steps making `genotypes` likelier (manual designs).

        Uses its own Adam so the REINFORCE optimiser's state is untouched; the tanh bound
        keeps the bias finite, so the controller still explores. Returns the final mean
        log-probability of `genotypes`."""
        imitate(self, torch.optim.Adam(self.parameters(), lr=lr, fused=True), genotypes, steps)
        with torch.no_grad():
            return float(self.log_prob(genotypes)[0].mean())


def imitate(
    controller: Controller,
    optimizer: torch.optim.Optimizer,
    genotypes: Sequence[Genotype],
    steps: int,
    target: float | None = None,
) -> float:
    """`steps` cross-entropy steps making `genotypes` likelier under `target`, with the
    REINFORCE optimiser (priority-queue training keeps one optimiser for both losses).
    Returns the last mean log-probability before the final step (nan when nothing to do)."""
    last = float("nan")
    if not genotypes:
        return last
    for _ in range(steps):
        loss = -controller.log_prob(genotypes, target)[0].mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        last = -float(loss.detach())
    return last


def _log_softmax(logits: torch.Tensor) -> torch.Tensor:
    """log-softmax over the last dim from elementwise ops and amax: torch's softmax and
    max(dim) kernels enter an OpenMP region even for (n, 8) inputs, which costs tens of ms
    per call when the cores are busy (measured on a shared 2-core machine)."""
    z = logits - logits.amax(-1, keepdim=True).detach()
    return z - z.exp().sum(-1, keepdim=True).log()


@dataclass
class Baseline:
    """Exponential moving average of the rewards; `value` None means "restart it".

    On (re)start the first batch's mean is the baseline, so the first advantages are centred
    instead of all positive (which would reinforce whatever happened to be sampled)."""

    decay: float
    value: float | None = None

    def advantages(self, rewards: np.ndarray) -> np.ndarray:
        """R − b with the baseline as it stands before this batch."""
        if self.value is None:
            self.value = float(np.mean(rewards))
        return rewards - self.value

    def update(self, rewards: np.ndarray) -> None:
        self.value = self.decay * float(self.value) + (1 - self.decay) * float(np.mean(rewards))


@dataclass(frozen=True)
class UpdateStats:
    """What one REINFORCE step saw: mean reward (with entropy bonus), baseline, loss."""

    reward: float
    baseline: float
    loss: float


def reinforce_update(
    controller: Controller,
    optimizer: torch.optim.Optimizer,
    genotypes: Sequence[Genotype],
    rewards: Sequence[float],
    baseline: Baseline,
    entropy_weight: float,
    normalise: bool = False,
    target: float | None = None,
) -> UpdateStats:
    """One step on −Σ (R − b)·log p with R = reward + entropy_weight · the path's entropy per
    decision (a mean, so the bonus does not grow with the number of decisions).

    `normalise` whitens the rewards within the batch, (R − mean) / std, before adding the
    centred entropy bonus: CANAS's reward decays exponentially with |cost − F|, so when every
    sample is far from F all rewards are ~0 and the raw signal vanishes, though it still says
    which samples were nearer; the moving baseline would lag a moving F, so the batch's own
    mean stands in for it (the baseline keeps its average for the statistics)."""
    log_prob, entropy = controller.log_prob(genotypes, target)
    bonus = entropy_weight * entropy.detach().numpy() / len(controller.choices)
    reward = np.asarray(rewards, dtype=float)
    total = reward + bonus
    if normalise and len(reward) > 1:
        baseline.advantages(total)  # (re)starts the average where needed
        white = (reward - reward.mean()) / (float(reward.std()) + 1e-8)
        advantage = white + bonus - bonus.mean()
    else:
        advantage = baseline.advantages(total)
    used = float(baseline.value)
    loss = -(torch.as_tensor(advantage, dtype=log_prob.dtype) * log_prob).sum()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    baseline.update(total)
    return UpdateStats(float(total.mean()), used, float(loss.detach()))


def make_optimizer(controller: Controller, lr: float) -> torch.optim.Adam:
    """Adam with β1 = 0 (ENAS): no momentum on a policy whose reward keeps moving. Fused:
    one kernel per tensor, ~3x faster than the per-op path for these small tensors on CPU."""
    return torch.optim.Adam(controller.parameters(), lr=lr, betas=(0.0, 0.999), fused=True)


def optimizer_to_flat(
    optimizer: torch.optim.Optimizer, prefix: str = "optim"
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """An optimiser's state as JSON metadata plus a flat name → tensor dict (safetensors)."""
    sd = optimizer.state_dict()
    meta: dict[str, Any] = {"param_groups": _jsonable(sd["param_groups"]), "scalars": {}}
    tensors: dict[str, torch.Tensor] = {}
    for idx, slots in sd["state"].items():
        for key, val in slots.items():
            name = f"{prefix}.{idx}.{key}"
            if isinstance(val, torch.Tensor):
                tensors[name] = val.detach().clone().contiguous()
            else:
                meta["scalars"][name] = val
    return meta, tensors


def optimizer_from_flat(
    optimizer: torch.optim.Optimizer,
    meta: dict[str, Any],
    tensors: dict[str, torch.Tensor],
    prefix: str = "optim",
) -> None:
    """Inverse of `optimizer_to_flat`."""
    state: dict[int, dict[str, Any]] = {}
    flat = {**{k: v for k, v in tensors.items() if k.startswith(prefix + ".")}, **meta["scalars"]}
    for name, val in flat.items():
        idx, key = name[len(prefix) + 1 :].split(".", 1)
        state.setdefault(int(idx), {})[key] = val.clone() if isinstance(val, torch.Tensor) else val
    groups = [
        {k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in meta["param_groups"]
    ]
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def _jsonable(value: Any) -> Any:
    """Tuples to lists, numpy scalars to Python, recursively."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
