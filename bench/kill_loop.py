"""The kill loop's record: runs the slow test tests/search/test_kill_loop.py (20 SIGKILLs of
one search, each followed by --resume, beside an uninterrupted run) and writes
docs/kill_loop.md from what it reports.

Run: python bench/kill_loop.py [--out docs/kill_loop.md]    (5-10 min on 2 cores)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe_machine

ROOT = Path(__file__).resolve().parents[1]
TEST = "tests/search/test_kill_loop.py"


def page(result: dict, last: str) -> str:
    from tests.kill_loop import SEARCH

    moments = Counter(k["moment"] for k in result["kills"])
    lines = [
        "# The kill loop",
        "",
        f"- Date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; {describe_machine()}",
        f"- Search: `factory search {' '.join(SEARCH)}` (MACs as the cost: deterministic)",
        f"- {len(result['kills'])} SIGKILLs, each followed by `--resume`: "
        + ", ".join(f"{n} at {m}" for m, n in moments.items())
        + " (start: a random instant of a process's first 1-8 s; training: just after a "
        "unit's checkpoint; evaluation: just after an evaluation is recorded; checkpoint: "
        "while the checkpoint's temporary directory exists)",
        f"- Every evaluation recorded before a kill still there, unchanged: "
        f"**{'yes' if result['kept'] else 'NO'}**",
        f"- Final front identical to an uninterrupted run with the same seed (and every "
        f"evaluation too): **yes** ({len(result['front'])} architectures, "
        f"{result['evaluations']} evaluations); pytest: {last}",
        f"- Wall time of the loop: {result['seconds'] / 60:.1f} min",
        "- Re-record: `python bench/kill_loop.py`",
        "",
        "| kill | moment | evaluations recorded when killed |",
        "|---:|---|---:|",
        *(f"| {k['kill']} | {k['moment']} | {k['evaluations']} |" for k in result["kills"]),
        "",
        "## Why nothing is lost",
        "",
        "Each evaluation is committed to SQLite (WAL, synchronous=FULL) before the search "
        "moves on; a checkpoint is written whole into a temporary directory and swapped in by "
        "renames, so a kill at any instant leaves the previous one complete. A resumed run "
        "replays the interrupted unit from that checkpoint with the same random streams, "
        "taking the evaluations it already recorded from the database instead of measuring "
        "them again: the run continues exactly as if it had never stopped.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "kill_loop.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "kill.json"
        env = {**os.environ, "EMF_KILL_REPORT": str(report), "PYTHONPATH": str(ROOT)}
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "slow", TEST],
            cwd=ROOT, env=env, capture_output=True, text=True,
        )  # fmt: skip
        if proc.returncode != 0:
            raise SystemExit(f"the kill loop failed:\n{proc.stdout[-4000:]}")
        result = json.loads(report.read_text())
    sys.path.insert(0, str(ROOT))
    last = proc.stdout.strip().splitlines()[-1]
    args.out.write_text(page(result, last))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
