"""docs/nb201.md and docs/nb201_hv.png from what bench/nb201.py measured (docs/nb201.json)."""

from __future__ import annotations

import math
from pathlib import Path

from plots import save

GOAL_SPEEDUP = 3.0  # pnsga3 and cycle-annealing: <= a third of random's queries to 0.99
GOAL_CORR, GOAL_SPAN = 0.6, 0.8


def _q(x: float) -> str:
    return "never" if math.isinf(x) or math.isnan(x) else f"{x:.0f}"


def goals(doc: dict) -> list[dict]:
    """Each goal of issue 13 with what was measured and whether it was met."""
    out = []
    for name in ("pnsga3", "cycle-annealing"):
        for device, d in doc["devices"].items():
            rand = d["to_level"]["random (whole table)"]["median"][0]
            mine = d["to_level"].get(name, {}).get("median", [math.inf])[0]
            out.append({
                "goal": f"{name} reaches {doc['level']} in <= 1/3 of random's queries, {device}",
                "target": f"<= {rand / GOAL_SPEEDUP:.0f}",
                "measured": f"{_q(mine)} vs random {rand:.0f}",
                "met": mine <= rand / GOAL_SPEEDUP,
            })  # fmt: skip
    stats = [s for d in doc["devices"].values() for s in d["anneal"]]
    if stats:
        corr = sum(s["corr"] for s in stats) / len(stats)
        span = sum(s["span"] for s in stats) / len(stats)
        out.append({"goal": "cycle-annealing: corr(F, mean sampled cost), anneal phases",
                    "target": f">= {GOAL_CORR}", "measured": f"{corr:.3f}",
                    "met": corr >= GOAL_CORR})  # fmt: skip
        out.append({"goal": "cycle-annealing: share of [F_min, F_max] its front spans",
                    "target": f">= {GOAL_SPAN:.0%}", "measured": f"{span:.1%}",
                    "met": span >= GOAL_SPAN})  # fmt: skip
    return out


def write_page(doc: dict, out: Path) -> str:
    """Writes nb201.md (and the hypervolume plot) and returns the page's text."""
    budgets, level = doc["budgets"], doc["level"]
    lines = [
        "# Strategies against the exact front: NAS-Bench-201 with measured device latencies",
        "",
        f"- command: `{doc['command']}` ({doc['wall_s'] / 60:.1f} min)",
        f"- machine: {doc['machine']}, date {doc['date']}",
        "- table: `--benchmark nb201` (NAS-Bench-201 CIFAR-10 test accuracy; latencies of "
        "HW-NAS-Bench and HELP; factory/tabular/data/NOTICE.md)",
        f"- every strategy gets exactly the same number of distinct queries; {doc['seeds']} "
        "seeds; 95 % bootstrap intervals over seeds in brackets",
        "- normalised hypervolume: (accuracy up, latency down) over the queried architectures, "
        "divided by that of the whole table; reference point accuracy at the table's 5th "
        "percentile, latency 1.01 x the table's largest (chance-level cells fall below it)",
        f"- queries to {level}: the fewest leading queries of a run with the largest budget "
        f"whose hypervolume reaches {level} of the exact front's ('never': not within it); "
        "random's from a uniform order of the whole table, so never cut off",
        "",
        "## Goals",
        "",
        "| goal | target | measured | met |",
        "|---|---|---|:---:|",
    ]
    for g in goals(doc):
        lines.append(f"| {g['goal']} | {g['target']} | {g['measured']} | "
                     f"{'yes' if g['met'] else '**no**'} |")  # fmt: skip
    for device, d in doc["devices"].items():
        lines += ["", f"## {device}", ""]
        lines += [f"| strategy | {' | '.join(f'hv @ {b}' for b in budgets)} | "
                  f"queries to {level} (median) | runs reaching it |"]  # fmt: skip
        lines += ["|---|" + "---:|" * (len(budgets) + 2)]
        for name, hv in d["hv"].items():
            cells = [f"{v[0]:.4f} [{v[1]:.4f}, {v[2]:.4f}]" for v in (hv[str(b)] for b in budgets)]
            reach = d["to_level"].get(name, {})
            med = reach.get("median", [math.inf] * 3)
            runs = f"{reach.get('reached', 0)}/{reach.get('runs', 0)}"
            lines.append(f"| {name} | {' | '.join(cells)} | {_q(med[0])} [{_q(med[1])}, "
                         f"{_q(med[2])}] | {runs} |")  # fmt: skip
        rand = d["to_level"]["random (whole table)"]
        m = rand["median"]
        lines.append(f"| random (whole table) | | | | {m[0]:.0f} [{m[1]:.0f}, {m[2]:.0f}] | "
                     f"{rand['reached']}/{rand['runs']} |")  # fmt: skip
        if d["anneal"]:
            corr = [s["corr"] for s in d["anneal"]]
            span = [s["span"] for s in d["anneal"]]
            s0 = d["anneal"][0]
            lines += ["", f"cycle-annealing at {max(budgets)} queries: corr(F, mean sampled "
                      f"cost) {sum(corr) / len(corr):.3f} (min {min(corr):.3f}, max "
                      f"{max(corr):.3f}); front spans {sum(span) / len(span):.1%} of [F_min, "
                      f"F_max] = [{s0['f_min']:.2f}, {s0['f_max']:.2f}] ms"]  # fmt: skip
        if d["stopped"]:
            lines += ["", "Runs that stopped before their budget: " + "; ".join(d["stopped"])]
    _plot(doc, out / "nb201_hv.png")
    lines += ["", "![normalised hypervolume vs queries](nb201_hv.png)", "",
              "![F vs sampled cost](nb201_f.png)", ""]  # fmt: skip
    text = "\n".join(lines)
    tail = out / "nb201_notes.md"  # hand-written reading of the figures, kept across reruns
    if tail.exists():
        text += "\n" + tail.read_text()
    (out / "nb201.md").write_text(text + ("" if text.endswith("\n") else "\n"))
    return text


def _plot(doc: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    devices = list(doc["devices"])
    cols = min(3, len(devices))
    rows = -(-len(devices) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), dpi=110,
                             squeeze=False)  # fmt: skip
    for ax, device in zip(axes.flat, devices, strict=False):
        for name, curve in doc["devices"][device]["curve"].items():
            ax.plot(doc["curve_queries"][: len(curve)], curve, "o-", ms=3, label=name)
        ax.axhline(doc["level"], c="0.5", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.set_title(device, fontsize=9)
        ax.set_ylim(0.85, 1.0)
    for ax in list(axes.flat)[len(devices) :]:
        ax.axis("off")
    ylabel = "normalised hypervolume"
    save(fig, axes.flat[0], path, "distinct queries", ylabel, legend="lower right")
