"""`factory search`: find the accuracy/cost Pareto front of a space for a target."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Annotated

import typer

from factory.cli.errors import EXIT_INTERRUPTED, EXIT_TERMINATED, fail
from factory.search.config import (
    QUICK_RESCORE_IMAGES,
    QUICK_TRAIN_SIZE,
    QUICK_VAL_SIZE,
    VAL_SIZE,
)

PRESETS = ("quick", "gpu", "paper")
EXIT_CODES = {"interrupted": EXIT_INTERRUPTED, "terminated": EXIT_TERMINATED}


def search(
    ctx: typer.Context,
    space: Annotated[str, typer.Option(help="Search space (see `factory spaces`).")] = "mobilenet",
    strategy: Annotated[
        str,
        typer.Option(help="pnsga3, cycle-annealing, or a baseline: nsga3, mnas, random."),
    ] = "pnsga3",
    target: Annotated[
        str, typer.Option("--target", "-t", help="Device latency is measured on.")
    ] = "x86-cpu",
    dataset: Annotated[
        str, typer.Option(help="fashion-mnist, cifar10 or imagefolder.")
    ] = "fashion-mnist",
    data_root: Annotated[
        Path | None, typer.Option(help="Directory holding the dataset (default: found).")
    ] = None,
    download: Annotated[
        bool,
        typer.Option(
            "--download",
            help="Fetch the dataset (into --data-root, else the user cache) if "
            "it is not on this machine.",
        ),
    ] = False,
    objectives: Annotated[
        str,
        typer.Option(help="accuracy followed by costs: latency (ms), macs, params."),
    ] = "accuracy,latency",
    cost: Annotated[
        str, typer.Option(help="Cost used by scalar rewards and the plot: latency or macs.")
    ] = "latency",
    preset: Annotated[
        str,
        typer.Option(
            help="quick (minutes on a laptop CPU), gpu (one GPU, the whole training split) or "
            "paper (the papers' settings)."
        ),
    ] = "quick",
    generations: Annotated[
        int | None,
        typer.Option(
            "--generations", "--steps", min=1, help="Generations (evolution) or controller steps."
        ),
    ] = None,
    time_budget: Annotated[
        str | None,
        typer.Option(
            "--time",
            help="Start no generation or controller step that would end after this much "
            "time (forecast from those run so far), e.g. 20m; the front's refinement and "
            "rescoring follow (~4.5 min for the quick preset on 2 cores). Resumable.",
        ),
    ] = None,
    init: Annotated[
        list[str] | None,
        typer.Option(help="Warm-start from a manual architecture, e.g. vgg11 (repeatable)."),
    ] = None,
    train_size: Annotated[
        int | None,
        typer.Option(
            min=0,
            help=f"Training images the search uses (0: all; default {QUICK_TRAIN_SIZE} for the "
            "quick preset, all otherwise).",
        ),
    ] = None,
    val_size: Annotated[
        int | None,
        typer.Option(
            min=0,
            help=f"Validation images that score a candidate (0: all; default {QUICK_VAL_SIZE} "
            f"for the quick preset, {VAL_SIZE} otherwise). On 500 the binomial error alone "
            "(~2 points) is as wide as the spread of the candidates' scores.",
            show_default=False,
        ),
    ] = None,
    latency: Annotated[
        str,
        typer.Option(
            help="How the latency objective is timed: robust (alternating with a reference "
            "model, ranks alike under load), measure (median of one window), table (the "
            "target's latency table) or auto (robust locally, table for remote targets).",
        ),
    ] = "auto",
    f_min: Annotated[
        float | None, typer.Option(help="Lowest cost the annealing sweeps to.")
    ] = None,
    f_max: Annotated[
        float | None, typer.Option(help="Highest cost the annealing sweeps to.")
    ] = None,
    refine: Annotated[
        int,
        typer.Option(
            min=0,
            help="Evaluations after the last generation/step on cheaper one-decision "
            "neighbours of the front, placed in its widest cost gaps and scored with the "
            "final weights (no training; 0: none).",
        ),
    ] = 12,
    rescore: Annotated[
        int,
        typer.Option(
            min=0,
            help="Then the N best candidates by one-shot score and the manual architectures "
            "are each fine-tuned briefly on their own from the final weights and scored "
            "again; these scores choose the front (one-shot scores rank barely better than "
            "chance on a CPU budget; see docs/ranking_mobilenet.md). 0: no rescoring.",
        ),
    ] = 6,
    rescore_steps: Annotated[
        int, typer.Option(min=1, help="Training batches per rescored candidate.")
    ] = 50,
    rescore_images: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Images each rescored candidate is scored on: the --val-size images, then "
            "training images the search did not train on (--train-size leaves them out). "
            f"Default {QUICK_RESCORE_IMAGES} for the quick preset: a third of the sampling "
            "error of the generations' scores, where near-ties are decided. 0 (the default "
            "otherwise): the --val-size images alone, as the generations.",
            show_default=False,
        ),
    ] = None,
    challenge: Annotated[
        list[str] | None,
        typer.Option(
            help="The hand-designed network you would otherwise deploy (a manual "
            "architecture, repeatable; `none`: no challenge). Cheaper one-decision "
            "neighbours of it (a stage one layer shorter, a smaller expansion, ...) are "
            "rescored with the candidates, so the front holds the search's best attempt at "
            "beating it. Default: the space's yardstick (mobilenet_v2@0.5 in the mobilenet "
            "space)."
        ),
    ] = None,
    challengers: Annotated[
        int,
        typer.Option(min=0, help="Neighbours rescored per challenged network (0: none)."),
    ] = 4,
    seed: Annotated[int, typer.Option(help="Seed of every random choice of the run.")] = 0,
    out: Annotated[
        Path | None,
        typer.Option(help="Run directory (default runs/<time>-<space>-<strategy>)."),
    ] = None,
    resume: Annotated[
        Path | None, typer.Option(help="Continue the run in this directory where it stopped.")
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Supernet training batch size.")] = 64,
    settings: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Override a strategy setting, e.g. --set population=32, or set a space "
            "option, e.g. --set space.widths=paper (shufflenet) or space.min_width=0.35 "
            "(mobilenet; a search defaults to 0.5). Repeatable; the run's config.json lists "
            "them all.",
        ),
    ] = None,
    threads: Annotated[
        int,
        typer.Option(
            min=0,
            help="CPU threads for torch (0: torch's default). 1 keeps a shared machine usable: "
            "two threads fighting another job for two cores run ~10x slower.",
        ),
    ] = 0,
    sandwich: Annotated[
        bool,
        typer.Option(
            help="Train the space's largest and smallest paths in every supernet batch "
            "besides the sampled ones (BigNAS's sandwich rule; see docs/ranking_mobilenet.md)."
        ),
    ] = False,
    distill: Annotated[
        bool,
        typer.Option(help="With --sandwich: sampled paths learn the largest path's predictions."),
    ] = False,
    uniform_paths: Annotated[
        int,
        typer.Option(
            min=0,
            help="Uniformly sampled paths trained beside the population's in every supernet "
            "batch (evolution strategies; 0: only the population, as CARS). See "
            "docs/ranking_mobilenet.md.",
        ),
    ] = 1,
    device: Annotated[
        str,
        typer.Option(
            help="Where the supernet trains: auto (a CUDA GPU when torch sees one), cpu or "
            "cuda[:N]. Latency is always measured on the target."
        ),
    ] = "auto",
    executor: Annotated[
        str,
        typer.Option(
            help="Where candidates are scored: in-process, or ray (Ray tasks; install the "
            "[ray] extra). The driver alone writes the run."
        ),
    ] = "in-process",
    ray_address: Annotated[
        str | None,
        typer.Option(
            help="With --executor ray: auto (the cluster this machine belongs to), HOST:PORT "
            "or ray://HOST:PORT; default: start Ray on this machine."
        ),
    ] = None,
    benchmark: Annotated[
        str | None,
        typer.Option(
            help="Tabular search, no training: accuracy and latency looked up in a benchmark "
            "table, `nb201` (shipped: NAS-Bench-201 CIFAR-10 with HW-NAS-Bench/HELP device "
            "latencies) or a CSV with its columns. --target then names a device column.",
        ),
    ] = None,
    queries: Annotated[
        int | None,
        typer.Option(
            min=1, help="Tabular search budget: distinct architectures looked up (default 300)."
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
) -> None:
    """Search a space for the accuracy/latency Pareto front on a target.

    Writes a run directory: config.json, evaluations.sqlite (every evaluation), checkpoints,
    pareto.json, pareto.csv and pareto.png. Ctrl-C stops cleanly; --resume DIR continues
    (options given with --resume must match the run's saved config). Under `torchrun
    --nproc-per-node N -m factory search ...` the supernet trains data-parallel.
    """
    from factory.search.config import SearchConfig, parse_duration, parse_objectives
    from factory.search.costs import LATENCY_MODES
    from factory.search.executor import ExecutorSpec
    from factory.search.resolve import load_run_config
    from factory.search.runner import run_search

    if threads:
        import torch

        torch.set_num_threads(threads)
    if preset not in PRESETS:
        fail(f"unknown preset {preset!r}; valid: {', '.join(PRESETS)}")
    if latency not in LATENCY_MODES:
        fail(f"unknown latency mode {latency!r}; valid: {', '.join(LATENCY_MODES)}")
    if benchmark is None and queries is not None:
        fail("--queries is the budget of a tabular search; add --benchmark nb201 (or a CSV)")
    if benchmark is not None:
        given = {n for n in ctx.params if _given(ctx, n)}
        if "refine" in given:
            fail("--refine refines a training search's front; a tabular search spends --queries")
        rescoring = given & {
            "rescore", "rescore_steps", "rescore_images", "challenge", "challengers"
        }  # fmt: skip
        if rescoring:
            option = "--" + sorted(rescoring)[0].replace("_", "-")
            fail(f"{option} is for a training search's rescoring; a tabular search has none")
        tabular = _run_tabular_cli(
            space if "space" in given else "nb201", strategy,
            target if "target" in given else "", benchmark, queries, seed, init,
            f_min, f_max, generations, settings, out, resume,
        )  # fmt: skip
        return tabular
    where = ExecutorSpec(executor, ray_address)
    values = {
        "space": space,
        "strategy": strategy,
        "target": target,
        "dataset": dataset,
        "data_root": str(data_root) if data_root else None,
        "objectives": parse_objectives(objectives),
        "cost": parse_objectives(f"accuracy,{cost}")[1],
        "preset": preset,
        "seed": seed,
        "init": tuple(init or ()),
        "units": generations,
        "time_budget_s": parse_duration(time_budget) if time_budget else None,
        "train_size": _by_preset(train_size, preset, QUICK_TRAIN_SIZE, None),
        "val_size": _by_preset(val_size, preset, QUICK_VAL_SIZE, VAL_SIZE),
        "batch_size": batch_size,
        "sandwich": sandwich,
        "distill": distill,
        "uniform_paths": uniform_paths,
        "latency_mode": latency,
        "f_min": f_min,
        "f_max": f_max,
        "refine": refine,
        "rescore": rescore,
        "rescore_steps": rescore_steps,
        "rescore_images": _by_preset(rescore_images, preset, QUICK_RESCORE_IMAGES, None),
        "challenge": _challenge_names(challenge),
        "challengers": challengers,
        **split_settings(parse_settings(settings or [])),
    }
    if resume is not None:
        given = {name for name in ctx.params if _given(ctx, name)}
        saved = load_run_config(resume)
        config = dataclasses.replace(
            saved, **{k: v for k, v in values.items() if _param_of(k) in given}
        )
        if "settings" in given:  # --set merges into the saved settings
            merged = {**saved.strategy_config, **values["strategy_config"]}
            options = {**saved.space_options, **values["space_options"]}
            config = dataclasses.replace(config, strategy_config=merged, space_options=options)
        run_dir = resume
    else:
        config = SearchConfig(**values)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        run_dir = out or Path("runs") / f"{stamp}-{space}-{strategy}"
    from factory.training import resolve_device

    on = resolve_device(device)
    result = run_search(
        config, run_dir, resume=resume is not None, quiet=quiet, device=on, executor=where,
        download=download,
    )  # fmt: skip
    if result.rank != 0:  # a data-parallel rank > 0: rank 0 reports
        return
    if result.finished_before:
        typer.echo(
            f"{result.run_dir} already finished ({result.units_done}/{result.total_units} "
            f"units, {result.evaluations} evaluations); nothing to do. Its front: factory "
            f"report {result.run_dir}"
        )
        return
    from factory.cli.report_cmd import print_front

    print_front(result.run_dir)
    if result.stopped:
        kept = f", keeping {result.kept}" if result.kept else ""
        typer.echo(
            f"stopped ({result.stopped}) after {result.units_done}/{result.total_units} units"
            f"{kept}; continue with: factory search --resume {result.run_dir}",
            err=True,
        )
        if result.stopped in EXIT_CODES:
            raise typer.Exit(EXIT_CODES[result.stopped])


def _given(ctx: typer.Context, name: str) -> bool:
    """Whether the user typed this option (not its default)."""
    return getattr(ctx.get_parameter_source(name), "name", "") == "COMMANDLINE"


def _run_tabular_cli(
    space: str, strategy: str, target: str, benchmark: str, queries: int | None, seed: int,
    init: list[str] | None, f_min: float | None, f_max: float | None, units: int | None,
    settings: list[str] | None, out: Path | None, resume: Path | None,
) -> None:  # fmt: skip
    """`factory search --benchmark`: look-ups instead of training; prints the front and how
    close it came to the table's exact front."""
    from factory.cli.report_cmd import print_front
    from factory.search.config import SearchConfig
    from factory.tabular.run import run_tabular

    config = SearchConfig(
        space=space, strategy=strategy, target=target, seed=seed, init=tuple(init or ()),
        units=units, f_min=f_min, f_max=f_max, benchmark=benchmark, queries=queries, refine=0,
        rescore=0,
        **split_settings(parse_settings(settings or [])),
    )  # fmt: skip
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = out or Path("runs") / f"{stamp}-{space}-{strategy}-tabular"
    run_tabular(config, run_dir, resume=resume is not None)
    print_front(run_dir)


_PARAM_OF = {
    "units": "generations",
    "time_budget_s": "time_budget",
    "latency_mode": "latency",
    "strategy_config": "settings",
    "space_options": "settings",
}


def _by_preset(given: int | None, preset: str, quick: int, other: int | None) -> int | None:
    """An image count: the user's (0: None, all images or none), else the preset's."""
    if given is None:
        return quick if preset == "quick" else other
    return given or None


def _challenge_names(names: list[str] | None) -> tuple[str, ...] | None:
    """--challenge values: None (the space's yardstick) unless given; `none` for no challenge."""
    if not names:
        return None
    return () if [n.lower() for n in names] == ["none"] else tuple(names)


def _param_of(field: str) -> str:
    """The CLI parameter that sets a config field."""
    return _PARAM_OF.get(field, field)


def split_settings(settings: dict[str, object]) -> dict[str, dict]:
    """--set values: `space.KEY` ones are the space's options, the rest the strategy's."""
    space = {
        k.removeprefix("space."): str(v) for k, v in settings.items() if k.startswith("space.")
    }
    rest = {k: v for k, v in settings.items() if not k.startswith("space.")}
    return {"strategy_config": rest, "space_options": space}


def parse_settings(items: list[str]) -> dict[str, object]:
    """['population=8', 'cut=random'] -> {'population': 8, 'cut': 'random'} (JSON values)."""
    out: dict[str, object] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            fail(f"--set takes KEY=VALUE, not {item!r}")
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out
