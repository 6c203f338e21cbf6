"""bench/baselines_page.py: each baseline's cell says whether the front dominates it, and
why not when no front network is as accurate (the page must explain a missed goal)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from baselines_page import verdict_cell


def test_an_undominated_baseline_says_why() -> None:
    timing = {"ratio": 0.553, "pairs_faster": 15, "pairs": 15}
    assert verdict_cell({"by": "abc", "timing": timing, "dominated": True}) == (
        "**yes**: abc (0.553x, 15/15)"
    )
    slow = {**timing, "ratio": 1.14, "pairs_faster": 3}
    assert verdict_cell({"by": "abc", "timing": slow, "dominated": False}).startswith("no: abc")
    assert verdict_cell(None, 0.9082) == "no: the front's best is 90.82 %"
    assert verdict_cell(None) == ""  # a front network's own row
