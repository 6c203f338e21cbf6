"""Checkpoints: exact round trip, optimizer state that resumes training, crash-safe swaps."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from factory.search import checkpoint as ckpt
from factory.search.checkpoint import (
    flatten_optimizer_state,
    load_checkpoint,
    numpy_rng_state,
    save_checkpoint,
    set_numpy_rng_state,
    set_torch_rng_state,
    torch_rng_state,
    unflatten_optimizer_state,
)
from targets.errors import UserError


def _tensors(seed: int) -> dict[str, dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(6, 4, generator=g)
    return {
        "supernet": {
            "conv.weight": torch.randn(3, 2, 3, 3, generator=g),
            "bn.num_batches_tracked": torch.tensor(seed, dtype=torch.int64),  # 0-dim
            "half": torch.randn(5, generator=g).half(),
            "bf16": torch.randn(5, generator=g).bfloat16(),
        },
        "supernet_prev": {"view_a": base[:3], "view_b": base[:, 1]},  # views share storage
        "strategy": {"mask": torch.rand(7, generator=g) > 0.5},
        "empty": {},
    }


def _assert_tensors_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for group in a:
        assert a[group].keys() == b[group].keys()
        for name, t in a[group].items():
            u = b[group][name]
            assert u.dtype == t.dtype and u.shape == t.shape
            assert torch.equal(_bytes(u), _bytes(t)), f"{group}.{name} differs"


def _bytes(t: torch.Tensor) -> torch.Tensor:
    """The raw bytes, so that the comparison is bitwise (NaN and -0.0 included)."""
    return t.contiguous().flatten().view(torch.uint8)


def test_round_trip_is_exact(tmp_path: Path) -> None:
    assert load_checkpoint(tmp_path) is None
    tensors = _tensors(1)
    state = {"strategy": {"population": [[0, 1, 2]], "f": 0.25}, "unit": 4, "big": 2**100}
    save_checkpoint(tmp_path, 4, tensors, state)
    loaded = load_checkpoint(tmp_path)
    assert loaded is not None and loaded.unit == 4 and loaded.state == state
    _assert_tensors_equal(tensors, loaded.tensors)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]
    save_checkpoint(tmp_path, 5, _tensors(2), {})  # replaces it
    again = load_checkpoint(tmp_path)
    assert again is not None and again.unit == 5 and again.state == {}
    _assert_tensors_equal(_tensors(2), again.tensors)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]


def test_rng_states_continue_the_same_streams(tmp_path: Path) -> None:
    rng, gen = np.random.default_rng(7), torch.Generator().manual_seed(7)
    rng.random(3), torch.rand(3, generator=gen)
    state = {"numpy": numpy_rng_state(rng), "torch": torch_rng_state(gen)}
    save_checkpoint(tmp_path, 0, {}, state)
    expected = rng.random(4), torch.rand(4, generator=gen)
    loaded = load_checkpoint(tmp_path)
    assert loaded is not None
    rng2, gen2 = np.random.default_rng(0), torch.Generator()
    set_numpy_rng_state(rng2, loaded.state["numpy"])
    set_torch_rng_state(loaded.state["torch"], gen2)
    assert np.array_equal(rng2.random(4), expected[0])
    assert torch.equal(torch.rand(4, generator=gen2), expected[1])


def _train(model: nn.Module, opt: torch.optim.Optimizer, steps: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x, y = torch.randn(8, 4, generator=g), torch.randn(8, 2, generator=g)
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()


OPTIMIZERS = {
    "sgd-momentum": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True),
    "adam": lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.8, 0.95)),
    "adamw-amsgrad": lambda p: torch.optim.AdamW(p, lr=0.01, amsgrad=True),
}


@pytest.mark.parametrize("kind", list(OPTIMIZERS))
def test_optimizer_state_resumes_training_exactly(tmp_path: Path, kind: str) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    opt = OPTIMIZERS[kind](model.parameters())
    _train(model, opt, 3, seed=1)
    opt_tensors, meta = flatten_optimizer_state(opt.state_dict())
    json.dumps(meta)  # the metadata is plain JSON
    save_checkpoint(
        tmp_path, 3, {"model": model.state_dict(), "optimizer": opt_tensors}, {"opt": meta}
    )

    loaded = load_checkpoint(tmp_path)
    assert loaded is not None
    model2 = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    model2.load_state_dict(loaded.tensors["model"])
    opt2 = OPTIMIZERS[kind](model2.parameters())
    sd = unflatten_optimizer_state(loaded.tensors["optimizer"], loaded.state["opt"])
    assert sd["param_groups"] == opt.state_dict()["param_groups"]
    opt2.load_state_dict(sd)

    _train(model, opt, 2, seed=2)
    _train(model2, opt2, 2, seed=2)
    for p, q in zip(model.parameters(), model2.parameters(), strict=True):
        assert torch.equal(p, q)


def test_fresh_optimizer_state_round_trips() -> None:
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(2))], lr=0.1)
    tensors, meta = flatten_optimizer_state(opt.state_dict())
    assert tensors == {} and unflatten_optimizer_state(tensors, meta) == opt.state_dict()


# --- crashes ---------------------------------------------------------------------------------


def test_leftover_temporary_dir_is_ignored_and_removed(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, 1, _tensors(1), {"u": 1})
    torn = tmp_path / "checkpoint.tmp-99999"
    torn.mkdir()
    (torn / "supernet.safetensors").write_bytes(b"\x00" * 10)  # a torn write, no state.json
    loaded = load_checkpoint(tmp_path)
    assert loaded is not None and loaded.unit == 1 and loaded.state == {"u": 1}
    assert not torn.exists()


def test_only_the_old_checkpoint_left_is_recovered(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, 1, _tensors(1), {"u": 1})
    os.rename(tmp_path / "checkpoint", tmp_path / "checkpoint.old")
    loaded = load_checkpoint(tmp_path)
    assert loaded is not None and loaded.unit == 1
    _assert_tensors_equal(_tensors(1), loaded.tensors)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]


class _Crash(BaseException):
    """Stands for the process dying: nothing after it runs, no cleanup catches it."""


def _crash_at(monkeypatch: pytest.MonkeyPatch, k: int) -> list[str]:
    """Make the k-th file-system step of a save die (a torn write for a tensor file)."""
    done: list[str] = []

    def step(name: str, real):
        def wrapped(*args, **kwargs):
            if len(done) == k:
                if name == "save_file":
                    Path(args[1]).write_bytes(b"\x01" * 17)
                raise _Crash(name)
            done.append(name)
            return real(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(ckpt, "save_file", step("save_file", ckpt.save_file))
    for name in ("rename", "replace"):
        monkeypatch.setattr(os, name, step(name, getattr(os, name)))
    monkeypatch.setattr(shutil, "rmtree", step("rmtree", shutil.rmtree))
    return done


def test_a_crash_at_any_step_leaves_the_last_complete_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    units_seen = set()
    for k in range(100):
        run = tmp_path / f"k{k}"
        save_checkpoint(run, 1, _tensors(1), {"u": 1})
        with monkeypatch.context() as m:
            done = _crash_at(m, k)
            try:
                save_checkpoint(run, 2, _tensors(2), {"u": 2})
                finished = True
            except _Crash:
                finished = False
        loaded = load_checkpoint(run)
        assert loaded is not None, f"no checkpoint after a crash following {done}"
        assert loaded.state == {"u": loaded.unit}
        _assert_tensors_equal(_tensors(loaded.unit), loaded.tensors)
        assert sorted(p.name for p in run.iterdir()) == ["checkpoint"]
        if done.count("rename") == 2 or finished:  # the new one was renamed into place
            assert loaded.unit == 2
        units_seen.add(loaded.unit)
        if finished:
            break
    assert finished and units_seen == {1, 2}


def test_damaged_or_newer_checkpoints_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="group name"):
        save_checkpoint(tmp_path, 0, {"../x": {}}, {})
    save_checkpoint(tmp_path, 0, {"a": {"t": torch.ones(1)}}, {})
    state_json = tmp_path / "checkpoint" / "state.json"
    meta = json.loads(state_json.read_text())
    state_json.write_text(json.dumps({**meta, "format": 99}))
    with pytest.raises(UserError, match="format 99"):
        load_checkpoint(tmp_path)
    state_json.write_text("{")
    with pytest.raises(UserError, match="incomplete or damaged"):
        load_checkpoint(tmp_path)
