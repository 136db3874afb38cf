"""The ``data_pipeline: dataset`` lever: tensors made once per process, a full reshuffle per epoch."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from mnist_sweep.model import _pipeline
from mnist_sweep.model._data import Dataset, load_dataset
from mnist_sweep.model._repeats import train_seeds
from mnist_sweep.model._training import train


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    _pipeline.clear()
    yield
    _pipeline.clear()


def test_training_batches_reshuffle_the_whole_split_every_epoch_from_the_seed(tiny_mnist: Dataset) -> None:
    n = len(tiny_mnist.x_train)
    batches = _pipeline.training_batches(tiny_mnist, one_hot=False, batch_size=64, seed=3)
    epochs = []
    for _ in range(2):  # Keras iterates the same dataset once per epoch
        images = [np.asarray(x) for x, _ in batches]
        assert [len(b) for b in images] == [64] * (n // 64) + ([n % 64] if n % 64 else [])
        stacked = np.concatenate(images)
        # every training image exactly once (rows are distinct images: compare their bytes)
        assert sorted(row.tobytes() for row in stacked) == sorted(row.tobytes() for row in tiny_mnist.x_train)
        epochs.append(stacked)
    assert not np.array_equal(epochs[0], epochs[1]), "the same order two epochs running"
    again = np.concatenate(
        [np.asarray(x) for x, _ in _pipeline.training_batches(tiny_mnist, one_hot=False, batch_size=64, seed=3)]
    )
    other = np.concatenate(
        [np.asarray(x) for x, _ in _pipeline.training_batches(tiny_mnist, one_hot=False, batch_size=64, seed=4)]
    )
    np.testing.assert_array_equal(again, epochs[0])
    assert not np.array_equal(other, epochs[0])


def test_images_and_labels_stay_paired_and_one_hot_targets_are_rows(tiny_mnist: Dataset) -> None:
    label_of = {row.tobytes(): int(y) for row, y in zip(tiny_mnist.x_train, tiny_mnist.y_train, strict=True)}
    for one_hot in (False, True):
        for x, y in _pipeline.training_batches(tiny_mnist, one_hot=one_hot, batch_size=50, seed=0):
            labels = np.argmax(np.asarray(y), axis=1) if one_hot else np.asarray(y)
            if one_hot:
                assert np.asarray(y).shape[1] == 10 and np.allclose(np.asarray(y).sum(axis=1), 1.0)
            assert [label_of[row.tobytes()] for row in np.asarray(x)] == labels.tolist()
    validation = _pipeline.validation_batches(tiny_mnist, one_hot=False)
    np.testing.assert_array_equal(np.concatenate([np.asarray(x) for x, _ in validation]), tiny_mnist.x_val)
    np.testing.assert_array_equal(np.concatenate([np.asarray(y) for _, y in validation]), tiny_mnist.y_val)


def test_the_tensors_are_made_once_per_data_set_and_only_the_newest_are_kept(data_dir: object) -> None:
    first = load_dataset("mnist", data_dir=data_dir, limit=100)  # type: ignore[arg-type]
    made = _pipeline.tensors(first, one_hot=False)
    assert _pipeline.tensors(first, one_hot=False) is made
    assert _pipeline.tensors(first, one_hot=True) is not made  # other targets: other tensors
    others = [load_dataset("mnist", data_dir=data_dir, limit=100) for _ in range(2)]  # type: ignore[arg-type]
    for dataset in others:
        _pipeline.tensors(dataset, one_hot=False)
    assert _pipeline.tensors(first, one_hot=False) is not made, "an old entry kept beyond the bound"


def test_training_on_the_pipeline_learns_like_training_on_arrays_and_reuses_its_tensors(tiny_mnist: Dataset) -> None:
    params = {"width": 64, "epochs": 3, "batch_size": 32}
    on_arrays = train({**params, "data_pipeline": "arrays"}, tiny_mnist, seed=0)
    on_pipeline = train({**params, "data_pipeline": "dataset"}, tiny_mnist, seed=0)
    made = _pipeline.tensors(tiny_mnist, one_hot=False)
    again = train({**params, "data_pipeline": "dataset", "loss": "mse"}, tiny_mnist, seed=1)  # one-hot targets
    assert _pipeline.tensors(tiny_mnist, one_hot=False) is made
    for result in (on_arrays, on_pipeline, again):
        assert result.ok and len(result.history) == 3 and all(h["seconds"] > 0 for h in result.history)
    assert on_arrays.levers is not None and on_arrays.levers.data_pipeline == "arrays"
    assert on_pipeline.levers is not None and on_pipeline.levers.data_pipeline == "dataset"
    # Other shuffles, same model and data: both learn (300 images, 3 epochs), within a few points.
    assert on_arrays.test_accuracy is not None and on_pipeline.test_accuracy is not None
    assert on_pipeline.test_accuracy > 0.6 and on_arrays.test_accuracy > 0.6
    assert abs(on_pipeline.test_accuracy - on_arrays.test_accuracy) < 0.1
    assert on_pipeline.history[-1]["val_accuracy"] > on_pipeline.history[0]["val_accuracy"]


def test_repeated_seeds_train_on_the_pipeline(tiny_mnist: Dataset) -> None:
    results = train_seeds({"width": 32, "epochs": 2, "data_pipeline": "dataset"}, tiny_mnist, seeds=[0, 1])
    assert all(r.ok and len(r.history) == 2 for r in results)
    assert results[0].history[-1]["loss"] != results[1].history[-1]["loss"]
