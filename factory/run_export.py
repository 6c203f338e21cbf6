"""The chosen models of a search run as exporter inputs: weights (trained, or inherited from
the supernet) and the bundle metadata the manifest records. `factory export` and the
benches share it; the CLI only parses options and reports."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

from torch import nn

from exporters.manifest import Architecture, Source
from exporters.settings import BundleMeta
from factory import __version__
from factory.trained import Candidate, OpenRun, supernet_model, trained_model

SHORT_DATASET = {"fashion-mnist": "fmnist"}


@dataclass(frozen=True)
class ExportModel:
    """A candidate with its weights loaded and its bundle metadata."""

    model: nn.Module
    meta: BundleMeta


def default_prefix(opened: OpenRun) -> str:
    """'fmnist-': the dataset's short name, the default start of bundle names."""
    name = opened.config.dataset.lower()
    return SHORT_DATASET.get(name, re.sub(r"[^a-z0-9._-]+", "-", name)) + "-"


def bundle_name(prefix: str, space: str, c: Candidate) -> str:
    """'fmnist-shufflenet-3a0e80fd5f05', or 'fmnist-shufflenet_g3' for a manual architecture."""
    core = c.name if c.name != c.arch_id else f"{space}-{c.arch_id}"
    return f"{prefix}{core}".lower()


def bundle_meta(
    run: Path, opened: OpenRun, c: Candidate, from_supernet: bool, prefix: str, version: str
) -> BundleMeta:
    """The manifest's view of candidate c of the run (name, input, source, version)."""
    space, info = opened.space, opened.data.info
    return BundleMeta(
        name=bundle_name(prefix, space.name, c),
        version=version,
        input_shape=info.input_shape,
        class_names=info.class_names,
        mean=info.mean,
        std=info.std,
        dataset=info.name,
        architecture=Architecture(space.name, space.format(c.genotype), c.arch_id),
        source=Source(_run_text(run), None, from_supernet),
        factory_version=__version__,
    )


def load_for_export(run: Path, opened: OpenRun, c: Candidate, meta: BundleMeta) -> ExportModel:
    """The candidate's weights: an error before any export when they are missing."""
    if meta.source.from_supernet:
        return ExportModel(supernet_model(run, opened, c), meta)
    model, trained = trained_model(run, opened.space, c)
    source = replace(meta.source, trained_epochs=trained.epochs)
    return ExportModel(model, replace(meta, source=source))


def _run_text(run: Path) -> str:
    """The run as the manifest names it: relative to here when inside it, else its name."""
    rel = os.path.relpath(run.resolve())
    return rel if not rel.startswith("..") else run.resolve().name
