"""One tiny real search run for tests that need a run directory (train, export): a random
search of the shufflenet space on 256 Fashion-MNIST images, a few seconds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from factory.search.config import SearchConfig
from factory.search.runner import run_search

FMNIST = Path("/usr/share/datasets/fashion-mnist")
TINY: dict[str, Any] = dict(
    space="shufflenet",
    objectives=("accuracy", "macs"),
    cost="macs",
    train_size=256,
    val_size=128,
    batch_size=64,
    calib_steps=1,
    refine=0,  # tests/search/test_refine.py runs it
    rescore=0,  # tests/search/test_rescore.py runs it
    rescore_images=None,  # on val_size's images, as the generations; test_rescore.py: more
)


def tiny_random_run(path: Path, **overrides: Any) -> Path:
    """A finished random-search run (config, pareto.json, supernet checkpoint) at `path`."""
    settings: dict[str, Any] = dict(
        TINY,
        strategy="random",
        units=1,
        # 8 warm-up epochs lift every candidate clearly above chance, the front's floor
        strategy_config={"samples_per_unit": 3, "warmup_epochs": 8},
    )
    run_search(SearchConfig(**{**settings, **overrides}), path, quiet=True)
    return path
