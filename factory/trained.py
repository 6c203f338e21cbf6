"""Candidates of a search run and the weights trained for them.

`factory train` writes, and `factory export` reads, one directory per trained architecture:
`RUN/trained/<arch_id>/model.safetensors` (the state dict of `space.build(genotype)`) and
`train.json` (how it was trained and what it scored). The directory is written under a
temporary name and renamed, so a crash never leaves weights without their metrics.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from factory.data import DataSplits
from factory.run_report import load_pareto
from factory.search.config import SearchConfig
from factory.search.resolve import load_run_config
from factory.search.store import RunStore
from factory.spaces import get_space
from factory.spaces.base import Genotype, SearchSpace
from factory.training import TrainRecipe, TrainResult, augment_for, device_name, train_model
from targets.atomic import as_if_created, fsync_dir
from targets.errors import UserError

if TYPE_CHECKING:
    from rich.progress import Progress

TRAINED = "trained"
WEIGHTS = "model.safetensors"
INFO = "train.json"


@dataclass(frozen=True)
class Candidate:
    """One architecture of a run, named by its arch_id (or a manual architecture's name)."""

    arch_id: str
    genotype: Genotype
    name: str  # arch_id, or e.g. "shufflenet_g3" for a manual architecture


@dataclass(frozen=True)
class TrainedInfo:
    """What `train.json` holds: enough to rebuild, audit and compare the model."""

    arch_id: str
    space: str
    genotype: str  # the space's text form
    dataset: str
    epochs: float
    from_supernet: bool
    test_accuracy: float  # fraction of the test split classified correctly
    test_images: int
    train_seconds: float
    recipe: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)  # per epoch
    created: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainedInfo:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def describe_training(
    names: tuple[str, str, str],
    space: str,
    data: DataSplits,
    recipe: TrainRecipe,
    result: TrainResult,
    seed: int,
    from_supernet: bool = False,
    device: torch.device | None = None,
) -> TrainedInfo:
    """The train.json of one finished training of `names` = (arch_id, the genotype's text
    form, display name): the full recipe, where it ran and what it scored."""
    arch_id, genotype, name = names
    return TrainedInfo(
        arch_id=arch_id,
        space=space,
        genotype=genotype,
        dataset=data.info.name,
        epochs=recipe.epochs,
        from_supernet=from_supernet,
        test_accuracy=result.test.accuracy,
        test_images=result.test.images,
        train_seconds=round(result.seconds, 2),
        recipe={
            **recipe.to_dict(),
            "augment": dataclasses.asdict(augment_for(recipe, data.info)),
            "seed": seed,
            "train_images": result.train_images,
            "steps": result.steps,
            "threads": torch.get_num_threads(),
            "device": device_name(device or torch.device("cpu")),
            "name": name,
            "test_loss": result.test.loss,
        },
        history=result.history_dicts(),
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )


def train_and_save(
    out: Path,
    model: nn.Module,
    names: tuple[str, str, str],
    space: str,
    data: DataSplits,
    recipe: TrainRecipe,
    seed: int,
    device: torch.device,
    progress: Progress | None = None,
    from_supernet: bool = False,
) -> TrainedInfo:
    """Train `model` (data order seeded by `seed`) and save it with its train.json under
    OUT/trained/<arch_id>/: the one path for `factory train` and the baselines bench, so
    both record the same recipe fields."""
    generator = torch.Generator().manual_seed(seed)
    result = train_model(model, data, recipe, generator, progress, names[2][:16], device)
    info = describe_training(names, space, data, recipe, result, seed, from_supernet, device)
    save_trained(out, model, info)
    return info


@dataclass(frozen=True)
class OpenRun:
    """A run's saved config with its dataset (all training images) and search space."""

    config: SearchConfig
    data: DataSplits
    space: SearchSpace


def open_run(run_dir: Path) -> OpenRun:
    """The run's config, its dataset split the way the search split it (same seed, same val
    images) but with every training image, and its space built for that input."""
    from factory.data import load_dataset

    config = load_run_config(run_dir)
    data = load_dataset(
        config.dataset,
        root=Path(config.data_root) if config.data_root else None,
        seed=config.seed,
    )
    space = get_space(config.space, data.info.input_spec(), config.space_options)
    return OpenRun(config, data, space)


