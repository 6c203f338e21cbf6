"""The run store: every evaluation in SQLite, and the resolved config as JSON, in the run dir.

A search can run for hours; a crash or a kill must never lose an evaluation that was
recorded. Each `add` is one transaction in a WAL database with `synchronous=FULL`, committed
before it returns, so a row that was reported survives a SIGKILL (and a power cut). The
tables are plain enough to read with the `sqlite3` CLI:

    sqlite3 RUN/evaluations.sqlite 'SELECT * FROM evaluations_wide ORDER BY accuracy DESC'
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from factory.strategies.base import Record
from targets.atomic import write_atomic
from targets.errors import UserError

SCHEMA_VERSION = 1
DB_NAME = "evaluations.sqlite"
CONFIG_NAME = "config.json"
# The unit of every objective a strategy may record; the unit is stored next to each value.
OBJECTIVE_UNITS: dict[str, str] = {
    "accuracy": "fraction",
    "latency_ms": "ms",
    "macs": "multiply-adds",
    "params": "count",
}
# Config keys that say where/how a run is driven, not what it searches: a resume may differ.
RESUME_IGNORE: frozenset[str] = frozenset({"resume", "out", "verbose", "quiet", "progress"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS evaluations (
    id INTEGER PRIMARY KEY,
    arch_id TEXT NOT NULL,
    genotype TEXT NOT NULL,      -- choice indices joined by '-', e.g. '0-3-1'
    phase TEXT NOT NULL,
    step INTEGER NOT NULL,
    wall_s REAL NOT NULL,        -- seconds since the run started
    created_at TEXT NOT NULL,    -- UTC, ISO 8601
    extra TEXT NOT NULL          -- JSON object
);
CREATE TABLE IF NOT EXISTS objectives (
    eval_id INTEGER NOT NULL REFERENCES evaluations(id),
    name TEXT NOT NULL,
    value REAL NOT NULL,
    unit TEXT NOT NULL,
    PRIMARY KEY (eval_id, name)
);
CREATE INDEX IF NOT EXISTS evaluations_phase ON evaluations(phase);
CREATE INDEX IF NOT EXISTS evaluations_arch ON evaluations(arch_id);
"""


def _wide_view_sql() -> str:
    """One row per evaluation, one column per known objective (its name carries the unit)."""
    cols = ",\n    ".join(
        f"MAX(CASE WHEN o.name = '{name}' THEN o.value END) AS {name}" for name in OBJECTIVE_UNITS
    )
    return (
        "CREATE VIEW IF NOT EXISTS evaluations_wide AS SELECT\n"
        "    e.id, e.arch_id, e.genotype, e.phase, e.step, e.wall_s, e.created_at,\n"
        f"    {cols}\n"
        "FROM evaluations e LEFT JOIN objectives o ON o.eval_id = e.id GROUP BY e.id;"
    )


