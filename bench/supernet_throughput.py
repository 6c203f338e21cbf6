"""Training throughput of a supernet on one fixed path vs the same network built standalone.

Weight sharing must not make training much slower than training the chosen network alone
(goal: ratio >= 0.8). Both are timed in the same process, alternating, on the same batch;
the figure is the median over rounds. Writes docs/supernet_throughput.md.

    python bench/supernet_throughput.py [--rounds 7] [--steps 10] [--batch 128]
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from factory.spaces import SPACES, get_space
from factory.supernet import SupernetTrainConfig, make_optimizer

DOCS = Path(__file__).resolve().parents[1] / "docs" / "supernet_throughput.md"


def _images_per_s(step, x: torch.Tensor, y: torch.Tensor, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        step(x, y)
    return steps * len(x) / (time.perf_counter() - start)


def _trainer(model: nn.Module, forward):
    cfg = SupernetTrainConfig()
    opt = make_optimizer(model, cfg)
    loss_fn = nn.CrossEntropyLoss()
    model.train()

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn(forward(x), y).backward()
        nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()

    return step


def measure(name: str, arch: str, rounds: int, steps: int, batch: int) -> dict[str, float]:
    space = get_space(name)
    g = space.manual()[arch]
    supernet = space.supernet()
    standalone = space.build(g)
    x = torch.randn(batch, *space.spec.shape, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, space.spec.num_classes, (batch,))
    super_step = _trainer(supernet, lambda t: supernet(t, g))
    alone_step = _trainer(standalone, standalone)
    for step in (super_step, alone_step):  # warm-up: allocator, kernels, caches
        _images_per_s(step, x, y, 2)
    sup, alone = [], []
    for _ in range(rounds):  # alternate so machine noise hits both alike
        sup.append(_images_per_s(super_step, x, y, steps))
        alone.append(_images_per_s(alone_step, x, y, steps))
    ratios = [s / a for s, a in zip(sup, alone, strict=True)]
    return {
        "supernet": statistics.median(sup),
        "standalone": statistics.median(alone),
        "ratio": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=128)
    args = parser.parse_args()
    rows = []
    for name in SPACES.names():
        arch = next(iter(get_space(name).manual()))
        r = measure(name, arch, args.rounds, args.steps, args.batch)
        rows.append((name, arch, r))
        print(
            f"{name:11s} {arch:14s} supernet {r['supernet']:8.1f} img/s  "
            f"standalone {r['standalone']:8.1f} img/s  ratio {r['ratio']:.3f} "
            f"[{r['ratio_min']:.3f}–{r['ratio_max']:.3f}]"
        )
    lines = [
        "# Supernet training throughput",
        "",
        "Training images/s of the supernet running one fixed path vs `build(g)` trained alone,",
        "same batch, same process, alternating rounds; medians over rounds; ratio = median of",
        "per-round ratios (supernet / standalone). Goal: ratio >= 0.8.",
        "",
        f"- command: `python bench/supernet_throughput.py --rounds {args.rounds} "
        f"--steps {args.steps} --batch {args.batch}`",
        f"- machine: {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} torch threads, torch {torch.__version__}",
        f"- date: {dt.date.today().isoformat()}",
        "- input: 1×28×28 (Fashion-MNIST shape), 10 classes, random tensors",
        "",
        "| space | architecture | supernet img/s | standalone img/s | ratio | ratio range |",
        "|---|---|---:|---:|---:|---|",
    ]
    for name, arch, r in rows:
        lines.append(
            f"| {name} | {arch} | {r['supernet']:.1f} | {r['standalone']:.1f} | "
            f"{r['ratio']:.3f} | {r['ratio_min']:.3f}–{r['ratio_max']:.3f} |"
        )
    DOCS.parent.mkdir(exist_ok=True)
    DOCS.write_text("\n".join(lines) + "\n")
    print(f"wrote {DOCS}")


if __name__ == "__main__":
    main()
