"""The final rescoring: the best one-shot candidates, each fine-tuned briefly on its own from
the final weights, decide the front; the shared weights stay as they were; a Ctrl-C in the
middle resumes to the same records."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from factory.data import TensorSplit, carve_splits, iterate_batches, load_dataset
from factory.run_report import write_report
from factory.search.config import SearchConfig
from factory.search.pareto import ChanceFloor, ScoreError, pareto_front
from factory.search.rescore import RESCORE, rescore_pool
from factory.search.resolve import resolve
from factory.search.runner import rescore_steps, run_search
from factory.search.scoring import EvalSettings, Scorer
from factory.search.store import RunStore
from factory.spaces import get_space
from factory.supernet import SupernetTrainConfig, accuracy, finetune_path, train_epoch
from factory.supernet import make_optimizer as supernet_optimizer
from targets.errors import UserError
from tests.search.records import OBJECTIVES, records
from tests.search.signal_progress import assert_ctrl_c_in_phase_resumes
from tests.tiny_run import FMNIST, TINY

FLOOR = ChanceFloor(num_classes=10, val_images=5000)  # threshold 0.15


def test_pool_takes_whole_layers_front_first() -> None:
    # front: (0.80, 1.0), (0.70, 0.5); second layer: (0.75, 1.2), (0.65, 0.6); below: (0.6, 2)
    recs = records((0.80, 1.0), (0.70, 0.5), (0.75, 1.2), (0.65, 0.6), (0.60, 2.0), (0.12, 0.1))
    ids = [r.arch_id for r in recs]
    assert [r.arch_id for r in rescore_pool(recs, OBJECTIVES, FLOOR, 2)] == [ids[0], ids[1]]
    # three: the front, then the more accurate member of the second layer
    assert [r.arch_id for r in rescore_pool(recs, OBJECTIVES, FLOOR, 3)] == ids[:3]
    # the chance-level candidate (0.12) is never rescored, however cheap
    assert ids[5] not in {r.arch_id for r in rescore_pool(recs, OBJECTIVES, FLOOR, 10)}
    assert len(rescore_pool(recs, OBJECTIVES, FLOOR, 10)) == 5
    assert rescore_pool(recs, OBJECTIVES, FLOOR, 0) == []


def test_front_is_chosen_among_rescored_records_once_there_are_any() -> None:
    recs = records((0.70, 1.0), (0.60, 0.5), (0.65, 0.4))
    assert {r.arch_id for r in pareto_front(recs, OBJECTIVES)} == {recs[0].arch_id, recs[2].arch_id}
    # rescored, the second is the most accurate; the third was not rescored: it is out
    again = [
        dataclasses.replace(recs[0], objectives={**recs[0].objectives, "accuracy": 0.78},
                            phase=RESCORE),
        dataclasses.replace(recs[1], objectives={**recs[1].objectives, "accuracy": 0.80},
                            phase=RESCORE),
    ]  # fmt: skip
    assert [r.arch_id for r in pareto_front([*recs, *again], OBJECTIVES)] == [recs[1].arch_id]
    # the pool never offers a rescored record again
    assert RESCORE not in {r.phase for r in rescore_pool([*recs, *again], OBJECTIVES, FLOOR, 9)}


@pytest.mark.skipif(not FMNIST.exists(), reason="needs dataset-fashion-mnist")
def test_finetuning_trains_a_copy_of_the_path() -> None:
    torch.manual_seed(0)
    space = get_space("shufflenet")
    data = load_dataset("fashion-mnist")
    train = data.train.subset(torch.arange(512))
    supernet = space.supernet()
    rng = np.random.default_rng(0)
    opt = supernet_optimizer(supernet, SupernetTrainConfig())
    train_epoch(space, supernet, iterate_batches(train, 64), opt, SupernetTrainConfig(), rng)
    before = {k: v.clone() for k, v in supernet.state_dict().items()}
    g = space.sample(rng)
    batches = iterate_batches(train, 64, shuffle=True, generator=torch.Generator().manual_seed(0))
    tuned = finetune_path(supernet, g, batches, steps=8, lr=0.02)
    after = supernet.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # shared weights untouched
    assert any(not torch.equal(before[k], v) for k, v in tuned.state_dict().items())
    supernet.eval()
    tuned.eval()
    plain = accuracy(lambda x: supernet(x, g), iterate_batches(train, 256))
    assert accuracy(lambda x: tuned(x, g), iterate_batches(train, 256)) > plain


def test_rescore_settings_are_checked() -> None:
    with pytest.raises(UserError, match="--rescore must"):
        resolve(SearchConfig(**{**TINY, "rescore": -1}))
    with pytest.raises(UserError, match="--rescore-steps"):
        resolve(SearchConfig(**{**TINY, "rescore": 2, "rescore_steps": 0}))
    with pytest.raises(UserError, match="--rescore-images must be >= 1, got 0"):
        resolve(SearchConfig(**{**TINY, "rescore": 2, "rescore_images": 0}))


def test_a_run_saved_before_rescore_images_resumes_as_it_ran() -> None:
    """Its config.json lacks the key; the quick preset's 20,000 must not fill it in."""
    saved = SearchConfig().to_dict()
    assert SearchConfig.from_dict(saved).rescore_images == 20000
    del saved["rescore_images"]
    assert SearchConfig.from_dict(saved).rescore_images is None


