"""Which file of a bundle to deploy on a target, from the latencies its manifest holds.

Why: INT8 is not faster everywhere. On x86 CPUs without fast int8 kernels the Q/DQ file can
be slower than FP32 (1.4x for the shipped shufflenet models, docs/prebuilt.md), so a user
who reaches for `model.int8.onnx` by habit loses both speed and a little accuracy. The card
and `factory pull` say which file the measurements favour.
"""

from __future__ import annotations

from dataclasses import dataclass

from exporters.manifest import LatencyEntry, Manifest

# medians measured one after the other move by about this much on a quiet machine: closer
# than this, the files count as equally fast
TIE = 0.10


@dataclass(frozen=True)
class Alternative:
    artifact: str
    median_ms: float
    ratio: float  # its median / the chosen file's
    accuracy_delta: float | None  # its test accuracy - the chosen file's, in [-1, 1]


@dataclass(frozen=True)
class DeployChoice:
    target: str
    batch: int
    artifact: str  # the file to deploy
    median_ms: float
    tied: bool  # a faster file is within TIE of it: the choice fell to accuracy
    others: tuple[Alternative, ...]

    def sentence(self) -> str:
        """One line for the card and the CLI."""
        why = "as fast within measurement noise, and more accurate" if self.tied else "fastest"
        others = [
            f"{o.artifact} {o.median_ms:.3f} ms ({o.ratio:.2f}x"
            + (
                f", {100 * o.accuracy_delta:+.2f} accuracy points"
                if o.accuracy_delta is not None
                else ""
            )
            + ")"
            for o in self.others
        ]
        return (
            f"{self.target}, batch {self.batch}: deploy {self.artifact} "
            f"({self.median_ms:.3f} ms median, {why}); " + "; ".join(others)
        )


def deploy_choices(m: Manifest, target: str | None = None) -> list[DeployChoice]:
    """One choice per measured (target, batch) with at least two files, for `target` only
    when given. The fastest median wins; files within TIE of it count as tied and the most
    accurate of those wins (then the fastest)."""
    groups: dict[tuple[str, int], list[LatencyEntry]] = {}
    for e in m.latency:
        if target is None or e.target == target:
            groups.setdefault((e.target, e.batch), []).append(e)
    choices = []
    for (tgt, batch), entries in groups.items():
        # one entry per file, its fastest (the last written wins)
        best = {e.artifact: e for e in sorted(entries, key=lambda e: -e.median_ms)}
        if len(best) < 2:
            continue
        fastest = min(e.median_ms for e in best.values())
        close = [e for e in best.values() if e.median_ms <= fastest * (1 + TIE)]
        pick = max(close, key=lambda e: (_accuracy(m, e.artifact) or 0.0, -e.median_ms))
        acc = _accuracy(m, pick.artifact)
        others = tuple(
            Alternative(
                e.artifact,
                e.median_ms,
                e.median_ms / pick.median_ms,
                None if acc is None or _accuracy(m, e.artifact) is None
                else _accuracy(m, e.artifact) - acc,  # type: ignore[operator]
            )
            for e in sorted(best.values(), key=lambda e: e.median_ms)
            if e.artifact != pick.artifact
        )  # fmt: skip
        tied = pick.median_ms > fastest
        choices.append(DeployChoice(tgt, batch, pick.artifact, pick.median_ms, tied, others))
    return choices


def _accuracy(m: Manifest, artifact: str) -> float | None:
    r = m.metrics.get(artifact)
    return r.test_accuracy if r is not None else None
