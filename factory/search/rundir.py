"""A run directory's life around the loop: checked and created only after its data loads, what a
rejected start removes, and how a finished run is recognised."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from factory.data import DataSplits
from factory.run_report import pareto_problem
from factory.search.config import SearchConfig
from factory.search.store import CONFIG_NAME, DB_NAME, check_resume, save_config
from targets.errors import UserError

if TYPE_CHECKING:
    from factory.strategies.base import Record


@dataclass(frozen=True)
class RunResult:
    """What a call to `run_search` did."""

    run_dir: Path
    front: list[Record]
    units_done: int
    total_units: int
    evaluations: int
    stopped: str | None  # None: finished; otherwise why it stopped early
    kept: str = ""  # what a partial checkpoint kept of the unit under way
    finished_before: bool = False  # `--resume` of a run that had already finished
    rank: int = 0  # of a data-parallel run: only rank 0 has the front and the outputs


def load_data(config: SearchConfig, download: bool = False, spare: bool = False) -> DataSplits:
    """The run's dataset splits (`download`: fetch it when it is not on this machine;
    `spare`: keep the training images its final rescoring scores on beside val)."""
    from factory.data import load_dataset

    return load_dataset(
        config.dataset,
        root=Path(config.data_root) if config.data_root else None,
        seed=config.seed,
        download=download,
        limit_train=config.train_size,
        keep_spare=(config.rescore_images or 0) if spare and config.rescore > 0 else 0,
    )


def remove_new_run(run_dir: Path, existed: bool) -> None:
    """Undo what starting a run wrote: its config and database, and the directory if new."""
    for name in (CONFIG_NAME, DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm"):
        (run_dir / name).unlink(missing_ok=True)
    if not existed:
        with contextlib.suppress(OSError):
            run_dir.rmdir()


def finished_run(run_dir: Path) -> RunResult | None:
    """What a finished run did, if `run_dir` holds one: its pareto.json was written after
    the last unit, with nothing stopping it early."""

    try:
        doc = json.loads((run_dir / "pareto.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if pareto_problem(doc) is not None or doc.get("stopped") is not None:
        return None
    done, total = doc.get("units_done"), doc.get("total_units")
    if not isinstance(done, int) or done != total:
        return None
    return RunResult(run_dir, [], done, total, doc["evaluations"], None, finished_before=True)


def check_run_dir(config: SearchConfig, run_dir: Path, resume: bool) -> RunResult | None:
    """On resume the saved config must match, and a finished run comes back as it is; a new
    run never replaces one."""
    if resume:
        check_resume(run_dir, config.to_dict())
        return finished_run(run_dir)  # says so; nothing is measured or rewritten again
    if (run_dir / "config.json").exists():
        raise UserError(f"{run_dir} already holds a run; resume it with --resume {run_dir}")
    return None


def create_run_dir(config: SearchConfig, run_dir: Path, resume: bool) -> bool:
    """The run directory with its config; whether the directory existed before."""
    existed = run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    if not resume:
        save_config(run_dir, config.to_dict())
    return existed
