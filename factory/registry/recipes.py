"""torchvision's lightweight classifiers as recipes: `factory pull torchvision/ARCH` builds the
architecture (with its ImageNet-1k weights when they can be downloaded; torchvision checks
their hash), exports it with `exporters.bundle.export_bundle` like any searched model, and
keeps the bundle in the user cache as `torchvision-ARCH/<weights tag>`.

The table is literal data so that `factory models` lists recipes without importing torch;
a test checks it against torchvision's own weight metadata.
"""

from __future__ import annotations

import shutil
import tempfile
import urllib.error
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from factory.registry.cache import (
    CachedBundle,
    bundle_cache_path,
    entry_of_bundle,
    move_into_place,
    verify_cached,
)
from targets.atomic import as_if_created
from targets.errors import UserError
from targets.registry import Registry

if TYPE_CHECKING:
    from torch import nn

RECIPE_PREFIX = "torchvision/"  # `pull torchvision/ARCH` exports a recipe instead
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # of pixels scaled to [0, 1]
IMAGENET_STD = (0.229, 0.224, 0.225)
INPUT_CHW = (3, 224, 224)
UNTRAINED = "untrained"  # the version of a bundle exported with random weights


@dataclass(frozen=True)
class Recipe:
    """One torchvision architecture and the weights a pull uses (its DEFAULT ones)."""

    arch: str  # torchvision.models builder name
    weights: str  # member of its weights enum, e.g. IMAGENET1K_V1
    params: int  # as published by torchvision
    top1: float  # ImageNet-1k top-1 accuracy, %, as published by torchvision
    resize: int  # shorter side resized to this before the 224 centre crop

    @property
    def name(self) -> str:
        return f"{RECIPE_PREFIX}{self.arch}"

    @property
    def bundle_name(self) -> str:
        return f"torchvision-{self.arch}"

    def version(self, pretrained: bool) -> str:
        return self.weights.lower() if pretrained else UNTRAINED


RECIPES: Registry[Recipe] = Registry("recipe")
for _recipe in (
    #      arch                  weights          params     top1    resize
    Recipe("mobilenet_v3_small", "IMAGENET1K_V1", 2_542_856, 67.668, 256),
    Recipe("mobilenet_v3_large", "IMAGENET1K_V2", 5_483_032, 75.274, 232),
    Recipe("mobilenet_v2", "IMAGENET1K_V2", 3_504_872, 72.154, 232),
    Recipe("shufflenet_v2_x0_5", "IMAGENET1K_V1", 1_366_792, 60.552, 256),
    Recipe("shufflenet_v2_x1_0", "IMAGENET1K_V1", 2_278_604, 69.362, 256),
    Recipe("mnasnet0_5", "IMAGENET1K_V1", 2_218_512, 67.734, 256),
    Recipe("mnasnet1_0", "IMAGENET1K_V1", 4_383_312, 73.456, 256),
):
    RECIPES.register(_recipe.name, _recipe)


def get_recipe(ref: str) -> Recipe:
    """The recipe `torchvision/ARCH`; an unknown one lists the recipes."""
    if ":" in ref:
        raise UserError(f"{ref}: a recipe has no versions (use --no-pretrained for random weights)")
    return RECIPES.get(ref)


def build_model(recipe: Recipe, pretrained: bool) -> nn.Module:
    """The torchvision model, with its pretrained weights (downloaded by torchvision into its
    cache and hash-checked) or random ones."""
    import torchvision

    weights = torchvision.models.get_model_weights(recipe.arch)[recipe.weights]
    try:
        return torchvision.models.get_model(recipe.arch, weights=weights if pretrained else None)
    except (urllib.error.URLError, OSError) as exc:
        raise UserError(
            f"cannot download torchvision's {recipe.weights} weights for {recipe.arch} "
            f"({_one_line(exc)}); pass --no-pretrained to export it with random weights"
        ) from exc
    except RuntimeError as exc:
        if "hash" not in str(exc):
            raise
        raise UserError(f"torchvision's {recipe.arch} weights failed their hash check") from exc


def export_recipe(
    ref: str,
    pretrained: bool = True,
    target: str | None = None,
    on_step: Callable[[str], None] | None = None,
) -> CachedBundle:
    """The recipe's bundle in the cache: reused when it verifies, else exported (model.onnx
    and its card; no accuracy or latency, there is no ImageNet here to measure them on)."""
    recipe = get_recipe(ref)
    if target is not None:
        from targets import get_target

        get_target(target)  # an unknown target fails before the export
    final = bundle_cache_path(recipe.bundle_name, recipe.version(pretrained))
    view = verify_cached(final, None) if final.exists() else None
    exported = view is None
    if view is None:
        _export_into(final, recipe, pretrained, on_step)
        view = verify_cached(final, None)
        if view is None:
            raise UserError(f"{final}: the exported bundle does not verify")
    return CachedBundle(entry_of_bundle(final, view), final, view, False, exported)


def _export_into(
    final: Path, recipe: Recipe, pretrained: bool, on_step: Callable[[str], None] | None
) -> None:
    from exporters.bundle import export_bundle
    from exporters.manifest import Architecture, Source
    from exporters.settings import BundleMeta
    from factory import __version__

    model = build_model(recipe, pretrained)
    meta = BundleMeta(
        name=recipe.bundle_name,
        version=recipe.version(pretrained),
        input_shape=INPUT_CHW,
        class_names=_categories(recipe),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        dataset="imagenet-1k",
        architecture=Architecture("torchvision", recipe.arch, recipe.arch),
        source=Source(run=None, trained_epochs=None, from_supernet=False),
        summary=_summary(recipe, pretrained),
        factory_version=__version__,
    )
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = as_if_created(
        Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent))
    )
    try:
        bundle = export_bundle(model, meta, staging, formats=("onnx",), on_step=on_step)
        move_into_place(bundle.path, final, None)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _categories(recipe: Recipe) -> tuple[str, ...]:
    import torchvision

    weights = torchvision.models.get_model_weights(recipe.arch)[recipe.weights]
    return tuple(weights.meta["categories"])  # shipped with torchvision: no download


def _summary(recipe: Recipe, pretrained: bool) -> str:
    weights = (
        f"torchvision's {recipe.weights} ImageNet-1k weights (published top-1 {recipe.top1:.1f} %)"
        if pretrained
        else "random weights (--no-pretrained: for testing a deployment, not for predictions)"
    )
    return (
        f"torchvision's `{recipe.arch}` with {weights}. Preprocess like torchvision: resize the "
        f"shorter side to {recipe.resize}, centre-crop 224 x 224, RGB"
    )


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(getattr(exc, "reason", None) or exc).split())
    return text[:200] or type(exc).__name__
