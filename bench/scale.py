"""Scale-out on this machine: candidate scoring with 1 vs 2 Ray workers, supernet training
with 1 vs 2 data-parallel ranks (torch.distributed, gloo). Writes docs/scale.json and
docs/scale.md (the measured figures plus how to run on a real cluster and a GPU node).

    python bench/scale.py [--candidates 16] [--steps 20]

Every process uses one thread, so "2 workers" means two cores. On a 2-core box that the
driver and other jobs share, this shows that the engines split the work and what their
overhead is, not what a cluster with free cores would gain.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from machine import describe_machine  # noqa: E402

from factory.data import load_dataset  # noqa: E402
from factory.distributed import DistContext  # noqa: E402
from factory.search.executor import Executor, ExecutorSpec, InProcessExecutor  # noqa: E402
from factory.search.scoring import EvalSettings, Scorer  # noqa: E402
from factory.spaces import get_space  # noqa: E402
from factory.supernet import SupernetTrainConfig, make_optimizer, train_epoch  # noqa: E402

DOCS = REPO / "docs"
SPACE, BATCH = "shufflenet", 64  # the quick preset's space and batch


def scoring(candidates: int) -> dict[str, dict[str, float]]:
    """Evaluations per minute: in-process, then Ray with 1 and 2 worker CPUs."""
    data = load_dataset("fashion-mnist", limit_train=2000)
    space = get_space(SPACE, data.info.input_spec())
    scorer = Scorer.of(space, {}, data.train, data.val, EvalSettings())
    torch.manual_seed(0)
    net = scorer.build_supernet()
    rng = np.random.default_rng(0)
    genotypes = [space.sample(rng) for _ in range(candidates)]
    here = InProcessExecutor()
    _score_rate(here, scorer, net, genotypes[:1])  # first-call set-up, as the workers' below
    out = {"in-process": _score_rate(here, scorer, net, genotypes)}
    for cpus in (1, 2):
        from factory.search.ray_executor import RayExecutor

        executor = RayExecutor.connect(ExecutorSpec("ray", num_cpus=cpus), {})
        _score_rate(executor, scorer, net, genotypes[:cpus])  # workers up, supernet built
        out[f"ray, {cpus} worker{'s' if cpus > 1 else ''}"] = _score_rate(
            executor, scorer, net, genotypes
        )
        executor.close()
    return out


def _score_rate(
    executor: Executor, scorer: Scorer, net: torch.nn.Module, genotypes: list
) -> dict[str, float]:
    start = time.perf_counter()
    scores = executor.score(scorer, net, f"bench-{time.monotonic_ns()}", genotypes)
    accuracies = [scores.get(i) for i in range(len(genotypes))]
    seconds = time.perf_counter() - start
    assert all(0 <= a <= 1 for a in accuracies)
    rate = 60 * len(genotypes) / seconds
    return {"candidates": len(genotypes), "seconds": seconds, "per_min": rate}


def _train(ctx: DistContext | None, steps: int) -> float:
    """Global images per second over `steps` steps (after 3 untimed ones)."""
    space = get_space(SPACE)
    torch.manual_seed(0)
    net = space.supernet().to(memory_format=torch.channels_last)
    cfg = SupernetTrainConfig()
    optimizer = make_optimizer(net, cfg)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(BATCH, 1, 28, 28, generator=gen).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (BATCH,), generator=gen)
    model, batch = net, (x, y)
    if ctx is not None:
        model, batch = ctx.wrap(net), ctx.shard(x, y)
    rng = np.random.default_rng(0)  # the same paths on every rank
    train_epoch(space, model, [batch] * 3, optimizer, cfg, rng)
    if ctx is not None:
        dist.barrier()
    start = time.perf_counter()
    train_epoch(space, model, [batch] * steps, optimizer, cfg, rng)
    if ctx is not None:
        dist.barrier()
    return steps * BATCH / (time.perf_counter() - start)


def _rank(rank: int, port: int, steps: int, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        rate = _train(DistContext(rank, 2, torch.device("cpu"), dist.new_group()), steps)
        if rank == 0:
            Path(out).write_text(json.dumps(rate))
    finally:
        dist.destroy_process_group()


def training(steps: int) -> dict[str, float]:
    """Supernet images/s: one process, then 2 gloo ranks on the same global batch."""
    import socket
    import tempfile

    torch.set_num_threads(1)
    one = _train(None, steps)
    with socket.socket() as s, tempfile.TemporaryDirectory() as tmp:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        out = str(Path(tmp) / "rate.json")
        mp.spawn(_rank, args=(port, steps, out), nprocs=2, join=True)
        two = json.loads(Path(out).read_text())
    return {"1 rank": one, "2 ranks": two}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=16)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    load_before = os.getloadavg()
    started = time.time()
    result = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": describe_machine(),
        "command": f"python bench/scale.py --candidates {args.candidates} --steps {args.steps}",
        "space": SPACE,
        "batch": BATCH,
        "scoring": scoring(args.candidates),
        "training": training(args.steps),
        "load_average_before": list(load_before),
        "load_average_after": list(os.getloadavg()),
        "wall_s": round(time.time() - started, 1),
    }
    (DOCS / "scale.json").write_text(json.dumps(result, indent=2) + "\n")
    from scale_page import page

    (DOCS / "scale.md").write_text(page(result))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
