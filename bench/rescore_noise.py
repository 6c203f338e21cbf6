"""How far the final rescoring can be trusted: replay it from a finished run's last
checkpoint and see what moves a model's score against a reference network.

Each model is fine-tuned from the run's final shared weights exactly as the rescoring does
(`--steps` batches, the batch order `--orders` names; the run's is 0) and scored twice: on
the run's validation images (`--val-size`) and on `--images` held-out images (those, then
training images the search never trained on). Prints each score and each model's
difference from the first model named, so one sees what the sample of images, the batch
order and the number of steps each do to a comparison (docs/search.md, "Rescoring on more
images").

    python bench/rescore_noise.py runs/r10 --models mobilenet_v2@0.5 5fe49059c161 \\
        --orders 0 1 2 --images 20000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def genotypes(run: Path, space, names: list[str]) -> dict[str, tuple[int, ...]]:
    """Manual architectures by name, anything else by arch_id (or prefix) from the run."""
    from factory.trained import resolve_candidates

    return {c.name: c.genotype for c in resolve_candidates(run, space, names, pareto=False)}


def replay(args: argparse.Namespace) -> list[tuple[int, str, float, float]]:
    """(order, model, accuracy on the validation images, on the held-out images) rows."""
    import dataclasses

    import torch

    from factory.data import iterate_batches
    from factory.search.checkpoint import load_checkpoint
    from factory.search.resolve import load_run_config
    from factory.search.rundir import load_data
    from factory.search.scoring import EvalSettings, Scorer, endless_batches, prepared
    from factory.spaces import get_space
    from factory.supernet import evaluate_genotype, finetune_path
    from targets.errors import UserError

    torch.set_num_threads(args.threads)
    config = dataclasses.replace(load_run_config(args.run), rescore=1, rescore_images=args.images)
    checkpoint = load_checkpoint(args.run)
    if checkpoint is None:
        raise UserError(f"{args.run} has no checkpoint to replay the rescoring from")
    data = load_data(config, spare=True)
    space = get_space(config.space, data.info.input_spec(), config.space_options)
    net = space.supernet().to(memory_format=torch.channels_last)
    net.load_state_dict(checkpoint.tensors["supernet"])
    settings = EvalSettings(
        batch_size=config.batch_size, calib_steps=config.calib_steps,
        val_size=config.val_size, finetune_val_size=args.images,
    )  # fmt: skip
    plain = Scorer.of(space, config.space_options, data.train, data.val, settings)
    wide = plain.finetuned(data.train, data.spare)
    device = torch.device("cpu")
    models = genotypes(args.run, space, args.models)
    rows = []
    for order in args.orders:
        for name, g in models.items():
            began = time.perf_counter()
            batches = endless_batches(data.train, config.batch_size,
                                      torch.Generator().manual_seed(order))  # fmt: skip
            tuned = finetune_path(
                net, g, prepared(device, batches), args.steps, settings.finetune_lr
            )
            scores = [
                evaluate_genotype(
                    tuned, g,
                    prepared(device, iterate_batches(s.val, settings.eval_batch_size)),
                    prepared(device, iterate_batches(plain.calib, settings.calib_batch_size)),
                    settings.calib_steps,
                )
                for s in (plain, wide)
            ]  # fmt: skip
            rows.append((order, name, *scores))
            print(
                f"order {order}  {name:18s} {100 * scores[0]:6.2f} % on {len(plain.val):,}  "
                f"{100 * scores[1]:6.2f} % on {len(wide.val):,}  "
                f"({time.perf_counter() - began:.0f} s)",
                flush=True,
            )
    return rows


def differences(rows: list[tuple[int, str, float, float]]) -> list[str]:
    """Each model's scores minus the first model's, per batch order, in points."""
    lines = []
    for order in dict.fromkeys(r[0] for r in rows):
        mine = [r for r in rows if r[0] == order]
        ref = mine[0]
        for _, name, a, b in mine[1:]:
            va, held = 100 * (a - ref[2]), 100 * (b - ref[3])
            lines.append(f"order {order}  {name} - {ref[1]}: {va:+.2f} / {held:+.2f}")
    return lines


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path, help="a finished search run with a checkpoint")
    p.add_argument("--models", nargs="+", required=True,
                   help="manual architectures or arch_ids; the first is the reference")  # fmt: skip
    p.add_argument("--orders", nargs="+", type=int, default=[0], help="fine-tuning batch orders")
    p.add_argument("--steps", type=int, default=50, help="fine-tuning batches (the search's: 50)")
    p.add_argument("--images", type=int, default=20000, help="held-out images of the wide score")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    from targets.errors import UserError

    try:
        rows = replay(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    print("\ndifferences in points (validation images / held-out images):")
    print("\n".join(differences(rows)))


if __name__ == "__main__":
    main()
