"""The resolved configuration of a search run: built once by the CLI, saved with the run,
compared on resume."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

from targets.errors import UserError

OBJECTIVE_ALIASES = {"latency": "latency_ms", "flops": "macs", "acc": "accuracy"}
# the quick preset's image counts (the defaults below; gpu and paper train on every image,
# score on VAL_SIZE and rescore on those alone). Its generations are scored on fewer images
# to pay for a rescoring on more (docs/search.md, "Rescoring on more images")
QUICK_TRAIN_SIZE, QUICK_VAL_SIZE, QUICK_RESCORE_IMAGES = 8000, 2500, 20000
VAL_SIZE = 5000
KNOWN_OBJECTIVES = ("accuracy", "latency_ms", "macs", "params")


@dataclass(frozen=True)
class SearchConfig:
    """Everything that decides what a run computes (not where it writes)."""

    space: str = "mobilenet"
    strategy: str = "pnsga3"
    target: str = "x86-cpu"
    dataset: str = "fashion-mnist"
    data_root: str | None = None
    objectives: tuple[str, ...] = ("accuracy", "latency_ms")
    cost: str = "latency_ms"  # the scalar cost for rewards and plots
    preset: str = "quick"
    seed: int = 0
    init: tuple[str, ...] = ()  # manual architectures to warm-start from
    units: int | None = None  # generations / controller steps; None: the preset's
    time_budget_s: float | None = None
    train_size: int | None = QUICK_TRAIN_SIZE  # training images used by the search (None: all)
    # 500 gave a standard error (1.9 points) as wide as the spread of the candidates' scores
    val_size: int | None = QUICK_VAL_SIZE
    batch_size: int = 64  # more steps per image: 57-69 % vs 52-64 % at 128 (docs/search.md)
    calib_steps: int = 2
    lr: float = 0.05
    sandwich: bool = False  # largest + smallest paths in every batch (BigNAS); docs/ranking
    distill: bool = False  # other paths learn the largest path's predictions
    uniform_paths: int = 1  # random paths beside the population's per batch; docs/ranking
    latency_mode: str = "auto"
    f_min: float | None = None
    f_max: float | None = None
    strategy_config: dict[str, Any] = field(default_factory=dict)  # resolved by the runner
    space_options: dict[str, str] = field(default_factory=dict)  # `--set space.KEY=VALUE`
    benchmark: str | None = None  # a tabular benchmark ("nb201" or a CSV path): no training
    queries: int | None = None  # a tabular search's budget of distinct architectures
    # a training search's evaluations after the last unit on cheaper neighbours of the
    # front, in its cost gaps (refine.py); a tabular search spends its --queries instead
    refine: int = 12
    # then the best candidates by one-shot score, fine-tuned briefly each and scored again,
    # decide the front (rescore.py); 0: the one-shot scores decide
    rescore: int = 6
    rescore_steps: int = 50  # training batches per rescored candidate
    # images each rescored candidate is scored on: val_size's, then training images the
    # search left out (train_size); None: val_size's alone, as the generations. 20,000
    # ranked near-ties better than 5,000
    rescore_images: int | None = QUICK_RESCORE_IMAGES
    # manual architectures whose cheaper one-decision neighbours (`challengers` of each) are
    # rescored too (challenge.py); None: the space's yardstick
    challenge: tuple[str, ...] | None = None
    challengers: int = 4

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["objectives"] = list(self.objectives)
        data["init"] = list(self.init)
        data["challenge"] = None if self.challenge is None else list(self.challenge)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        data = {k: v for k, v in data.items() if k in known}
        data.setdefault("rescore_images", None)  # runs from before it scored on val_size's
        data["objectives"] = tuple(data.get("objectives", ()))
        data["init"] = tuple(data.get("init", ()))
        if data.get("challenge") is not None:
            data["challenge"] = tuple(data["challenge"])
        return cls(**data)


def parse_objectives(text: str) -> tuple[str, ...]:
    """'accuracy,latency' -> ('accuracy', 'latency_ms'); accuracy must come first."""
    names = [OBJECTIVE_ALIASES.get(n.strip(), n.strip()) for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in KNOWN_OBJECTIVES]
    if unknown:
        raise UserError(
            f"unknown objective {unknown[0]!r}; valid: {', '.join(KNOWN_OBJECTIVES)} "
            "(aliases: latency, flops)"
        )
    if not names or names[0] != "accuracy" or len(names) < 2 or len(set(names)) != len(names):
        raise UserError("objectives must be 'accuracy' followed by one or more distinct costs")
    return tuple(names)


def parse_duration(text: str) -> float:
    """'20m' -> 1200.0; accepts s, m, h suffixes and combinations like '1h30m'."""
    text = text.strip().lower()
    parts = re.fullmatch(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?", text)
    if not text or parts is None or not any(parts.groups()):
        raise UserError(f"cannot read duration {text!r}; use e.g. 90s, 20m or 1h30m")
    h, m, s = (float(p) if p else 0.0 for p in parts.groups())
    return h * 3600 + m * 60 + s
