"""Random architectures for calibrating and validating a table: distinct, seeded, and
optionally biased towards the light and heavy corners of a space."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from factory.lut.settings import SAMPLINGS
from factory.spaces import Genotype, SearchSpace
from targets.errors import UserError


def sample_biased(space: SearchSpace, rng: np.random.Generator, alpha: float = 0.5) -> Genotype:
    """A genotype drawn with a random preference per option label (Gamma(alpha) weights).

    Uniform samples average many independent choices, so they all land near the space's mean
    latency; these spread from its light to its heavy corners (a wider range to fit and rank).
    """
    labels = sorted({o for d in space.decisions() for o in d.options})
    weight = dict(zip(labels, rng.gamma(alpha, size=len(labels)) + 1e-9, strict=True))
    genotype = []
    for d in space.decisions():
        p = np.array([weight[o] for o in d.options])
        genotype.append(int(rng.choice(len(p), p=p / p.sum())))
    return tuple(genotype)


def distinct_samples(
    space: SearchSpace,
    n: int,
    rng: np.random.Generator,
    exclude: Iterable[Genotype] = (),
    sampling: str = "uniform",
) -> list[Genotype]:
    """n distinct random genotypes not in `exclude` (fewer if the space is smaller);
    `sampling` is 'uniform' (`space.sample`) or 'biased' (`sample_biased`)."""
    if sampling not in SAMPLINGS:
        raise UserError(f"sampling must be one of {', '.join(SAMPLINGS)}, not {sampling!r}")
    seen, out = set(exclude), []
    for _ in range(100 * n):
        if len(out) == n:
            break
        g = space.sample(rng) if sampling == "uniform" else sample_biased(space, rng)
        if g not in seen:
            seen.add(g)
            out.append(g)
    return out
