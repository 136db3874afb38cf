"""Presets that reproduce the five beginner tutorials this project grew out of."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mnist_sweep.errors import ParamError


@dataclass(frozen=True)
class Preset:
    """A tutorial's model and training setup, with the result the tutorial reports."""

    name: str
    dataset: str
    params: Mapping[str, Any]
    reference: str
    source: str
    param_count: int
    limit: int | None = None
    notes: str = ""
    tags: tuple[str, ...] = field(default_factory=tuple)


_LECTURE = {
    "architecture": "dense",
    "width": 500,
    "optimizer": "adam",
    "output": "softmax",
    "batch_size": 100,
    "epochs": 20,
}
_LECTURE_SOURCE = "lecture 'Keras demo' (Dense(500) layers, adam, batch 100, 20 epochs, 10,000 training images)"

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            name="dense-512",
            dataset="mnist",
            params={
                "architecture": "dense",
                "depth": 1,
                "width": 512,
                "activation": "relu",
                "loss": "sparse_categorical_crossentropy",
                "output": "softmax",
                "optimizer": "rmsprop",
                "learning_rate": 0.001,
                "epochs": 5,
                "batch_size": 128,
            },
            reference="test accuracy 0.9804, train accuracy 0.989 after 5 epochs",
            source="Keras 'first look at a neural network' (Dense(512, relu) + softmax, rmsprop)",
            param_count=407_050,
        ),
        Preset(
            name="cnn",
            dataset="mnist",
            params={
                "architecture": "conv",
                "conv_blocks": 2,
                "filters": 32,
                "kernel_size": 3,
                "depth": 1,
                "width": 64,
                "activation": "relu",
                "loss": "sparse_categorical_crossentropy",
                "output": "logits",
                "optimizer": "adam",
                "learning_rate": 0.001,
                "epochs": 10,
                "batch_size": 32,
            },
            reference="validation accuracy 0.9912; 121,930 parameters",
            source="TensorFlow CNN tutorial (Conv32-Pool-Conv64-Pool-Dense64, logits, adam)",
            param_count=121_930,
        ),
        Preset(
            name="fashion-128",
            dataset="fashion_mnist",
            params={
                "architecture": "dense",
                "depth": 1,
                "width": 128,
                "activation": "relu",
                "loss": "sparse_categorical_crossentropy",
                "output": "softmax",
                "optimizer": "adam",
                "learning_rate": 0.001,
                "epochs": 10,
                "batch_size": 32,
            },
            reference="test accuracy 0.88, train accuracy about 0.91",
            source="TensorFlow basic classification tutorial (Fashion-MNIST, Dense(128, relu))",
            param_count=101_770,
        ),
        Preset(
            name="lecture-2layer",
            dataset="mnist",
            params={**_LECTURE, "depth": 2, "activation": "sigmoid", "loss": "mse"},
            reference="the lecture's starting network (2 x Dense(500) sigmoid, MSE); no figure reported",
            source=_LECTURE_SOURCE,
            param_count=648_010,
            limit=10_000,
        ),
        Preset(
            name="lecture-10-sigmoid-mse",
            dataset="mnist",
            params={**_LECTURE, "depth": 10, "activation": "sigmoid", "loss": "mse"},
            reference="accuracy stays near 0.11 (chance): deep sigmoid + MSE does not train",
            source=_LECTURE_SOURCE,
            param_count=2_652_010,
            limit=10_000,
        ),
        Preset(
            name="lecture-10-sigmoid-ce",
            dataset="mnist",
            params={**_LECTURE, "depth": 10, "activation": "sigmoid", "loss": "categorical_crossentropy"},
            reference="better than MSE: cross-entropy lets the deep sigmoid network learn",
            source=_LECTURE_SOURCE,
            param_count=2_652_010,
            limit=10_000,
        ),
        Preset(
            name="lecture-10-relu-ce",
            dataset="mnist",
            params={**_LECTURE, "depth": 10, "activation": "relu", "loss": "categorical_crossentropy"},
            reference="train accuracy near 1.00, test accuracy 0.9545",
            source=_LECTURE_SOURCE,
            param_count=2_652_010,
            limit=10_000,
        ),
    )
}


def get_preset(name: str) -> Preset:
    """The preset called ``name``; a :class:`ParamError` lists the known ones otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ParamError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}") from None
