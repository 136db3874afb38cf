"""A trial's data as MLflow datasets: one input per split, so the UI's Dataset column and filter work.

MLflow merges inputs that share a name and a digest, and stores at most 36 characters of
digest, so each split gets a prefix of its own SHA-256 (the full hash goes in the input's tags).
The hashes cost a pass over the arrays: they are computed once per data set and process.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mnist_sweep.contract import (
    INPUT_CONTEXT,
    INPUT_IMAGES,
    INPUT_SHA256,
    INPUT_SOURCE_SHA256,
    SPLIT_TEST,
    SPLIT_TRAIN,
    SPLIT_VALIDATION,
    TAG_LIMIT,
    TAG_TRAIN_LIMIT,
)

if TYPE_CHECKING:
    import numpy as np
    from mlflow.entities import DatasetInput

    from mnist_sweep import model

DIGEST_LENGTH = 16
"""Hex digits of a split's SHA-256 kept as its MLflow digest (MLflow allows 36)."""
KERAS_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
KERAS_FILES = {"mnist": "mnist.npz", "fashion_mnist": ""}  # Fashion-MNIST is four files in that folder


@dataclass(frozen=True)
class SplitInput:
    """One split as logged: the MLflow input and the name and digest that metrics link to."""

    split: str
    name: str
    digest: str
    entity: DatasetInput


_CACHE: dict[int, tuple[model.Dataset, dict[str, SplitInput]]] = {}


def split_sha256(images: np.ndarray, labels: np.ndarray) -> str:
    """SHA-256 of a split's images then labels, exactly as trained on."""
    import numpy as np

    digest = hashlib.sha256(np.ascontiguousarray(images).data)
    digest.update(np.ascontiguousarray(labels).data)
    return digest.hexdigest()


def dataset_source(dataset: model.Dataset) -> str:
    """Where the images came from: the IDX folder, or the URL Keras's downloader reads."""
    if dataset.source.startswith("keras.datasets."):
        return KERAS_URL + KERAS_FILES.get(dataset.name, "")
    return dataset.source


def split_inputs(dataset: model.Dataset) -> dict[str, SplitInput]:
    """``{train, validation, test}`` of ``dataset`` as MLflow dataset inputs (cached per data set)."""
    cached = _CACHE.get(id(dataset))
    if cached is not None and cached[0] is dataset:
        return cached[1]
    from mlflow.data.numpy_dataset import from_numpy
    from mlflow.entities import Dataset, DatasetInput, InputTag

    source = dataset_source(dataset)
    cut = {TAG_LIMIT: dataset.limit, TAG_TRAIN_LIMIT: dataset.train_limit}
    splits = {
        SPLIT_TRAIN: (dataset.x_train, dataset.y_train),
        SPLIT_VALIDATION: (dataset.x_val, dataset.y_val),
        SPLIT_TEST: (dataset.x_test, dataset.y_test),
    }
    inputs = {}
    for split, (images, labels) in splits.items():
        sha = split_sha256(images, labels)
        digest = sha[:DIGEST_LENGTH]
        with warnings.catch_warnings():
            # MLflow registers its local-file source class twice and warns that a path is ambiguous.
            warnings.filterwarnings("ignore", "The specified dataset source can be interpreted", UserWarning)
            described = from_numpy(images, targets=labels, source=source, name=dataset.name, digest=digest)
        entity = Dataset(**described.to_dict())
        tags = {
            INPUT_CONTEXT: split,
            INPUT_SHA256: sha,
            INPUT_IMAGES: len(images),
            INPUT_SOURCE_SHA256: dataset.sha256,
            **{key: value for key, value in cut.items() if value is not None},
        }
        entity_input = DatasetInput(entity, tags=[InputTag(key, str(value)) for key, value in tags.items()])
        inputs[split] = SplitInput(split=split, name=dataset.name, digest=digest, entity=entity_input)
    _CACHE[id(dataset)] = (dataset, inputs)
    return inputs
