"""Ranking fidelity: does the search's supernet order architectures as training them does?

For a finished search run: architectures spread over the space's cost range (its manual
architectures among them) are scored twice, (a) as the search scores them, with the run's
final shared weights, BN recalibration and validation images, and (b) trained on their own
with one short fixed recipe (the same for all; on a GPU when there is one), tested on the
test images. Reports Kendall tau, Spearman rho and top-5 overlap, with a scatter plot.

    factory search --out runs/proof --threads 1
    python bench/ranking.py runs/proof --epochs 1 --train-images 12000 --workers 2

Standalone results are cached in RUN/ranking/, so an interrupted bench continues.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing as mp
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DOCS = ROOT / "docs"


def choose(space, count: int, seed: int) -> dict[str, tuple[int, ...]]:
    """The manual architectures plus samples evenly spaced in MACs (distinct networks)."""
    import numpy as np

    from profilers.flops import count_costs

    chosen = dict(space.manual())
    rng = np.random.default_rng(seed)
    pool = {space.arch_id(g): g for g in (space.sample(rng) for _ in range(20 * count))}
    shape = (1, *space.spec.shape)
    by_macs = sorted(pool.values(), key=lambda g: count_costs(space.build(g), shape).macs)
    need = max(0, count - len(chosen))
    for k in np.linspace(0, len(by_macs) - 1, need).round().astype(int):
        chosen.setdefault(space.arch_id(by_macs[k]), by_macs[k])
    return chosen


def supernet_scores(run: Path, archs: dict[str, tuple[int, ...]], finetuned: bool) -> dict:
    """Accuracy of each architecture as the run's search scored candidates at its end: with
    its scorer, splits and final weights; `finetuned`: as its final rescoring does (each
    path trained `rescore_steps` batches on its own first)."""
    import torch

    from factory.search.checkpoint import load_checkpoint
    from factory.search.resolve import load_run_config
    from factory.search.rundir import load_data
    from factory.search.scoring import EvalSettings, Scorer
    from factory.spaces import get_space

    config = load_run_config(run)
    data = load_data(config)
    space = get_space(config.space, data.info.input_spec(), config.space_options)
    supernet = space.supernet().to(memory_format=torch.channels_last)
    supernet.load_state_dict(load_checkpoint(run).tensors["supernet"])
    settings = EvalSettings(
        batch_size=config.batch_size,
        calib_steps=config.calib_steps,
        val_size=config.val_size,
        finetune_steps=config.rescore_steps,
    )
    scorer = Scorer.of(space, config.space_options, data.train, data.val, settings)
    scorer = scorer.finetuned(data.train) if finetuned else scorer
    cpu = torch.device("cpu")
    return {name: scorer.score(supernet, g, cpu) for name, g in archs.items()}  # fmt: skip


def train_one(job: tuple[str, str, list[int], dict]) -> tuple[str, float, float]:
    """(name, test accuracy, seconds) of one architecture trained alone with the recipe."""
    run, name, genotype, opts = job
    import torch

    from factory.trained import open_run
    from factory.training import (
        TrainRecipe,
        build_seeded,
        limit_splits,
        resolve_device,
        train_model,
    )

    torch.set_num_threads(opts["threads"])
    opened = open_run(Path(run))
    data = limit_splits(opened.data, opts["train_images"], None)
    recipe = TrainRecipe(epochs=opts["epochs"])
    model = build_seeded(lambda: opened.space.build(tuple(genotype)), opts["seed"])
    generator = torch.Generator().manual_seed(opts["seed"])
    device = resolve_device(opts["device"])
    result = train_model(model, data, recipe, generator, None, name, device)
    return name, result.test.accuracy, result.seconds


def standalone_scores(
    run: Path, archs: dict, opts: dict, workers: int, cache: str = "standalone.json"
) -> dict[str, float]:
    """Trained-alone accuracies, cached per architecture in RUN/ranking/`cache`."""
    done = train_cached(run / "ranking" / cache, run, archs, opts, workers)
    return {n: done[n]["accuracy"] for n in archs}


def train_cached(cache: Path, run: Path, archs: dict, opts: dict, workers: int) -> dict:
    """{name: {accuracy, seconds}} of each architecture trained alone with `opts`, in
    `workers` processes; each result lands in `cache` as soon as it is known (a rerun with
    the same recipe trains only what is missing)."""
    cache.parent.mkdir(exist_ok=True)
    done = json.loads(cache.read_text()) if cache.exists() else {}
    key = json.dumps(opts, sort_keys=True)
    done = done if done.get("recipe") == key else {"recipe": key, "models": {}}
    todo = [(str(run), n, list(g), opts) for n, g in archs.items() if n not in done["models"]]
    with mp.get_context("spawn").Pool(workers) as pool:
        for name, acc, seconds in pool.imap_unordered(train_one, todo):
            done["models"][name] = {"accuracy": acc, "seconds": seconds}
            cache.write_text(json.dumps(done, indent=1))
            print(f"{name}: {100 * acc:.2f} % ({seconds:.0f} s)", flush=True)
    return done["models"]


def reuse(page: Path, run: Path, archs: dict, labels: dict, opts: dict, repeat: int | None) -> dict:
    """Seed RUN/ranking's caches with an earlier page's trained-alone accuracies: only for
    the same recipe (threads and device aside) and only architectures the page lists by
    the same genotype (`archs`: name -> genotype text)."""
    old = json.loads(page.read_text())
    same = ("epochs", "train_images", "seed")
    if any(old["recipe"][k] != opts[k] for k in same):
        raise SystemExit(f"{page}: recipe {old['recipe']} is not this bench's {opts}")
    by_name = {r["name"]: r for r in old["rows"]}
    found = {n: by_name[labels[n]] for n, text in archs.items()
             if labels[n] in by_name and by_name[labels[n]]["genotype"] == text}  # fmt: skip
    seeds = [("standalone", "standalone.json", opts["seed"])]
    if repeat is not None and (old.get("repeat") or {}).get("seed") == repeat:
        seeds.append(("standalone_repeat", f"standalone_seed{repeat}.json", repeat))
    for column, cache, seed in seeds:
        models = {n: {"accuracy": r[column], "seconds": None, "from": str(page)}
                  for n, r in found.items()}  # fmt: skip
        recipe = json.dumps(opts | {"seed": seed}, sort_keys=True)
        (run / "ranking").mkdir(exist_ok=True)
        (run / "ranking" / cache).write_text(json.dumps({"recipe": recipe, "models": models}))
    print(f"reused {len(found)} of {len(archs)} trained-alone results from {page}", flush=True)
    return {"date": old["date"], "command": old["command"], "run": old["run"],
            "machine": old["machine"], "reused": len(found)}  # fmt: skip


def fidelity(a: list[float], b: list[float], top: int = 5) -> dict[str, float]:
    """Kendall tau-b, Spearman rho and top-k overlap of two scorings of the same models."""
    import numpy as np

    from factory.lut.fit import kendall_tau

    def ranks(x: list[float]) -> np.ndarray:
        order = np.argsort(np.argsort(x, kind="stable"), kind="stable")
        return order.astype(float)

    rho = float(np.corrcoef(ranks(a), ranks(b))[0, 1])
    best_a = set(np.argsort(a)[-top:].tolist())
    best_b = set(np.argsort(b)[-top:].tolist())
    return {"kendall_tau": kendall_tau(a, b), "spearman_rho": rho,
            "top5_overlap": len(best_a & best_b) / top}  # fmt: skip


def plot(rows: list[dict], path: Path, title: str) -> None:
    from plots import new_axes, save

    fig, ax = new_axes()
    for manual in (False, True):
        pts = [r for r in rows if r["manual"] == manual]
        label = "manual architectures" if manual else "sampled over the cost range"
        ax.scatter([100 * r["supernet"] for r in pts], [100 * r["standalone"] for r in pts],
                   marker="*" if manual else "o", s=80 if manual else 20, label=label)  # fmt: skip
        for r in pts if manual else []:
            ax.annotate(r["name"], (100 * r["supernet"], 100 * r["standalone"]), fontsize=7)
    ax.set_title(title, fontsize=9)
    save(fig, ax, path, "supernet accuracy (%)", "trained alone, test accuracy (%)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a finished search run")
    parser.add_argument("--archs", type=int, default=16)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--train-images", type=int, default=12000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--repeat-seed",
        type=int,
        help="train every architecture again with this seed: the tau between the two "
        "trainings shows how much of the disagreement is the short training's own noise",
    )
    parser.add_argument(
        "--reuse-standalone",
        type=Path,
        metavar="PAGE_JSON",
        help="take the trained-alone accuracies from an earlier page's JSON (docs/"
        "ranking_SPACE.json) where its recipe and architectures are this run's: the "
        "yardstick does not depend on the run, and training it again costs ~30 min a seed",
    )
    args = parser.parse_args()

    from machine import describe_machine

    from factory.trained import open_run

    space = open_run(args.run).space
    run_config = json.loads((args.run / "config.json").read_text())
    archs = choose(space, args.archs, args.seed)
    names = {space.arch_id(g): n for n, g in space.manual().items()}
    labels = {n: names.get(n, n) for n in archs}
    one_shot = supernet_scores(args.run, archs, finetuned=False)
    rescoring = run_config.get("rescore", 0) > 0
    decides = supernet_scores(args.run, archs, finetuned=True) if rescoring else one_shot
    opts = {"epochs": args.epochs, "train_images": args.train_images, "seed": args.seed,
            "threads": args.threads, "device": args.device}  # fmt: skip
    reused = None
    if args.reuse_standalone is not None:
        texts = {n: space.format(g) for n, g in archs.items()}
        reused = reuse(args.reuse_standalone, args.run, texts, labels, opts, args.repeat_seed)
    alone = standalone_scores(args.run, archs, opts, args.workers)
    rows = [
        {"name": labels[n], "genotype": space.format(g), "manual": n in space.manual(),
         "supernet": decides[n], "one_shot": one_shot[n], "standalone": alone[n]}
        for n, g in archs.items()
    ]  # fmt: skip
    stats = fidelity([r["supernet"] for r in rows], [r["standalone"] for r in rows])
    stats_one_shot = fidelity([r["one_shot"] for r in rows], [r["standalone"] for r in rows])
    repeat = None
    if args.repeat_seed is not None:
        cache = f"standalone_seed{args.repeat_seed}.json"
        again = standalone_scores(args.run, archs, opts | {"seed": args.repeat_seed},
                                  args.workers, cache)  # fmt: skip
        for row, n in zip(rows, archs, strict=True):
            row["standalone_repeat"] = again[n]
        both = [(r["standalone"] + r["standalone_repeat"]) / 2 for r in rows]
        repeat = {
            "seed": args.repeat_seed,
            "seed_vs_seed": fidelity([r["standalone"] for r in rows], list(again.values())),
            "supernet_vs_mean": fidelity([r["supernet"] for r in rows], both),
            "one_shot_vs_mean": fidelity([r["one_shot"] for r in rows], both),
        }
    config = run_config
    result = {
        "command": " ".join(["python", *sys.argv]),
        "date": dt.date.today().isoformat(),
        "machine": describe_machine(),
        "space": space.name,
        "run": str(args.run),
        "search": {
            k: config.get(k)
            for k in ("strategy", "preset", "train_size", "val_size", "space_options")
        },
        "recipe": opts,
        "standalone_from": reused,
        "rescore": {
            "candidates": run_config.get("rescore", 0),
            "steps": run_config.get("rescore_steps"),
        }
        if rescoring
        else None,
        "stats": stats,
        "stats_one_shot": stats_one_shot,
        "repeat": repeat,
        "rows": rows,
    }
    stem = f"ranking_{space.name}"
    (DOCS / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    title = f"{space.name}: Kendall tau {stats['kendall_tau']:.2f}"
    plot(rows, DOCS / f"{stem}.png", title)
    (DOCS / f"{stem}.md").write_text(render(result, stem))
    print(json.dumps(stats))


def render(result: dict, stem: str) -> str:
    s, r = result["stats"], result["recipe"]
    lines = [
        f"# Ranking fidelity: {result['space']} space",
        "",
        f"Generated by `{result['command']}` on {result['date']} ({result['machine']}). "
        "Do not edit by hand.",
        "",
        f"Supernet accuracy: the final shared weights of run `{result['run']}` "
        f"({result['search']}), scored as the search scores candidates"
        + (
            f": **rescored**, as the search's final rescoring decides its front (each path "
            f"first trains {result['rescore']['steps']} batches on its own from the shared "
            "weights, `factory search --rescore`), and one-shot, as the search narrows its "
            "candidates down to those it rescores"
            if result.get("rescore")
            else ""
        )
        + f". Trained alone: {r['epochs']:g} epoch(s) of `factory train`'s recipe on the first "
        f"{r['train_images']} training images, seed {r['seed']}, tested on the 10,000 test "
        "images."
        + (
            f" The trained-alone accuracies of {u['reused']} architectures are those the "
            f"bench measured on {u['date']} ({u['machine']}; `{u['command']}`): the same "
            "architectures and recipe, and the yardstick does not depend on the run."
            if (u := result.get("standalone_from"))
            else ""
        ),
        "",
        f"**Kendall tau {s['kendall_tau']:.3f}, Spearman rho {s['spearman_rho']:.3f}, "
        f"top-5 overlap {s['top5_overlap']:.0%}** over {len(result['rows'])} architectures "
        "(goal: tau >= 0.6)" + (" with the rescored accuracies." if result.get("rescore") else "."),
        "",
        *_one_shot_lines(result),
        *_repeat_lines(result.get("repeat"), r["seed"]),
        f"![supernet vs standalone]({stem}.png)",
        "",
    ]
    again = result.get("repeat") is not None
    both = result.get("rescore") is not None
    lines += [
        "| architecture | "
        + ("one-shot | rescored" if both else "supernet acc")
        + " | trained alone"
        + (f" | seed {result['repeat']['seed']} |" if again else " |"),
        "|---|---:|---:|" + ("---:|" if both else "") + ("---:|" if again else ""),
    ]
    for row in sorted(result["rows"], key=lambda x: -x["standalone"]):
        cells = [row["name"], *([f"{100 * row['one_shot']:.1f} %"] if both else []),
                 f"{100 * row['supernet']:.1f} %", f"{100 * row['standalone']:.2f} %",
                 *([f"{100 * row['standalone_repeat']:.2f} %"] if again else [])]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join([*lines, ""])


def _one_shot_lines(result: dict) -> list[str]:
    """The one-shot scores' fidelity, beside the rescored ones'."""
    if not result.get("rescore"):
        return []
    o = result["stats_one_shot"]
    mean = (result.get("repeat") or {}).get("one_shot_vs_mean")
    return [
        f"One-shot scores (no fine-tuning) of the same weights: Kendall tau "
        f"{o['kendall_tau']:.3f}, Spearman rho {o['spearman_rho']:.3f}, top-5 overlap "
        f"{o['top5_overlap']:.0%}"
        + (f"; against the mean of both trainings tau {mean['kendall_tau']:.3f}." if mean else "."),
        "",
    ]


def _repeat_lines(repeat: dict | None, seed: int) -> list[str]:
    """What a second standalone training says about the yardstick's noise."""
    if repeat is None:
        return []
    ss, sm = repeat["seed_vs_seed"], repeat["supernet_vs_mean"]
    return [
        f"**The yardstick's own noise:** trained again with seed {repeat['seed']}, the same "
        f"architectures rank with Kendall tau {ss['kendall_tau']:.3f} (Spearman rho "
        f"{ss['spearman_rho']:.3f}, top-5 overlap {ss['top5_overlap']:.0%}) against seed {seed}. "
        "That much disagreement is the short training's, not the supernet's. Against the mean "
        f"of both trainings the supernet reaches tau {sm['kendall_tau']:.3f} "
        f"(rho {sm['spearman_rho']:.3f}).",
        "",
    ]


if __name__ == "__main__":
    main()
