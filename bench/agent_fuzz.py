"""Fuzz the device agent from its OpenAPI document in both tiers and record the counts in
docs/agent_fuzz.md.

Run: python bench/agent_fuzz.py [--out docs/agent_fuzz.md]

Each tier is `tests/profilers/test_agent_fuzz.py` run by pytest (the default tier, then the
slow one with `-m slow`), which writes its status counts to a JSON file; this script turns
them into the page. Nothing here decides a pass: the tests do.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe_machine

ROOT = Path(__file__).resolve().parents[1]
TEST = "tests/profilers/test_agent_fuzz.py"
TIERS = (("default", "not slow", "test_fuzz_default_tier"), ("slow", "slow", "test_fuzz_slow_tier"))


def run_tier(marker: str, name: str) -> tuple[list[dict], str, float]:
    """(status counts, pytest's last line, seconds) of one tier."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "statuses.json"
        env = {**os.environ, "EMF_FUZZ_REPORT": str(report), "PYTHONPATH": str(ROOT)}
        start = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", TEST,
             "-m", marker, "-k", name],
            cwd=ROOT, env=env, capture_output=True, text=True,
        )  # fmt: skip
        seconds = time.monotonic() - start
        last = (proc.stdout.strip().splitlines() or ["(no output)"])[-1]
        if proc.returncode != 0:
            raise SystemExit(f"{name} failed:\n{proc.stdout[-4000:]}")
        return json.loads(report.read_text()), last, seconds


def page(results: dict[str, tuple[list[dict], str, float]]) -> str:
    lines = [
        "# The agent, fuzzed",
        "",
        f"- Date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; {describe_machine()}",
        "- Tool: schemathesis (every check; `positive_data_acceptance` also accepts 400, 413 "
        "and the documented 501: any bytes fit `format: binary`, only ONNX is accepted), "
        "driven from `GET /openapi.json` of an in-process agent with a token, a 64 KiB "
        "upload cap and a 60 s job limit",
        "- Goals, checked by `tests/profilers/test_agent_fuzz.py` after every request: no "
        "5xx except the 501 of `/engine` where TensorRT is missing, no crash, `/health` "
        "answering 200, and at the end nothing written in the working or the temp directory",
        "- Re-record: `python bench/agent_fuzz.py` (about 30 s on 2 cores)",
        "",
        "| tier | requests | 5xx other than 501 | result | seconds |",
        "|---|---:|---:|---|---:|",
    ]
    for tier, (rows, last, seconds) in results.items():
        total = sum(r["count"] for r in rows)
        bad = sum(r["count"] for r in rows if r["status"] >= 500 and r["status"] != 501)
        lines.append(f"| {tier} | {total} | {bad} | {last} | {seconds:.0f} |")
    for tier, (rows, _, _) in results.items():
        lines += ["", f"## Responses, {tier} tier", "", "| request | status | count |"]
        lines += ["|---|---:|---:|"]
        lines += [f"| {r['request']} | {r['status']} | {r['count']} |" for r in rows]
    lines += [
        "",
        "## Reading these figures",
        "",
        "Random bodies are refused where the agent checks them (`onnx.checker`, 400) before "
        "any runtime sees them, so the fuzzer exercises parsing, limits and authentication; "
        "the profiling path with real models is covered by `tests/profilers/test_agent_*.py`. "
        "405s are schemathesis probing methods the API does not have; 401s its requests "
        "without the token. `/engine` answers 501 on this machine (no TensorRT).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "agent_fuzz.md")
    args = parser.parse_args()
    results = {tier: run_tier(marker, name) for tier, marker, name in TIERS}
    args.out.write_text(page(results))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
