"""`factory export`: chosen architectures of a search run as deployable bundles, one
directory per model (model.onnx, model.int8.onnx, model.engine, README.md, manifest.json).

The library does the work (`exporters.bundle.export_bundle`); this module turns options into
settings, loads the weights (trained, or inherited from the supernet), and reports.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from exporters.registry import build_order
from factory.cli.tables import Column, print_fitted
from targets.atomic import check_writable_dir
from targets.errors import UserError

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from exporters.bundle import Bundle
    from targets.target import Target

DEFAULT_FORMATS = "onnx,onnx-int8"


def export(
    run: Annotated[Path, typer.Argument(help="A search run directory.", show_default=False)],
    pareto: Annotated[bool, typer.Option(help="Export every model of the Pareto front.")] = False,
    candidate: Annotated[
        list[str] | None,
        typer.Option(
            "--candidate", "-c", help="An arch_id (or unique prefix) or manual architecture."
        ),
    ] = None,
    formats: Annotated[
        str,
        typer.Option(
            "--format",
            help=f"Comma-separated: {', '.join(build_order())} (model.onnx is always written).",
        ),
    ] = DEFAULT_FORMATS,
    target: Annotated[
        str,
        typer.Option(
            "--target",
            "-t",
            help="Target(s) to measure latency on, comma-separated; a TensorRT target also "
            "gets the engine (built on its agent, or here).",
        ),
    ] = "x86-cpu",
    out: Annotated[
        Path | None, typer.Option(help="Where bundles go (default: RUN/export).")
    ] = None,
    from_supernet: Annotated[
        bool,
        typer.Option(help="Use the weights inherited from the supernet instead of trained ones."),
    ] = False,
    name_prefix: Annotated[
        str | None,
        typer.Option(help="Prefix of bundle names (default: the dataset, e.g. 'fmnist-')."),
    ] = None,
    version: Annotated[str, typer.Option(help="Version written into the manifests.")] = "1.0.0",
    calib_images: Annotated[
        int, typer.Option(min=1, help="Training images INT8 is calibrated on.")
    ] = 500,
    test_images: Annotated[
        int | None,
        typer.Option(min=1, help="Score on the first N test images only (default: all)."),
    ] = None,
    warmup_ms: Annotated[float, typer.Option(min=0, help="Latency warm-up time, ms.")] = 200.0,
    min_duration_ms: Annotated[
        float, typer.Option(min=0, help="Minimum timed ms per latency figure.")
    ] = 1000.0,
    min_iters: Annotated[int, typer.Option(min=1, help="Minimum timed runs.")] = 10,
    force: Annotated[bool, typer.Option(help="Replace bundles that already exist.")] = False,
    quiet: Annotated[
        bool, typer.Option(help="No progress bars or table: print only the bundle paths.")
    ] = False,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="Print each bundle's path and manifest as JSON (no bars)."),
    ] = False,
) -> None:
    """Export chosen models of a run as bundles: ONNX (dynamic batch, opset 17, slimmed,
    checked against PyTorch), INT8 ONNX (Q/DQ, calibrated on real training images), TensorRT
    engine, each with its test accuracy and latency, a model card and a manifest.json.

    Uses the weights `factory train` saved, or with --from-supernet the weights inherited
    from the search's supernet (BatchNorm re-estimated on training images)."""
    from exporters.bundle import check_destination, check_request, count_steps, export_bundle
    from exporters.registry import parse_formats
    from exporters.settings import ExportSettings, Int8Settings
    from factory.progress import make_progress
    from factory.run_export import bundle_meta, default_prefix, load_for_export
    from factory.trained import open_run, resolve_candidates
    from profilers.base import ProfileSettings

    chosen_formats = parse_formats(formats)
    chosen_targets = _targets(target)
    check_request(chosen_formats, chosen_targets)
    out_dir = check_writable_dir(out if out is not None else run / "export", "--out")
    opened = open_run(run)
    candidates = resolve_candidates(run, opened.space, list(candidate or []), pareto)
    prefix = name_prefix if name_prefix is not None else default_prefix(opened)
    metas = [bundle_meta(run, opened, c, from_supernet, prefix, version) for c in candidates]
    for meta in metas:
        check_destination(out_dir, meta.name, force)
    models = [
        load_for_export(run, opened, c, meta) for c, meta in zip(candidates, metas, strict=True)
    ]
    settings = ExportSettings(
        int8=Int8Settings(calib_images=calib_images),
        test_images=test_images,
        profile=ProfileSettings(warmup_ms, min_duration_ms, min_iters),
        force=force,
    )
    steps = count_steps(chosen_formats, chosen_targets, has_test=True)
    bundles: list[Bundle] = []
    with make_progress(disable=quiet or as_json) as progress:
        for chosen in models:
            task = progress.add_task(chosen.meta.name, total=steps, status="")
            on_step = _Steps(progress, task)
            bundle = export_bundle(
                chosen.model,
                chosen.meta,
                out_dir,
                chosen_formats,
                chosen_targets,
                opened.data.train,
                opened.data.test,
                settings,
                on_step,
            )
            progress.update(task, completed=steps, status=f"{bundle.seconds:.0f} s")
            bundles.append(bundle)
    if as_json:
        typer.echo(json.dumps([_as_json(b) for b in bundles], indent=2))
    else:
        _report(bundles, quiet)


class _Steps:
    """`on_step` for a progress bar: each call finishes the previous step and names the next."""

    def __init__(self, progress: Progress, task: TaskID) -> None:
        self.progress, self.task, self.done = progress, task, -1

    def __call__(self, text: str) -> None:
        self.done += 1
        self.progress.update(self.task, completed=self.done, status=text)


def _targets(text: str) -> list[Target]:
    import targets

    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise UserError("--target needs at least one target name (see `factory targets`)")
    return [targets.get_target(n) for n in names]


def _as_json(b: Bundle) -> dict:
    """What `export --json` prints of a bundle: where it is, and its manifest."""
    manifest = json.loads((b.path / "manifest.json").read_text())
    parity = b.parity_max_abs_diff
    return {"path": str(b.path), "parity_max_abs_diff": parity, "manifest": manifest}


def _report(bundles: list[Bundle], quiet: bool) -> None:
    """One table per bundle, titled with its name: whole at any width."""
    console = Console()
    if quiet:
        for b in bundles:
            console.print(str(b.path), soft_wrap=True)
        return
    for b in bundles:
        m = b.manifest
        targets = list(dict.fromkeys(e.target for e in m.latency))
        columns = [
            Column("file", key=True),
            Column("test acc", key=True, justify="right"),
            *(Column(f"{t} ms", key=True, justify="right") for t in targets),
            Column("size", justify="right"),
        ]
        rows = []
        for f in m.files:
            if f.kind == "card":
                continue
            acc = m.metrics.get(f.path)
            ms = {e.target: f"{e.median_ms:.3f}" for e in m.latency if e.artifact == f.path}
            rows.append([
                f.path,
                f"{100 * acc.test_accuracy:.2f} %" if acc else "-",
                *(ms.get(t, "-") for t in targets),
                f"{f.bytes / 1024:.0f} KiB",
            ])  # fmt: skip
        where = str(b.path / "manifest.json")
        print_fitted(console, columns, rows, where, title=m.name, title_justify="left")
        console.print(f"{b.path}  (parity vs torch {b.parity_max_abs_diff:.1e})", soft_wrap=True)