class RunStore:
    """The evaluation database of one run directory; use as a context manager."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.run_dir / DB_NAME
        # Autocommit mode: transactions are explicit, so nothing stays uncommitted by accident.
        self._db = sqlite3.connect(self.path, isolation_level=None)
        try:
            self._open()
        except sqlite3.DatabaseError as e:
            self._db.close()
            raise UserError(f"{self.path} is not a run database: {e}") from e
        except BaseException:
            self._db.close()
            raise

    def _open(self) -> None:
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._refuse_newer_schema()  # before touching a database this version cannot read
        self._db.executescript(f"BEGIN IMMEDIATE;\n{_SCHEMA}\n{_wide_view_sql()}\nCOMMIT;")
        self._db.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
            (str(SCHEMA_VERSION),),
        )

    def _refuse_newer_schema(self) -> None:
        has_meta = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
        ).fetchone()
        row = (
            has_meta
            and self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        )
        if row and int(row[0]) > SCHEMA_VERSION:
            raise UserError(
                f"{self.path} has schema version {row[0]}, newer than this factory reads "
                f"({SCHEMA_VERSION}): upgrade edge-model-factory to open it"
            )

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def add(self, record: Record) -> int:
        """Record one evaluation; it is committed (durably) before the id is returned."""
        return self.add_many([record])[0]

    def add_many(self, records: Iterable[Record]) -> list[int]:
        """Record several evaluations in one transaction: all of them or none."""
        rows = [_row(r) for r in records]  # validate everything before writing anything
        ids: list[int] = []
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for evaluation, objectives in rows:
                cur = self._db.execute(
                    "INSERT INTO evaluations (arch_id, genotype, phase, step, wall_s, "
                    "created_at, extra) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    evaluation,
                )
                eval_id = int(cur.lastrowid)  # type: ignore[arg-type]
                self._db.executemany(
                    "INSERT INTO objectives (eval_id, name, value, unit) VALUES (?, ?, ?, ?)",
                    [(eval_id, *o) for o in objectives],
                )
                ids.append(eval_id)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return ids

    def records(self, phase: str | None = None) -> list[Record]:
        """Recorded evaluations in the order they were added, optionally of one phase."""
        where, args = ("WHERE phase = ?", (phase,)) if phase is not None else ("", ())
        evals = self._db.execute(
            "SELECT id, arch_id, genotype, phase, step, wall_s, extra FROM evaluations "
            f"{where} ORDER BY id",
            args,
        ).fetchall()
        objectives: dict[int, dict[str, float]] = {}
        for eval_id, name, value in self._db.execute(
            "SELECT o.eval_id, o.name, o.value FROM objectives o JOIN evaluations e "
            f"ON e.id = o.eval_id {where} ORDER BY o.rowid",
            args,
        ):
            objectives.setdefault(eval_id, {})[name] = float(value)
        return [
            Record(
                genotype=_parse_genotype(genotype),
                arch_id=arch_id,
                objectives=objectives.get(eval_id, {}),
                phase=ph,
                step=int(step),
                wall_s=float(wall_s),
                extra=json.loads(extra),
            )
            for eval_id, arch_id, genotype, ph, step, wall_s, extra in evals
        ]

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM evaluations").fetchone()[0])

    def last_id(self) -> int | None:
        """Id of the newest evaluation (a checkpoint can note it to tell later rows apart)."""
        return self._db.execute("SELECT MAX(id) FROM evaluations").fetchone()[0]

    def last_step(self) -> int | None:
        """Step of the most recently recorded evaluation; None for an empty store."""
        row = self._db.execute("SELECT step FROM evaluations ORDER BY id DESC LIMIT 1").fetchone()
        return None if row is None else int(row[0])

    def units(self) -> dict[str, str]:
        """Unit of each objective present in the store, e.g. {"latency_ms": "ms"}."""
        rows = self._db.execute("SELECT DISTINCT name, unit FROM objectives ORDER BY name")
        return {name: unit for name, unit in rows}


def _row(record: Record) -> tuple[tuple[Any, ...], list[tuple[str, float, str]]]:
    objectives = []
    for name, value in record.objectives.items():
        if name not in OBJECTIVE_UNITS:
            raise ValueError(f"unknown objective {name!r}; known: {', '.join(OBJECTIVE_UNITS)}")
        if math.isnan(float(value)):
            raise ValueError(f"objective {name!r} of {record.arch_id} is NaN")
        objectives.append((name, float(value), OBJECTIVE_UNITS[name]))
    evaluation = (
        record.arch_id,
        "-".join(str(int(c)) for c in record.genotype),
        record.phase,
        int(record.step),
        float(record.wall_s),
        datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        json.dumps(_jsonable(record.extra), sort_keys=True),
    )
    return evaluation, objectives


def _parse_genotype(text: str) -> tuple[int, ...]:
    return tuple(int(c) for c in text.split("-")) if text else ()


# --- the resolved config -------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    """Plain JSON types for what a resolved config holds (paths, tuples, numpy scalars)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (os.PathLike, Path)):
        return os.fspath(value)
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"config value {value!r} ({type(value).__name__}) is not JSON-able")


def save_config(run_dir: Path, config: Mapping[str, Any]) -> None:
    """Save the resolved config of a run as `config.json` (atomically)."""
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    text = json.dumps(_jsonable(config), indent=2, sort_keys=True) + "\n"
    write_atomic(Path(run_dir) / CONFIG_NAME, text.encode())


def load_config(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / CONFIG_NAME
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise UserError(f"{run_dir} is not a run directory: it has no {CONFIG_NAME}") from e
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(config, dict):
        raise UserError(f"{path} does not hold a JSON object")
    return config


def _flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def config_diff(
    old: Mapping[str, Any], new: Mapping[str, Any], ignore: Iterable[str] = ()
) -> list[str]:
    """Lines like "generations: 10 -> 20" (nested keys dotted, sorted) for every difference.

    Both sides go through JSON first, so a tuple and the list it was saved as are equal.
    A key in `ignore` also ignores everything nested under it."""
    ignore = set(ignore)
    a, b = _flatten(_jsonable(old)), _flatten(_jsonable(new))
    missing = object()
    lines = []
    for key in sorted(a.keys() | b.keys()):
        if key in ignore or any(key.startswith(i + ".") for i in ignore):
            continue
        va, vb = a.get(key, missing), b.get(key, missing)
        if va != vb or (type(va) is not type(vb) and not _same_number(va, vb)):
            lines.append(f"{key}: {_show(va, missing)} -> {_show(vb, missing)}")
    return lines


def _same_number(a: Any, b: Any) -> bool:
    numbers = (int, float)
    is_num = isinstance(a, numbers) and isinstance(b, numbers)
    return is_num and not isinstance(a, bool) and not isinstance(b, bool) and a == b


def _show(value: Any, missing: object) -> str:
    return "(absent)" if value is missing else json.dumps(value)


def check_resume(
    run_dir: Path, new_config: Mapping[str, Any], ignore: Iterable[str] = RESUME_IGNORE
) -> None:
    """Refuse to resume `run_dir` with a config that differs from the one it was started with."""
    lines = config_diff(load_config(run_dir), new_config, ignore)
    if lines:
        raise UserError(
            f"cannot resume run {run_dir} with a different config: {'; '.join(lines)} "
            "(resume with the same options, or start a new run with --out)"
        )
