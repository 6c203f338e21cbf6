"""The search-space contract shared by every space.

A genotype is a tuple of choice indices, one per searchable decision; it and the space's
name identify an architecture everywhere (run store, manifests, latency tables). Because
every decision is a plain categorical choice, sampling, mutation, crossover, parsing and the
RL controller's encoding are written once here; a space only declares its decisions and
how to build networks from them.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from targets.errors import UserError

Genotype = tuple[int, ...]


@dataclass(frozen=True)
class InputSpec:
    """What the stem and head adapt to: input channels, resolution and class count."""

    channels: int = 1
    height: int = 28
    width: int = 28
    num_classes: int = 10

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width)


@dataclass(frozen=True)
class Decision:
    """One searchable step: its name and the human-readable label of each option."""

    name: str
    options: tuple[str, ...]


@dataclass(frozen=True)
class LayerInfo:
    """One row of `describe(g)`: a layer, what it is, its output shape (C, H, W)."""

    name: str
    op: str
    out_shape: tuple[int, int, int]


@dataclass(frozen=True)
class Block:
    """A unit of a network for latency tables: `key` is identical for identical blocks.

    `module` is a standalone, eval-mode module taking one input of shape `in_shape`
    (without batch), so a profiler can export and time it on its own.
    """

    key: str
    module: nn.Module
    in_shape: tuple[int, int, int]


class Supernet(nn.Module, ABC):
    """Single-path weight-sharing network: `forward(x, g)` runs only g's path."""

    @abstractmethod
    def forward(self, x: torch.Tensor, g: Genotype) -> torch.Tensor:  # (N, C, H, W) -> (N, K)
        ...


class SearchSpace(ABC):
    """Base class of a space; subclasses declare decisions and build networks."""

    name: ClassVar[str]
    # keyword options of the constructor and their valid values (`--set space.KEY=VALUE`)
    options: ClassVar[dict[str, tuple[str, ...]]] = {}
    # option values a search uses unless `--set space.KEY=VALUE` says otherwise
    search_defaults: ClassVar[dict[str, str]] = {}
    # the manual architecture a user of this space would otherwise deploy: a search tries
    # its cheaper neighbours too (`--challenge`, factory/search/challenge.py)
    yardstick: ClassVar[str | None] = None

    def __init__(self, spec: InputSpec | None = None) -> None:
        self.spec = spec or InputSpec()

    # --- what a space must provide -------------------------------------------------
    @abstractmethod
    def decisions(self) -> tuple[Decision, ...]:
        """The searchable steps in order; also the RL controller's encoding."""

    @abstractmethod
    def build(self, g: Genotype) -> nn.Module:
        """A standalone, exportable network for g (forward takes only x)."""

    @abstractmethod
    def supernet(self) -> Supernet:
        """A fresh weight-sharing supernet covering every genotype of this space."""

    @abstractmethod
    def extract(self, supernet: Supernet, g: Genotype) -> dict[str, torch.Tensor]:
        """g's weights in the supernet, as a state dict that `build(g)` loads strictly."""

    @abstractmethod
    def describe(self, g: Genotype) -> list[LayerInfo]:
        """Human-readable layers of g, stem to head."""

    @abstractmethod
    def blocks(self, g: Genotype) -> list[Block]:
        """The units of g with their input shapes (stem, each layer, head), for latency tables."""

    @abstractmethod
    def manual(self) -> dict[str, Genotype]:
        """Named hand-designed architectures in this space (warm starts, plot markers)."""

    def extremes(self) -> tuple[Genotype, Genotype] | None:
        """(largest, smallest) architecture, for the sandwich rule; None: not defined."""
        return None

    # --- written once for every space ----------------------------------------------
    def choices(self) -> tuple[int, ...]:
        """Number of options per decision (the controller's action sizes)."""
        return tuple(len(d.options) for d in self.decisions())

    def size(self) -> int:
        """Number of genotypes (not distinct architectures) in the space."""
        return int(np.prod([float(c) for c in self.choices()]))

    def sample(self, rng: np.random.Generator) -> Genotype:
        """A uniformly random genotype."""
        return tuple(int(rng.integers(c)) for c in self.choices())

    def mutate(self, g: Genotype, rng: np.random.Generator, p: float = 0.5) -> Genotype:
        """Redraw each decision with probability p (CARS); the child always differs from g."""
        g = self.validate(g)
        choices = self.choices()
        while True:
            child = tuple(
                int(rng.integers(c)) if rng.random() < p else gi
                for gi, c in zip(g, choices, strict=True)
            )
            if child != g or max(choices) == 1:
                return child

    def crossover(
        self, a: Genotype, b: Genotype, rng: np.random.Generator, p: float = 0.5
    ) -> Genotype:
        """Take each decision from b with probability p, otherwise from a."""
        a, b = self.validate(a), self.validate(b)
        return tuple(bi if rng.random() < p else ai for ai, bi in zip(a, b, strict=True))

    def validate(self, g: Genotype) -> Genotype:
        """g as a tuple of ints, or a `UserError` naming what is wrong with it."""
        choices = self.choices()
        g = tuple(int(x) for x in g)
        if len(g) != len(choices):
            raise UserError(f"{self.name} genotype needs {len(choices)} choices, got {len(g)}")
        for i, (gi, c) in enumerate(zip(g, choices, strict=True)):
            if not 0 <= gi < c:
                name = self.decisions()[i].name
                raise UserError(f"{self.name} genotype: {name} must be in 0..{c - 1}, got {gi}")
        return g

    def format(self, g: Genotype) -> str:
        """The text form used on the command line and in files: indices joined by '-'."""
        return "-".join(str(x) for x in self.validate(g))

    def parse(self, text: str) -> Genotype:
        """A genotype from its text form or the name of a manual architecture."""
        text = text.strip()
        if text in self.manual():
            return self.manual()[text]
        try:
            g = tuple(int(x) for x in text.replace(",", "-").split("-") if x != "")
        except ValueError:
            names = ", ".join(sorted(self.manual()))
            raise UserError(
                f"cannot parse {self.name} genotype {text!r}: expected choice indices "
                f"joined by '-' or one of: {names}"
            ) from None
        return self.validate(g)

    def canonical(self, g: Genotype) -> Genotype:
        """g with decisions that do not change the network set to 0 (identity by default)."""
        return self.validate(g)

    def arch_id(self, g: Genotype) -> str:
        """A short stable id: equal exactly when two genotypes build the same network."""
        text = f"{self.name}:{self.format(self.canonical(g))}"
        return hashlib.sha1(text.encode()).hexdigest()[:12]

    def build_from_supernet(self, supernet: Supernet, g: Genotype) -> nn.Module:
        """`build(g)` with g's weights inherited from the supernet (eval mode)."""
        model = self.build(g)
        model.load_state_dict(self.extract(supernet, g), strict=True)
        return model.eval()
