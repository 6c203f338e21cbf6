"""`factory push`, `factory models`, `factory pull`: publish, list and fetch prebuilt models.

Thin shell over `factory.registry`; no torch is imported unless a torchvision recipe is pulled.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from exporters.deploy_choice import DeployChoice, deploy_choices
from exporters.manifest import Manifest
from factory.cli.tables import Column, print_fitted
from factory.registry import Index, open_registry
from factory.registry import pull as pull_model
from factory.registry import push as push_bundle
from factory.registry.fetch import PulledModel
from factory.registry.index import version_key
from factory.registry.recipes import RECIPES
from factory.registry.sources import REGISTRY_ENV
from targets.errors import UserError

REGISTRY_HELP = (
    f"Registry directory or http(s) URL (default: ${REGISTRY_ENV}, else the registry shipped "
    "with the package)."
)


def console(stderr: bool = False) -> Console:
    """Made per call, so the terminal width is read when output is printed."""
    return Console(stderr=stderr)


def push(
    bundle: Annotated[Path, typer.Argument(help="A bundle directory written by `factory export`.")],
    registry: Annotated[
        str | None,
        typer.Option(help=f"Registry directory to publish into (default: ${REGISTRY_ENV})."),
    ] = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Replace NAME:VERSION if it is there with other content."),
    ] = False,
) -> None:
    """Publish a bundle: every file is verified against its manifest, stored by sha256
    (blobs/sha256/HEX), then index.json is updated atomically. Serve the directory with any
    static HTTP server to share it."""
    where = registry or os.environ.get(REGISTRY_ENV)
    if not where:
        raise UserError(f"pass --registry DIR (or set ${REGISTRY_ENV}) to say where to publish")
    result = push_bundle(bundle, where, force=force)
    typer.echo(
        f"{result.status} {result.entry.ref} in {result.registry} "
        f"({len(result.entry.files)} files, {result.size_bytes / 1024:.1f} KiB)"
    )


def models(
    registry: Annotated[str | None, typer.Option(help=REGISTRY_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """List the models of a registry with their measured metrics, and the torchvision
    recipes `factory pull` can export."""
    source = open_registry(registry)
    index = source.read_index()
    if as_json:
        typer.echo(json.dumps(models_json(source.location, index), indent=2))
        return
    out = console()
    print_models(out, source.location, index)
    out.print("Fetch one: factory pull NAME[:VERSION] [--target T] [--out DIR]")


def pull(
    ref: Annotated[
        str,
        typer.Argument(
            metavar="NAME[:VERSION]",
            help="A model of the registry (latest version when omitted), or a recipe such as "
            "torchvision/mobilenet_v3_small.",
        ),
    ],
    target: Annotated[
        str | None,
        typer.Option(
            "--target",
            "-t",
            help="Prepare it for this target: a TensorRT target gets its engine, "
            "built on the target itself (its agent, or this machine's GPU).",
        ),
    ] = None,
    registry: Annotated[str | None, typer.Option(help=REGISTRY_HELP)] = None,
    out: Annotated[
        Path | None, typer.Option(help="Also copy the verified bundle to OUT/NAME.")
    ] = None,
    pretrained: Annotated[
        bool,
        typer.Option(
            "--pretrained/--no-pretrained",
            help="Recipes only: torchvision's ImageNet weights (downloaded, hash-checked by "
            "torchvision) or random ones.",
        ),
    ] = True,
    force: Annotated[
        bool,
        typer.Option("--force", help="Replace OUT/NAME even if its files were changed."),
    ] = False,
) -> None:
    """Download a model into the user cache, verifying every file's sha256 before anything
    uses it; a torchvision recipe is exported here instead."""
    err = console(stderr=True)
    with err.status(f"pulling {ref}") as status:

        def progress(label: str, received_bytes: int) -> None:
            status.update(f"pulling {ref}: {label}")

        pulled = pull_model(
            ref,
            registry,
            target=target,
            out=out,
            pretrained=pretrained,
            progress=progress,
            force=force,
        )
    print_pulled(pulled, target)


def print_pulled(pulled: PulledModel, target: str | None = None) -> None:
    bundle = pulled.bundle
    how = "downloaded" if bundle.downloaded else "already in the cache"
    how = "exported here" if bundle.exported else how
    typer.echo(
        f"{bundle.entry.ref}: {bundle.path} ({how}; {len(bundle.manifest.files) + 1} files, "
        f"sha256 verified)"
    )
    if pulled.engine is not None:
        e = pulled.engine
        typer.echo(
            f"engine: {e.path} ({e.precision}, TensorRT {e.trt_version} on {e.device_name}, "
            f"built {e.built_by} in {e.build_s:.1f} s)"
        )
    if pulled.copy is not None:
        typer.echo(f"copied to {pulled.copy}")
    for choice in _deploy_choices(bundle.manifest.data, target):
        typer.echo(choice.sentence())


def _deploy_choices(manifest: Mapping[str, Any], target: str | None) -> list[DeployChoice]:
    """Which file to deploy, from a verified bundle's manifest; nothing for a manifest this
    exporter's schema does not read (a registry holds what others published, and the pull
    itself succeeded: advice is not worth failing it)."""
    try:
        return deploy_choices(Manifest.from_dict(manifest), target)
    except UserError:
        return []


def models_json(location: str, index: Index) -> dict:
    """What `factory models --json` prints."""
    recipes = [RECIPES.get(n) for n in RECIPES.names()]
    return {
        "registry": location,
        "models": index.to_json()["models"],
        "recipes": [
            {"name": r.name, "weights": r.weights, "params": r.params, "imagenet_top1": r.top1}
            for r in recipes
        ],
    }


MODEL_COLUMNS = (
    Column("name", key=True),
    Column("version", key=True),
    Column("test acc", key=True, justify="right"),
    Column("params", justify="right"),
    Column("MACs", justify="right"),
    Column("x86-cpu ms", justify="right"),
    Column("targets"),
)
RECIPE_COLUMNS = (
    Column("name", key=True),
    Column("ImageNet top-1 (torchvision)", justify="right"),
    Column("params", justify="right"),
    Column("weights"),
)


def models_rows(index: Index) -> list[list[str]]:
    """One row per model and version, in `MODEL_COLUMNS` order."""
    rows = []
    for e in sorted(index.models, key=lambda e: (e.name, version_key(e.version))):
        s = e.summary
        acc = f"{100 * s.test_accuracy:.2f} %" if s.test_accuracy is not None else "-"
        latency = f"{s.latency_ms:.3f}" if s.latency_ms is not None else "-"
        rows.append(
            [e.name, e.version, acc, _si(s.params), _si(s.macs), latency, ", ".join(s.targets)]
        )
    return rows or [["(none yet)", "", "", "", "", "", ""]]


def recipes_rows() -> list[list[str]]:
    """One row per torchvision recipe, in `RECIPE_COLUMNS` order."""
    recipes = [RECIPES.get(name) for name in RECIPES.names()]
    return [[r.name, f"{r.top1:.1f} %", _si(r.params), r.weights] for r in recipes]


def print_models(out: Console, location: str, index: Index) -> None:
    """The registry's models and the recipes, whole at any width (`factory models`)."""
    more = "factory models --json"
    print_fitted(out, MODEL_COLUMNS, models_rows(index), more, title=f"models in {location}",
                 title_justify="left")  # fmt: skip
    title = "recipes (exported on pull; --no-pretrained for random weights)"
    print_fitted(out, RECIPE_COLUMNS, recipes_rows(), more, title=title, title_justify="left")


def _si(value: int | None) -> str:
    if value is None:
        return "-"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:.2f} {unit}"
    return str(value)
