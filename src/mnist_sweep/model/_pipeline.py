"""The ``data_pipeline: dataset`` lever: the splits as tensors once per process, fed by ``tf.data``.

``model.fit`` on NumPy arrays converts the arrays to a fresh ``tf.data`` pipeline on every call,
so every trial of a worker pays the conversion again, and batches are sliced on the critical
path. Here the training and validation splits become tensors once per process (per data set and
target kind) and every trial reads them through a shuffled, batched, prefetched pipeline: the
next batches are ready while the current step runs, on a GPU as on a CPU.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from mnist_sweep.model._data import Dataset

VALIDATION_BATCH = 1024
"""Validation only runs forward passes: a larger batch gives the same metrics in fewer steps."""

_KEPT = 2
"""How many (data set, target kind) tensor sets one process keeps: the newest, LRU."""


@dataclass(frozen=True)
class _Tensors:
    source: tuple[np.ndarray, np.ndarray]  # the arrays they were made from, kept alive: their ids are the key
    x_train: Any
    y_train: Any
    x_val: Any
    y_val: Any


_cache: OrderedDict[tuple[int, int, bool], _Tensors] = OrderedDict()


def tensors(dataset: Dataset, *, one_hot: bool) -> _Tensors:
    """The splits of ``dataset`` as tensors, made on the first call of this process and then reused."""
    key = (id(dataset.x_train), id(dataset.x_val), one_hot)
    kept = _cache.get(key)
    if kept is not None:  # the entry holds its arrays, so their ids cannot have been reused
        _cache.move_to_end(key)
        return kept
    with tf.device("/CPU:0"):  # tf.data runs on the host: keep its inputs there
        made = _Tensors(
            source=(dataset.x_train, dataset.x_val),
            x_train=tf.constant(dataset.x_train),
            y_train=tf.constant(targets(dataset.y_train, one_hot=one_hot)),
            x_val=tf.constant(dataset.x_val),
            y_val=tf.constant(targets(dataset.y_val, one_hot=one_hot)),
        )
    _cache[key] = made
    while len(_cache) > _KEPT:
        _cache.popitem(last=False)
    return made


def training_batches(dataset: Dataset, *, one_hot: bool, batch_size: int, seed: int) -> tf.data.Dataset:
    """Shuffled (anew each epoch, from ``seed``) batches of the training split, prefetched.

    The whole split is shuffled, as ``fit(shuffle=True)`` does for arrays: the pipeline
    shuffles indices and gathers each batch from the cached tensors.
    """
    t = tensors(dataset, one_hot=one_hot)
    n = int(t.x_train.shape[0])
    x, y = t.x_train, t.y_train
    return (
        tf.data.Dataset.range(n)
        .shuffle(n, seed=seed, reshuffle_each_iteration=True)
        .batch(batch_size)
        .map(lambda i: (tf.gather(x, i), tf.gather(y, i)), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .prefetch(tf.data.AUTOTUNE)
    )


def validation_batches(dataset: Dataset, *, one_hot: bool) -> tf.data.Dataset:
    """The validation split in order, in batches of :data:`VALIDATION_BATCH`, prefetched."""
    t = tensors(dataset, one_hot=one_hot)
    return tf.data.Dataset.from_tensor_slices((t.x_val, t.y_val)).batch(VALIDATION_BATCH).prefetch(tf.data.AUTOTUNE)


def clear() -> None:
    """Forget every cached tensor set (for tests)."""
    _cache.clear()


def targets(labels: np.ndarray, *, one_hot: bool) -> np.ndarray:
    """``labels`` as the loss wants them: one-hot float32 rows, or as they are."""
    return np.eye(10, dtype=np.float32)[labels] if one_hot else labels
