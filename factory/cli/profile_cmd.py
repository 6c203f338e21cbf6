"""`factory profile`: one model's MACs, params and measured latency on a target, and the
latency lookup tables (`factory profile lut build|validate`).

`profile` is a group whose first token, when it is no subcommand, goes to the hidden `model`
command, so `factory profile mobilenet:mobilenet_v2@0.5` and `factory profile lut build` both work.
torch is imported inside the commands, so `factory agent` starts on a device without it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import click
import typer
from rich.console import Console
from rich.table import Table

import targets
from factory.cli import examples as ex
from factory.cli.errors import UserErrorGroup
from profilers.base import parse_input_shape
from profilers.onnx_costs import onnx_macs, read_onnx
from targets.errors import UserError

if TYPE_CHECKING:
    from factory.lut import LutSettings
    from factory.model_source import LoadedModel
    from profilers.measurement import Measurement

MODEL_COMMAND = "model"


class ProfileGroup(UserErrorGroup):
    """Routes `factory profile MODEL ...` (a first token that is no subcommand) to `model`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = [MODEL_COMMAND, *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=ProfileGroup,
    no_args_is_help=True,
    help=(
        "Measure a model on a target, or build and check latency lookup tables.\n\n"
        "factory profile MODEL --target T [--json]: MACs, params and latency statistics of "
        "MODEL, which is a .onnx file, torchvision:NAME (e.g. torchvision:mobilenet_v3_small) "
        "or SPACE:GENOTYPE (e.g. mobilenet:mobilenet_v2@0.5). See `factory profile MODEL --help`."
        "\n\n"
        "factory profile lut build|validate --space S --target T: latency lookup tables."
    ),
    epilog=ex.PROFILE,
)
lut_app = typer.Typer(
    no_args_is_help=True,
    help="Latency lookup tables: per space and target, with their error.",
    epilog=ex.LUT,
)
app.add_typer(lut_app, name="lut")