def resolve_candidates(
    run_dir: Path, space: SearchSpace, ids: list[str], pareto: bool
) -> list[Candidate]:
    """The run's Pareto front (`pareto`) and/or the named candidates: an arch_id, a unique
    prefix of one (≥ 4 characters), or a manual architecture of the space."""
    chosen: dict[str, Candidate] = {}
    if pareto:
        if not (run_dir / "pareto.json").exists():
            raise UserError(f"{run_dir} has no pareto.json yet; finish the search first")
        front = load_pareto(run_dir)["front"]
        if not front and not ids:
            raise UserError(
                f"the front of {run_dir} is empty (no candidate scored clearly above chance); "
                f"choose models with --candidate ID (see `factory report {run_dir}`)"
            )
        for row in front:
            g = space.parse(row["genotype"])
            chosen[row["arch_id"]] = Candidate(row["arch_id"], g, row["arch_id"])
    if ids:
        with RunStore(run_dir) as store:
            known = {r.arch_id: r.genotype for r in store.records()}
        for text in ids:
            c = _one_candidate(space, known, text)
            chosen.setdefault(c.arch_id, c)
    if not chosen:
        raise UserError("choose models with --pareto or --candidate ID")
    return list(chosen.values())


def _one_candidate(space: SearchSpace, known: dict[str, Genotype], text: str) -> Candidate:
    if text in space.manual():
        g = space.manual()[text]
        return Candidate(space.arch_id(g), g, text)
    matches = [a for a in known if a == text] or (
        [a for a in known if a.startswith(text)] if len(text) >= 4 else []
    )
    if len(matches) == 1:
        return Candidate(matches[0], known[matches[0]], matches[0])
    manual = ", ".join(sorted(space.manual()))
    why = "is ambiguous" if matches else "is not an architecture of this run"
    raise UserError(
        f"candidate {text!r} {why}; use an arch_id from `factory report` or one of: {manual}"
    )


def trained_dir(run_dir: Path, arch_id: str) -> Path:
    return run_dir / TRAINED / arch_id


def save_trained(run_dir: Path, model: nn.Module, info: TrainedInfo) -> Path:
    """Weights and train.json for one architecture, swapped in atomically."""
    final = trained_dir(run_dir, info.arch_id)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = as_if_created(Path(tempfile.mkdtemp(prefix=f".{info.arch_id}-", dir=final.parent)))
    try:
        state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS))
        (tmp / INFO).write_text(json.dumps(info.to_dict(), indent=2) + "\n")
        for name in (WEIGHTS, INFO):
            with open(tmp / name, "rb") as fh:
                os.fsync(fh.fileno())
        if final.exists():
            old = final.with_name(f".{info.arch_id}-old")
            shutil.rmtree(old, ignore_errors=True)
            final.rename(old)
            tmp.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(final)
        fsync_dir(final.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def load_trained(run_dir: Path, arch_id: str) -> tuple[dict[str, torch.Tensor], TrainedInfo]:
    """The trained weights and info of one architecture, or an error saying how to get them."""
    directory = trained_dir(run_dir, arch_id)
    if not (directory / WEIGHTS).is_file() or not (directory / INFO).is_file():
        raise UserError(
            f"no trained weights for {arch_id} in {run_dir}; run `factory train {run_dir} "
            f"--candidate {arch_id}` or pass --from-supernet"
        )
    info = TrainedInfo.from_dict(json.loads((directory / INFO).read_text()))
    return load_file(str(directory / WEIGHTS)), info


def trained_model(
    run_dir: Path, space: SearchSpace, candidate: Candidate
) -> tuple[nn.Module, TrainedInfo]:
    """`space.build` with the trained weights loaded (eval mode), and how they were trained."""
    state, info = load_trained(run_dir, candidate.arch_id)
    model = space.build(candidate.genotype)
    model.load_state_dict(state, strict=True)
    return model.eval(), info


RECALIBRATION_BATCHES = 8  # at least, of the run's batch size


def supernet_model(run_dir: Path, opened: OpenRun, candidate: Candidate) -> nn.Module:
    """`space.build` with weights inherited from the run's last supernet checkpoint (eval mode).

    The supernet's BatchNorm statistics mix every path, so they are re-estimated for this
    network on training images, as the search did before scoring it."""
    from factory.data import iterate_batches
    from factory.search.checkpoint import load_checkpoint
    from factory.supernet import recalibrate_bn

    ckpt = load_checkpoint(run_dir)
    if ckpt is None:
        raise UserError(f"{run_dir} has no supernet checkpoint to inherit weights from")
    supernet = opened.space.supernet()
    supernet.load_state_dict(ckpt.tensors["supernet"])
    model = opened.space.build_from_supernet(supernet, candidate.genotype)
    config = opened.config
    batches = iterate_batches(opened.data.train, config.batch_size)
    recalibrate_bn(model, model.modules(), batches, max(config.calib_steps, RECALIBRATION_BATCHES))
    return model.eval()