def test_rescoring_scores_on_val_then_images_the_search_left_out() -> None:
    # a pool whose image i is filled with the value i: where each image came from shows
    pool = TensorSplit(torch.arange(100.0).view(100, 1, 1, 1), torch.arange(100) % 10)
    train, val, spare = carve_splits(pool, 0.1, seed=3, limit_train=30, keep_spare=25)
    scorer = Scorer("shufflenet", get_space("shufflenet").spec, val, train, EvalSettings())
    as_before = scorer.finetuned(train, spare)  # finetune_val_size None: the generations'
    assert as_before.val is scorer.val and as_before.tune is train
    wide = replace(scorer, settings=EvalSettings(finetune_val_size=18)).finetuned(train, spare)
    seen = wide.val.take(torch.arange(len(wide.val)))[0].flatten().int().tolist()
    expect = [*val.take(torch.arange(10))[0].flatten().int().tolist(),
              *spare.take(torch.arange(8))[0].flatten().int().tolist()]  # fmt: skip
    assert seen == expect  # all of val, then the first spare images
    narrow = replace(scorer, settings=EvalSettings(finetune_val_size=4)).finetuned(train, spare)
    assert len(narrow.val) == 4  # fewer than val: its first images


@pytest.mark.skipif(not FMNIST.exists(), reason="needs dataset-fashion-mnist")
def test_rescored_run_and_ctrl_c_in_rescoring_resumes_to_the_same_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = {"samples_per_unit": 6, "warmup_epochs": 12}
    # scored on its 128 validation images and 64 training images the search left out
    config = SearchConfig(
        **{**TINY, "strategy": "random", "units": 1, "strategy_config": settings,
           "batch_size": 32, "rescore": 3, "rescore_steps": 20, "rescore_images": 192}
    )  # fmt: skip
    run_search(config, tmp_path / "reference", quiet=True)
    with RunStore(tmp_path / "reference") as store:
        recs = store.records()
    rescored = [r for r in recs if r.phase == RESCORE]
    assert len(rescored) == 3
    one_shot = {r.arch_id: r.value("accuracy") for r in recs if r.phase != RESCORE}
    assert {r.arch_id for r in rescored} <= set(one_shot)  # the pool's, none new
    doc = json.loads((tmp_path / "reference" / "pareto.json").read_text())
    front = pareto_front(recs, config.objectives, error=ScoreError(doc["rescore"]["images"]))
    assert front and {r.arch_id for r in front} <= {r.arch_id for r in rescored}
    assert {r.arch_id for r in pareto_front(recs, config.objectives)} <= {r.arch_id for r in front}
    assert {row["arch_id"] for row in doc["front"]} == {r.arch_id for r in front}
    # 20 steps asked, one pass over the 256 training images at batch 32 given
    assert doc["rescore"] == {
        "candidates": 3,
        "steps": 8,
        "images": 192,
        "lr": 0.05,
        "challenge": [],
        "challengers": 0,
    }
    assert rescore_steps(config, 256) == 8 and rescore_steps(config, 10_000) == 20
    assert doc["score_error"].endswith("n = 192 held-out images")
    assert (
        "on 192 held-out images after each was fine-tuned"
        in write_report(tmp_path / "reference").read_text()
    )

    assert_ctrl_c_in_phase_resumes(config, RESCORE, tmp_path, monkeypatch)