TargetOpt = Annotated[
    str, typer.Option("--target", "-t", help="Target name or alias (see `factory targets`).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


def console() -> Console:
    return Console()


# ---- factory profile MODEL --------------------------------------------------------------


@app.command(MODEL_COMMAND, hidden=True, epilog=ex.PROFILE_MODEL)
def profile_model(
    model: Annotated[
        str, typer.Argument(help="A .onnx file, torchvision:NAME, or SPACE:GENOTYPE.")
    ],
    target: TargetOpt = targets.DEFAULT_TARGET,
    input_shape: Annotated[
        str | None,
        typer.Option(
            help="Input CxHxW or NxCxHxW. Default: 1x3x224x224 for torchvision, 1x28x28 for "
            "a space, the model's own (dynamic dims from the target) for ONNX."
        ),
    ] = None,
    classes: Annotated[int, typer.Option(min=2, help="Classes of a SPACE:GENOTYPE model.")] = 10,
    warmup_ms: Annotated[float, typer.Option(min=0, help="Warm-up time, ms.")] = 200.0,
    min_duration_ms: Annotated[float, typer.Option(min=0, help="Minimum timed ms.")] = 1000.0,
    min_iters: Annotated[int, typer.Option(min=1, help="Minimum timed runs.")] = 10,
    per_op: Annotated[bool, typer.Option(help="Also print time per op type.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Measure MODEL on a target: MACs, params and latency statistics (median, p90, p99, CV).

    MODEL is a .onnx file, torchvision:NAME (weights=None) or SPACE:GENOTYPE, where GENOTYPE
    is '-'-joined choice indices or a manual architecture's name (e.g. mobilenet:mobilenet_v2@0.5).
    For ONNX files MACs are counted from the graph (Conv, ConvTranspose, Gemm, MatMul).
    """
    from factory.model_source import load_model
    from factory.progress import status
    from profilers.base import ProfileSettings
    from profilers.remote import profiler_for

    chosen = targets.get_target(target)
    settings = ProfileSettings(warmup_ms, min_duration_ms, min_iters, per_op=per_op)
    with status(f"{model}: building and counting MACs"):
        loaded = load_model(model, input_shape, classes)
    seconds = (warmup_ms + min_duration_ms) / 1000 * (2 if per_op else 1)
    with status(f"{model}: timing on {chosen.name} (about {seconds:.1f} s or more)"):
        m = profiler_for(chosen).profile(loaded.onnx, chosen, loaded.input_shape, settings)
    if loaded.macs is None:  # an ONNX file: counted from its graph at the timed shape
        loaded.macs, loaded.note = onnx_macs(read_onnx(loaded.onnx), m.input_shape)
    result = profile_result(model, loaded, m)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        _print_result(result)


def profile_result(model: str, loaded: LoadedModel, m: Measurement) -> dict[str, Any]:
    """The `--json` object: costs, latency statistics and how they were obtained."""
    data = m.to_dict()
    return {
        "model": model,
        "macs": loaded.macs,
        "params": loaded.params,
        "macs_note": loaded.note,
        **{k: data[k] for k in ("target", "runtime", "runtime_version", "provider")},
        **{k: data[k] for k in ("precision", "threads", "input_shape", "latency_ms")},
        "unstable": m.unstable,
        "warmup_ms": m.warmup_ms,
        "how": m.how,
        "per_op_ms": m.per_op_ms,
        "device": m.device,
    }


def _print_result(r: dict[str, Any]) -> None:
    out = console()
    macs = "n/a" if r["macs"] is None else f"{r['macs'] / 1e6:,.2f} M"
    out.print(
        f"[bold]{r['model']}[/] on {r['target']} ({r['runtime']} {r['runtime_version']}, "
        f"{r['provider']}, {r['precision']}, threads {r['threads']}), input "
        f"{'x'.join(map(str, r['input_shape']))}"
    )
    out.print(f"MACs (1 multiply-add = 1, BatchNorm excluded): {macs}   params: {r['params']:,}")
    if r["macs_note"]:
        out.print(f"[yellow]{r['macs_note']}[/]")
    stats = r["latency_ms"]
    table = Table(title=f"latency, ms ({r['how']}, {stats['n']} runs)")
    names = ("min", "mean", "median", "p90", "p95", "p99", "std")
    for name in (*names, "cv"):
        table.add_column(name, justify="right")
    table.add_row(*(f"{stats[k]:.4g}" for k in names), f"{stats['cv'] * 100:.1f}%")
    out.print(table)
    if r["unstable"]:
        out.print("[yellow]unstable: CV above 2.5 %; compare models only in paired runs[/]")
    if r["per_op_ms"]:
        ops = Table("op type", "ms per run", "share", title="per op type")
        total = sum(r["per_op_ms"].values()) or 1.0
        for op, ms in r["per_op_ms"].items():
            ops.add_row(op, f"{ms:.4f}", f"{ms / total * 100:.1f}%")
        out.print(ops)


# ---- factory profile lut build|validate ---------------------------------------------------

SpaceOpt = Annotated[
    str, typer.Option("--space", "-s", help="Search space (see `factory spaces`).")
]
ShapeOpt = Annotated[str, typer.Option(help="Input CxHxW the space adapts to.")]
ClassesOpt = Annotated[int, typer.Option(min=2, help="Number of output classes.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]


class _Bars:
    """The library's (phase, done, total) callback drawn as one progress bar per phase."""

    def __init__(self, progress: Any) -> None:
        self.progress, self.tasks = progress, {}

    def __call__(self, phase: str, done: int, total: int) -> None:
        if phase not in self.tasks:
            self.tasks[phase] = self.progress.add_task(phase, total=total, status="")
        self.progress.update(self.tasks[phase], completed=done, total=total)


def _setup(space: str, target: str, input_shape: str, classes: int) -> tuple[Any, Any]:
    from factory.lut import space_for

    c, h, w = parse_input_shape(input_shape)
    return space_for(space, (c, h, w), classes), targets.get_target(target)


@lut_app.command("build", epilog=ex.LUT_BUILD)
def lut_build(
    space: SpaceOpt,
    target: TargetOpt = targets.DEFAULT_TARGET,
    input_shape: ShapeOpt = "1x28x28",
    classes: ClassesOpt = 10,
    samples: Annotated[
        int, typer.Option(min=0, help="Random architectures sampled at most for new blocks.")
    ] = 100,
    patience: Annotated[
        int, typer.Option(min=1, help="Stop sampling after this many bring no new block.")
    ] = 20,
    max_blocks: Annotated[int, typer.Option(min=1, help="Blocks profiled at most.")] = 2000,
    calibration: Annotated[
        int, typer.Option(min=1, help="Random architectures measured end to end for the fit.")
    ] = 10,
    rounds: Annotated[int, typer.Option(min=1, help="Interleaved timing rounds per model.")] = 1,
    warmup_ms: Annotated[float, typer.Option(min=0, help="Warm-up per model, ms.")] = 100.0,
    min_duration_ms: Annotated[float, typer.Option(min=0, help="Timed ms per model.")] = 300.0,
    min_iters: Annotated[int, typer.Option(min=1, help="Timed runs per model at least.")] = 20,
    statistic: Annotated[
        str,
        typer.Option(help="What predictions estimate: min (steady under load) or median."),
    ] = "min",
    seed: Annotated[int, typer.Option(help="Seed of the random architectures.")] = 0,
    force: Annotated[bool, typer.Option(help="Rebuild even if the table exists.")] = False,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Profile each distinct block of a space on a target once and fit the overhead.

    Blocks: every choice at every position of the space's manual architectures, then random
    samples until no new block appears. The table is stored in the target's latency-table
    directory (`factory targets show T`), keyed by space, input shape, classes, precision
    and runtime version; a table that exists for the same key is reused unless --force.
    """
    import numpy as np

    from factory.lut import LutSettings, build_table
    from factory.progress import make_progress

    chosen_space, chosen_target = _setup(space, target, input_shape, classes)
    settings = LutSettings(
        warmup_ms,
        min_duration_ms,
        min_iters,
        rounds,
        statistic,
        calibration,
        patience,
        samples,
        max_blocks,
    )
    with make_progress(disable=quiet or as_json) as progress:
        table = build_table(
            chosen_space,
            chosen_target,
            settings,
            np.random.default_rng(seed),
            force=force,
            progress=_Bars(progress),
        )
    summary = {
        "path": str(table.path),
        "key": table.key.to_dict(),
        "blocks": len(table.blocks),
        "build": table.build,
        "fit": table.fit,
        "overhead": table.overhead.to_dict(),
    }
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    _print_table_summary(summary, table.settings)


def _print_table_summary(summary: dict[str, Any], settings: LutSettings) -> None:
    build = summary["build"]
    out = console()
    out.print(f"latency table: {summary['path']}")
    complete = (
        "complete" if build.get("complete") else "incomplete: missing blocks are profiled on demand"
    )
    out.print(
        f"  {summary['blocks']} blocks ({complete}), {build.get('samples')} random "
        f"samples, built in {build.get('seconds')} s on {build.get('date')}"
    )
    for stat, fit in summary["fit"].items():
        mark = " (used)" if stat == settings.statistic else ""
        degenerate = ", degenerate fit: a fixed to 1" if fit["degenerate"] else ""
        out.print(
            f"  {stat}{mark}: predicted = {fit['a']:.3f} × Σblocks + {fit['b']:.4f} ms"
            f" (fit on {fit['n']} architectures{degenerate})"
        )


@lut_app.command("validate", epilog=ex.LUT_VALIDATE)
def lut_validate(
    space: SpaceOpt,
    target: TargetOpt = targets.DEFAULT_TARGET,
    input_shape: ShapeOpt = "1x28x28",
    classes: ClassesOpt = 10,
    archs: Annotated[int, typer.Option(min=2, help="Fresh random architectures to check.")] = 50,
    statistic: Annotated[
        str | None, typer.Option(help="median or min; default: the table's.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the fresh architectures.")] = 1,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Check a table: predict fresh random architectures, measure them end to end, and
    report the mean and max error (%) and Kendall's tau of the ranking."""
    import numpy as np

    from factory.lut import STATISTICS, load_table, validate_table
    from factory.progress import make_progress

    if statistic is not None and statistic not in STATISTICS:
        raise UserError(f"statistic must be one of {', '.join(STATISTICS)}, not {statistic!r}")
    chosen_space, chosen_target = _setup(space, target, input_shape, classes)
    table = load_table(chosen_space, chosen_target)
    with make_progress(disable=quiet or as_json) as progress:
        rep = validate_table(
            table, archs, np.random.default_rng(seed), statistic, progress=_Bars(progress)
        )
    if as_json:
        typer.echo(json.dumps({"path": str(table.path), **rep.to_dict()}, indent=2))
        return
    console().print(
        f"{space} on {target}, {rep.statistic} latency, {rep.n} fresh architectures: "
        f"MAPE {rep.mape_pct:.1f}%, max error {rep.max_error_pct:.1f}%, "
        f"Kendall tau {rep.kendall_tau:.3f}; {rep.filled_on_demand} blocks profiled on demand"
    )
