"""`factory train RUN`: retrain chosen architectures of a search run on all training images."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from factory.cli.tables import Column, print_fitted

if TYPE_CHECKING:  # imported lazily at run time to keep `factory --help` fast
    import torch
    from rich.progress import Progress
    from torch import nn

    from factory.data import DataSplits
    from factory.trained import Candidate, OpenRun
    from factory.training import TrainRecipe

SCRATCH_EPOCHS, SCRATCH_LR = 5.0, 0.1  # learning rates for batch 128, scaled linearly
FINETUNE_EPOCHS, FINETUNE_LR = 2.0, 0.02  # inherited weights start near a good point


@dataclass(frozen=True)
class Row:
    """One line of the summary table."""

    arch_id: str
    name: str
    params: int
    macs: int
    epochs: float
    test_accuracy: float
    seconds: float
    status: str  # "trained" or why it was skipped


def train(
    run: Annotated[Path, typer.Argument(help="A run directory written by `factory search`.")],
    pareto: Annotated[bool, typer.Option(help="Train every model of the front.")] = False,
    candidate: Annotated[
        list[str] | None,
        typer.Option(
            "--candidate",
            "-c",
            help="An arch_id (or a unique prefix of 4+ characters) from `factory report`, or "
            "a manual architecture such as shufflenet_g3 (repeatable).",
        ),
    ] = None,
    epochs: Annotated[
        float | None,
        typer.Option(
            min=0.01,
            help=f"Passes over the training split (default {SCRATCH_EPOCHS:g}, or "
            f"{FINETUNE_EPOCHS:g} with --from-supernet). On Fashion-MNIST (54k images) one "
            "epoch of a shufflenet model takes about 4-6 min on a 2-core laptop CPU.",
        ),
    ] = None,
    from_supernet: Annotated[
        bool,
        typer.Option(
            "--from-supernet",
            help="Fine-tune from the weights inherited from the run's supernet instead of "
            "training from scratch (fewer epochs and a lower learning rate by default).",
        ),
    ] = False,
    batch_size: Annotated[int, typer.Option(min=1, help="Training batch size.")] = 128,
    lr: Annotated[
        float | None,
        typer.Option(
            help=f"Peak learning rate (default {SCRATCH_LR:g}, or {FINETUNE_LR:g} with "
            "--from-supernet, times batch size / 128), reached after a short warm-up, then "
            "cosine decay to 0.",
        ),
    ] = None,
    erase: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Random erasing: the share of training images that get a random box blanked "
            "(0.25-0.5 helps schedules of 20+ epochs; short ones do better without).",
        ),
    ] = 0.0,
    seed: Annotated[
        int, typer.Option(help="Seed of the initial weights, batch order and augmentation.")
    ] = 0,
    threads: Annotated[
        int, typer.Option(min=0, help="CPU threads for torch (0: torch's default).")
    ] = 0,
    device: Annotated[
        str,
        typer.Option(
            help="Where to train: auto (a CUDA GPU if torch sees one, else the CPU), cpu, "
            "cuda or cuda:N. A Fashion-MNIST epoch of a searched model took 16 s on an H100 "
            "shared by three trainings, against ~5 min on a 2-core CPU.",
        ),
    ] = "auto",
    force: Annotated[
        bool, typer.Option("--force", help="Retrain models that already have weights.")
    ] = False,
    limit_images: Annotated[
        int | None,
        typer.Option(
            min=1,
            hidden=True,
            help="Train on the first N training images and evaluate on N val/test images "
            "(quick trials and tests; the result records the image counts).",
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the summary as JSON (and no progress bars).")
    ] = False,
) -> None:
    """Retrain chosen architectures of a search run on the full training split and test them.

    Recipe: SGD (Nesterov momentum 0.9, weight decay 5e-4), linear warm-up then cosine
    learning rate, label smoothing 0.1, random crop + horizontal flip (+ erasing with --erase),
    on a CUDA GPU when there is one. Writes
    RUN/trained/<arch_id>/model.safetensors and train.json, each model as soon as it is done,
    so Ctrl-C loses only the model in progress.
    """
    import torch

    from factory.trained import open_run, resolve_candidates
    from factory.training import TrainRecipe, resolve_device

    default_epochs, default_lr = (
        (FINETUNE_EPOCHS, FINETUNE_LR) if from_supernet else (SCRATCH_EPOCHS, SCRATCH_LR)
    )
    recipe = TrainRecipe(
        epochs=epochs if epochs is not None else default_epochs,
        batch_size=batch_size,
        lr=lr if lr is not None else default_lr * batch_size / 128,
        erase_p=erase,
    )
    if threads:
        torch.set_num_threads(threads)
    where = resolve_device(device)
    opened = open_run(run)
    chosen = resolve_candidates(run, opened.space, list(candidate or []), pareto)
    options = _Options(recipe, from_supernet, seed, force, limit_images, quiet or as_json, where)
    rows = _train_all(run, opened, chosen, options)
    if as_json:
        typer.echo(json.dumps([asdict(r) for r in rows], indent=2))
    else:
        _print_table(run, rows)


@dataclass(frozen=True)
class _Options:
    recipe: TrainRecipe
    from_supernet: bool
    seed: int
    force: bool
    limit_images: int | None
    quiet: bool
    device: torch.device


def _train_all(run: Path, opened: OpenRun, chosen: list[Candidate], options: _Options) -> list[Row]:
    """Train (or skip) each candidate in turn, saving each as soon as it is done."""
    from factory.progress import make_progress
    from factory.training import limit_splits

    data = opened.data
    if options.limit_images is not None:
        data = limit_splits(data, options.limit_images, options.limit_images)
    rows = []
    with make_progress(disable=options.quiet) as progress:
        overall = progress.add_task("models", total=len(chosen), status="")
        for c in chosen:
            progress.update(overall, status=c.name)
            rows.append(_train_one(run, opened, data, c, options, progress))
            progress.update(overall, advance=1)
            if not options.quiet:
                progress.console.print(_line(run, rows[-1]))
    return rows


def _train_one(
    run: Path,
    opened: OpenRun,
    data: DataSplits,
    candidate: Candidate,
    options: _Options,
    progress: Progress,
) -> Row:
    """Train one candidate and save it, or report the weights it already has."""
    from factory.trained import INFO, load_trained, supernet_model, train_and_save, trained_dir
    from factory.training import build_seeded

    space, g = opened.space, candidate.genotype
    if (trained_dir(run, candidate.arch_id) / INFO).is_file() and not options.force:
        _, info = load_trained(run, candidate.arch_id)
        params, macs = _costs(space.build(g), data.info.input_shape)
        status = "kept: already trained"
        return Row(
            candidate.arch_id,
            candidate.name,
            params,
            macs,
            info.epochs,
            info.test_accuracy,
            info.train_seconds,
            status,
        )
    if options.from_supernet:
        model = supernet_model(run, opened, candidate)
    else:
        model = build_seeded(lambda: space.build(g), options.seed)
    params, macs = _costs(model, data.info.input_shape)
    names = (candidate.arch_id, space.format(g), candidate.name)
    info = train_and_save(
        run, model, names, opened.config.space, data, options.recipe, options.seed,
        options.device, progress, options.from_supernet,
    )  # fmt: skip
    return Row(
        candidate.arch_id,
        candidate.name,
        params,
        macs,
        info.epochs,
        info.test_accuracy,
        info.train_seconds,
        "trained",
    )


def _costs(model: nn.Module, input_shape: tuple[int, int, int]) -> tuple[int, int]:
    """(params, MACs) at batch 1."""
    from profilers.flops import count_costs

    report = count_costs(model, (1, *input_shape))
    return report.params, report.macs


def _line(run: Path, row: Row) -> str:
    if row.status != "trained":
        return f"{row.name}: {row.status} (--force retrains it)"
    return (
        f"{row.name}: test accuracy {100 * row.test_accuracy:.2f} % after {row.epochs:g} "
        f"epoch{'' if row.epochs == 1 else 's'} in {_duration(row.seconds)} "
        f"-> {run / 'trained' / row.arch_id}"
    )


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{seconds:.1f}s"


TABLE = (
    Column("arch_id", key=True),
    Column("name", key=True),
    Column("test accuracy", key=True),
    Column("status", key=True, wrap=True),
    Column("epochs", priority=1),
    Column("time", priority=1),
    Column("params"),
    Column("MACs"),
)


def _print_table(run: Path, rows: list[Row]) -> None:
    """The summary, whole at any width (the dropped columns are in each train.json)."""
    cells = [
        [r.arch_id, r.name if r.name != r.arch_id else "", f"{100 * r.test_accuracy:.2f} %",
         r.status, f"{r.epochs:g}", _duration(r.seconds), f"{r.params / 1e6:.3f} M",
         f"{r.macs / 1e6:.2f} M"]
        for r in rows
    ]  # fmt: skip
    where = f"{run / 'trained'}/ARCH_ID/train.json"
    print_fitted(Console(), TABLE, cells, where, title=f"{run}: {len(rows)} model(s)")
