"""docs/benchmarks.md: every goal of the project against what the bench scripts measured.

Reads only what the scripts wrote (docs/*.json and the tables of their generated pages), so
no figure here is typed by hand; each row links the page with the command, machine and date.
A page that was never generated shows as "not run".

    python bench/benchmarks.py
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

from baselines_page import FLAGSHIP_RIVAL, GOAL_DOMINATED
from pairs import shown_faster

DOCS = Path(__file__).resolve().parents[1] / "docs"


def table(page: str, first_header: str) -> list[dict[str, str]]:
    """The rows of the Markdown table in docs/`page` whose first header cell is given."""
    lines = (DOCS / page).read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(
            dict(zip(header, (c.strip() for c in line.strip("|").split("|")), strict=False))
        )
    return rows


def number(cell: str) -> float:
    return float(re.sub(r"[^0-9.+-]", "", cell.split("/")[-1]))


def load(name: str) -> dict:
    return json.loads((DOCS / name).read_text())


Row = tuple[str, str, str, bool | None, str]  # goal, target, measured, met, page


def demo() -> list[Row]:
    d = load("demo.json")
    total = sum(s["wall_s"] for s in d["steps"]) / 60
    return [("demo: search -> train -> export -> report", "<= 45 min on 2 cores",
             f"{total:.1f} min", total <= 45, "demo.md")]  # fmt: skip


def baselines() -> list[Row]:
    d = load("baselines.json")
    n, k = d["baselines"], d["baselines_dominated"]
    rows: list[Row] = [
        ("searched front dominates the hand-designed baselines (paired)",
         f">= {GOAL_DOMINATED} of {n}", f"{k} of {n}", k >= GOAL_DOMINATED, "baselines.md"),
    ]  # fmt: skip
    g = d.get("flagship")
    if not g:
        rows.append(
            (f"flagship: a searched model >= 94.0 % and faster than {FLAGSHIP_RIVAL}",
             ">= 94.0 % and < 1x", "not attempted: this page has no long-trained run "
             "(`bench/baselines.py measure --long RUN`, 10+ epochs: a GPU's work; none was "
             "lent)", False, "baselines.md")
        )  # fmt: skip
    if g:
        t = g["timing"]
        rows += [
            ("flagship: searched model, test accuracy", ">= 94.0 %",
             f"{100 * g['test_accuracy']:.2f}"
             f" % ({g['arch_id']}, {g['epochs']:g} epochs)", g["test_accuracy"] >= 0.94,
             "baselines.md"),
            (f"... latency vs {FLAGSHIP_RIVAL} (x86-cpu)", "< 1x", f"{t['ratio']:.3f}x, "
             f"faster in {t['pairs_faster']} of {t['pairs']} pairs", shown_faster(t),
             "baselines.md"),
        ]  # fmt: skip
    return rows


def strategies() -> list[Row]:
    hv = {r["strategy"]: number(r["vs random"]) for r in table("strategies.md", "strategy")}
    spread = table("strategies.md", "generation")[-1]
    top = {k: number(v) for k, v in spread.items() if k != "generation"}
    return [
        *((f"hypervolume of {s} vs random search", ">= 1.1x", f"{hv[s]:.3f}x", hv[s] >= 1.1,
           "strategies.md") for s in ("pnsga3", "cycle-annealing")),
        ("CARS: large models kept (largest latency in the last population)",
         "pNSGA-III > NSGA-III", " vs ".join(f"{k.split()[0]} {v:.3f} ms" for k, v in top.items()),
         top[next(k for k in top if k.startswith("pnsga3"))]
         > top[next(k for k in top if k.startswith("nsga3"))], "strategies.md"),
    ]  # fmt: skip


def lut() -> list[Row]:
    rows = table("latency_tables.md", "space")
    out: list[Row] = []
    for space in dict.fromkeys(r["space"] for r in rows):
        best = min(number(r["MAPE"]) for r in rows if r["space"] == space)
        goal = f"latency table MAPE, {space} (best row of the bench)"
        out.append((goal, "<= 3 %", f"{best:.1f} %", best <= 3.0, "latency_tables.md"))
    return out


def canas() -> list[Row]:
    d = load("canas.json")
    hv = d["hypervolume"]
    ratio = hv["cycle-annealing"] / hv["mnas (all runs)"]
    c_ca, c_mnas = (
        d["coverage"]["C(cycle-annealing, mnas)"],
        d["coverage"]["C(mnas, cycle-annealing)"],
    )
    measured = f"{ratio:.3f}x; coverage C(CA, Mnas) {c_ca:.2f}, C(Mnas, CA) {c_mnas:.2f}"
    goal = "CANAS: one cycle-annealing run vs MnasNet runs of the same cost (hypervolume)"
    return [(goal, "> 1x", measured, ratio > 1, "canas.md")]


def vgg_lite() -> list[Row]:
    d = load("vgg_lite.json")
    rows: list[Row] = []
    for title, r in d["searches"].items():
        level, reached = list(r["to_reach"].items())[1]
        a, b = reached["from VGG-11"]["median"], reached["random start"]["median"]
        met = a is not None and (b is None or a < b)
        rows.append((f"VGG-Lite, {title}: evaluations to reach {level} (median of "
                     f"{d['seeds']} seeds)", "VGG-11 start < random start",
                     f"{a or 'never'} vs {b or 'never'}", met, "vgg_lite.md"))  # fmt: skip
    return rows


def latency_stability() -> list[Row]:
    d = load("latency_stability.json")
    rows: list[Row] = []
    for space, s in d["spaces"].items():
        c = s["modes"]["robust"]
        rows.append((f"latency objective quiet vs loaded, {space} (robust mode)",
                     "tau >= 0.9, median diff <= 5 %",
                     f"tau {c['tau']:.3f}, {100 * c['median_rel_diff']:.1f} %", c["goal_met"],
                     "latency_stability.md"))  # fmt: skip
    return rows


def ranking() -> list[Row]:
    d = load("ranking_mobilenet.json")
    s = d["stats"]
    goal = "supernet ranking vs trained alone, mobilenet (default preset)"
    measured = (
        f"tau {s['kendall_tau']:.3f}, rho {s['spearman_rho']:.3f}, top-5 {s['top5_overlap']:.0%}"
    )
    if d.get("stats_one_shot") and d.get("rescore"):  # what the final rescoring buys
        measured += f" rescored (one-shot: tau {d['stats_one_shot']['kendall_tau']:.3f})"
    if d.get("repeat"):  # the standalone recipe against itself: how far the yardstick reaches
        measured += (
            f"; two trainings alone agree at tau {d['repeat']['seed_vs_seed']['kendall_tau']:.3f}"
        )
    return [(goal, "Kendall tau >= 0.6", measured, s["kendall_tau"] >= 0.6, "ranking_mobilenet.md")]


def beat_mobilenet() -> list[Row]:
    d = load("beat_mobilenet.json")
    runs = d["runs"]
    wins = [r for r in runs if r["met"]]

    def best(run: dict) -> str:
        m = max(run["models"], key=lambda r: (r["faster"] and r["as_accurate"],
                                              r["test_accuracy"]), default=None)  # fmt: skip
        if m is None:
            return "no front model beat it as the search ranks them"
        return (f"{m['arch_id']}: {100 * m['test_accuracy']:.2f} % vs "
                f"{100 * run['baseline']['test_accuracy']:.2f} %, ratio "
                f"{m['timing']['ratio']:.3f}, faster in {m['timing']['pairs_faster']}/"
                f"{m['timing']['pairs']} pairs")  # fmt: skip

    measured = f"met in {len(wins)} of {len(runs)} runs; " + "; ".join(best(r) for r in runs)
    seeds = runs[0].get("seeds", [0]) if runs else [0]
    if len(seeds) > 1:
        measured += f" (test accuracy: mean of {len(seeds)} training seeds)"
    epochs = runs[0]["recipe"].get("epochs", 0) if runs else 0
    return [("default search: a front model faster than MobileNetV2@0.5 and as accurate "
             f"({epochs:g} epochs, CPU; every run)", "as accurate and shown faster",
             measured, d["met"], "beat_mobilenet.md")]  # fmt: skip


def trimmed() -> list[Row]:
    d = load("trimmed_mobilenet.json")
    variants = d["rows"][1:]
    wins = [r for r in variants if r["verdict"] == "faster and as accurate"]
    measured = f"{len(wins)} of {len(variants)} MobileNetV2@0.5 variants with layers dropped"
    return [("the mobilenet space holds models faster than MobileNetV2@0.5 and as accurate "
             "(3 epochs, CPU; informative)", "at least one", measured, bool(wins),
             "trimmed_mobilenet.md")]  # fmt: skip


def kill_loop() -> list[Row]:
    text = (DOCS / "kill_loop.md").read_text()
    kept = "recorded before a kill still there, unchanged: **yes**" in text
    same = "uninterrupted run with the same seed (and every evaluation too): **yes**"
    return [("kill loop: 20 SIGKILLs + --resume keep every recorded evaluation", "all kept",
             "yes" if kept else "no", kept, "kill_loop.md"),
            ("... and end on the uninterrupted run's front", "identical",
             "yes" if same in text else "no", same in text, "kill_loop.md")]  # fmt: skip


def agent_fuzz() -> list[Row]:
    rows = table("agent_fuzz.md", "tier")
    return [(f"agent fuzzed ({r['tier']} tier): no 5xx but the documented 501",
             "0 of the requests", f"{r['5xx other than 501']} of {r['requests']}",
             number(r["5xx other than 501"]) == 0, "agent_fuzz.md") for r in rows]  # fmt: skip


def scale() -> list[Row]:
    d = load("scale.json")
    ray = {k: v["per_min"] for k, v in d["scoring"].items()}
    load_avg = d["load_average_before"][0]
    return [
        ("Ray scoring, 2 workers vs 1 (2 shared cores: informative)", "> 1x",
         f"{ray['ray, 2 workers'] / ray['ray, 1 worker']:.2f}x (load {load_avg:.1f})", None,
         "scale.md"),
        ("supernet images/s, 2 gloo ranks vs 1 (2 shared cores: informative)", "> 1x",
         f"{d['training']['2 ranks'] / d['training']['1 rank']:.2f}x (load {load_avg:.1f})",
         None, "scale.md"),
    ]  # fmt: skip


def nb201() -> list[Row]:
    from nb201_page import goals

    return [(g["goal"], g["target"], g["measured"], g["met"], "nb201.md")
            for g in goals(load("nb201.json"))]  # fmt: skip


SECTIONS: list[tuple[str, Callable[[], list[Row]]]] = [
    ("demo", demo),
    ("latency objective under load", latency_stability),
    ("supernet ranking", ranking),
    ("the default search against MobileNetV2@0.5", beat_mobilenet),
    ("the space against MobileNetV2@0.5", trimmed),
    ("against hand-designed networks", baselines),
    ("strategies", strategies),
    ("latency tables", lut),
    ("CANAS", canas),
    ("strategies against the exact front (NAS-Bench-201)", nb201),
    ("VGG-Lite", vgg_lite),
    ("scale out", scale),
    ("interruption", kill_loop),
    ("the device agent under fuzzing", agent_fuzz),
]


def main() -> None:
    lines = [
        "# Benchmarks: the goals and what was measured",
        "",
        "Generated by `python bench/benchmarks.py` from the pages the bench scripts wrote; "
        "each linked page names the command, the machine, the date and the statistics. "
        "Do not edit by hand.",
        "",
        "| goal | target | measured | met | details |",
        "|---|---|---|:---:|---|",
    ]
    for name, section in SECTIONS:
        try:
            rows = section()
        except (OSError, StopIteration, KeyError, ValueError) as exc:
            lines.append(f"| {name} | | not run ({type(exc).__name__}) | | |")
            continue
        for goal, target, measured, met, page in rows:
            mark = {True: "yes", False: "**no**", None: ""}[met]
            lines.append(f"| {goal} | {target} | {measured} | {mark} | [{page}]({page}) |")
    lines += [
        "",
        "Pages: [demo](demo.md), [latency stability](latency_stability.md), "
        "[ranking](ranking_mobilenet.md), [against MobileNetV2@0.5](beat_mobilenet.md), "
        "[trimmed MobileNetV2@0.5](trimmed_mobilenet.md), "
        "[baselines](baselines.md), [strategies](strategies.md), "
        "[latency tables](latency_tables.md), [CANAS](canas.md), [NAS-Bench-201](nb201.md), "
        "[VGG-Lite](vgg_lite.md), [prebuilt models, INT8 vs FP32](prebuilt.md), "
        "[profiler](profiler.md), [scale out](scale.md), [kill loop](kill_loop.md), "
        "[agent fuzzing](agent_fuzz.md).",
        "",
    ]
    (DOCS / "benchmarks.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
