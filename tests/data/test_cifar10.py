"""CIFAR-10 in torchvision's python layout, written for real with pickle.dump; hostile pickles."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from datafiles import CIFAR_NAMES, write_cifar

from factory.data import load_dataset
from factory.data.cifar10 import open_cifar10, safe_load
from targets.errors import UserError


@pytest.mark.parametrize("protocol", [2, pickle.DEFAULT_PROTOCOL, pickle.HIGHEST_PROTOCOL])
@pytest.mark.parametrize("str_keys", [False, True])
def test_layout_loads_with_pixels_in_place(tmp_path: Path, protocol: int, str_keys: bool) -> None:
    written = write_cifar(tmp_path / "cifar-10-batches-py", 4, protocol, str_keys)
    splits = load_dataset("cifar10", root=tmp_path, val_fraction=0.25, seed=3)
    info = splits.info
    assert info.input_shape == (3, 32, 32) and info.class_names == CIFAR_NAMES
    assert (info.train_size, info.val_size, info.test_size) == (15, 5, 4)
    assert info.input_spec().channels == 3 and len(info.mean) == len(info.std) == 3
    # un-normalise the test set and compare with the bytes written: rows are R, G, B planes
    mean, std = torch.tensor(info.mean).view(3, 1, 1), torch.tensor(info.std).view(3, 1, 1)
    x, y = splits.test.take(torch.arange(4))
    pixels = ((x * std + mean) * 255).round().to(torch.uint8).numpy()
    assert np.array_equal(pixels, written["test_batch"].reshape(4, 3, 32, 32))
    assert y.tolist() == [5, 6, 7, 8]  # the test batch is the sixth one written


def test_root_may_be_the_batches_folder_itself(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder, per_batch=2)
    assert load_dataset("cifar10", root=folder, val_fraction=0.0).info.train_size == 10


def test_normalised_with_training_pool_stats(tmp_path: Path) -> None:
    written = write_cifar(tmp_path / "cifar-10-batches-py", per_batch=6)
    source = open_cifar10([tmp_path / "cifar-10-batches-py"])
    pool = np.concatenate([written[f"data_batch_{i}"] for i in range(1, 6)]).reshape(-1, 3, 1024)
    expected = pool.transpose(1, 0, 2).reshape(3, -1) / 255.0
    assert np.allclose(source.mean, expected.mean(1), atol=1e-5)
    assert np.allclose(source.std, expected.std(1, ddof=1), atol=1e-5)
    per_channel = source.pool.images.transpose(0, 1).reshape(3, -1)
    assert torch.allclose(per_channel.mean(1), torch.zeros(3), atol=1e-4)


class _RunsShell:
    """What an attacker would put in a batch file: unpickling runs a shell command."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_pickle_calling_os_system_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder, per_batch=2)
    marker = tmp_path / "pwned"
    hostile = {b"data": _RunsShell(f"touch {marker}"), b"labels": [0, 1]}
    (folder / "data_batch_3").write_bytes(pickle.dumps(hostile, protocol=2))
    with pytest.raises(UserError, match=r"refusing to unpickle (posix|os|nt)\.system") as err:
        load_dataset("cifar10", root=tmp_path)
    assert "data_batch_3" in str(err.value) and "\n" not in str(err.value)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("payload", "name"), [((eval, ("1+1",)), "builtins.eval"), ((np.load, ("x.npy",)), "load")]
)
def test_any_other_global_is_refused(tmp_path: Path, payload: tuple, name: str) -> None:
    """Even numpy functions outside the array-rebuilding few are refused."""

    class Hostile:
        def __reduce__(self):
            return payload

    path = tmp_path / "batches.meta"
    path.write_bytes(pickle.dumps({"label_names": Hostile()}))
    with pytest.raises(UserError, match=rf"refusing to unpickle \S*{name}"):
        safe_load(path)


def test_damaged_and_wrong_files_are_user_errors(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder, per_batch=2)
    good = (folder / "test_batch").read_bytes()
    (folder / "test_batch").write_bytes(good[: len(good) // 2])
    with pytest.raises(UserError, match="test_batch"):
        open_cifar10([folder])
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": np.zeros((2, 10), np.uint8)}))
    with pytest.raises(UserError, match="test_batch"):
        open_cifar10([folder])
    bad_labels = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 12]}
    (folder / "test_batch").write_bytes(pickle.dumps(bad_labels))
    with pytest.raises(UserError, match=r"0\.\.9"):
        open_cifar10([folder])


def test_missing_data_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(UserError) as err:
        load_dataset("cifar10", root=tmp_path / "nowhere")
    assert "CIFAR-10 not found" in str(err.value) and "--download" in str(err.value)
    assert str(tmp_path / "nowhere") in str(err.value) and "\n" not in str(err.value)
