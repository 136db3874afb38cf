"""``build_model``: pinned parameter counts, shapes, output heads and ``probabilities``."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import pytest

from mnist_sweep.errors import ParamError
from mnist_sweep.model._build import build_model, one_hot_targets, probabilities
from mnist_sweep.model._data import Dataset
from mnist_sweep.model._params import conv_output_size
from mnist_sweep.model._presets import PRESETS

# Written out by hand (not read from the presets) so that a change to a preset or to the
# builder shows up here: Dense(512) on 784 inputs is 784*512 + 512 = 401,920, and so on.
PARAM_COUNTS = {
    "dense-512": 407_050,  # 784*512+512 + 512*10+10
    "cnn": 121_930,  # conv 320 + conv 18,496 + dense 1600*64+64 + 64*10+10
    "fashion-128": 101_770,  # 784*128+128 + 128*10+10
    "lecture-2layer": 648_010,  # 784*500+500 + 500*500+500 + 500*10+10
    "lecture-2layer-ce": 648_010,
    "lecture-10-sigmoid-mse": 3_153_010,  # ... + the 10 more 500x500 layers the lecture adds
    "lecture-10-sigmoid-ce": 3_153_010,
    "lecture-10-relu-ce": 3_153_010,
}


def test_every_preset_is_pinned() -> None:
    assert set(PARAM_COUNTS) == set(PRESETS)


@pytest.mark.parametrize("name", list(PARAM_COUNTS))
def test_preset_parameter_count(name: str) -> None:
    model = build_model(PRESETS[name].params)
    assert model.count_params() == PARAM_COUNTS[name]
    assert PRESETS[name].param_count == PARAM_COUNTS[name]
    assert model.input_shape == (None, 28, 28)
    assert model.output_shape == (None, 10)


def _layer(model: keras.Model, name: str) -> Any:
    return model.get_layer(name)


def test_cnn_feature_map_shapes() -> None:
    model = build_model(PRESETS["cnn"].params)
    assert _layer(model, "conv_1").output.shape == (None, 26, 26, 32)
    assert _layer(model, "pool_1").output.shape == (None, 13, 13, 32)
    assert _layer(model, "conv_2").output.shape == (None, 11, 11, 64)
    assert _layer(model, "pool_2").output.shape == (None, 5, 5, 64)
    assert _layer(model, "dense_1").units == 64


@pytest.mark.parametrize("blocks", [1, 2, 3])
@pytest.mark.parametrize("kernel", [1, 3, 5, 7])
def test_conv_geometry_matches_keras_or_is_refused(blocks: int, kernel: int) -> None:
    params = {"architecture": "conv", "conv_blocks": blocks, "kernel_size": kernel, "filters": 2, "width": 4}
    side = conv_output_size(blocks, kernel)
    if side == 0:
        with pytest.raises(ParamError, match="conv_blocks"):
            build_model(params)
        return
    model = build_model(params)
    assert _layer(model, f"pool_{blocks}").output.shape == (None, side, side, 2 * 2 ** (blocks - 1))


def test_per_layer_widths_and_dropout() -> None:
    model = build_model({"depth": 3, "width": 32, "width_2": 16, "dropout": 0.25, "activation": "tanh"})
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert [layer.units for layer in dense] == [32, 16, 32, 10]
    assert [layer.name for layer in dense] == ["dense_1", "dense_2", "dense_3", "output"]
    assert all(layer.activation is keras.activations.tanh for layer in dense[:-1])
    dropouts = [layer for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    assert [layer.rate for layer in dropouts] == [0.25, 0.25, 0.25]
    assert not any(isinstance(layer, keras.layers.Dropout) for layer in build_model({"depth": 3}).layers)


@pytest.mark.parametrize(
    ("params", "optimizer", "loss", "metric"),
    [
        ({}, keras.optimizers.RMSprop, keras.losses.SparseCategoricalCrossentropy, "SparseCategoricalAccuracy"),
        (
            {"optimizer": "adam", "loss": "categorical_crossentropy"},
            keras.optimizers.Adam,
            keras.losses.CategoricalCrossentropy,
            "CategoricalAccuracy",
        ),
        (
            {"optimizer": "sgd", "loss": "mse"},
            keras.optimizers.SGD,
            keras.losses.MeanSquaredError,
            "CategoricalAccuracy",
        ),
    ],
)
def test_compiled_with_the_requested_optimizer_loss_and_metric(
    params: dict[str, Any], optimizer: type, loss: type, metric: str
) -> None:
    model = build_model(params)
    assert isinstance(model.optimizer, optimizer)
    assert isinstance(model.loss, loss)
    assert one_hot_targets(params) is (loss is not keras.losses.SparseCategoricalCrossentropy)
    metrics = model.get_compile_config()["metrics"]
    assert [(m["class_name"], m["config"]["name"]) for m in metrics] == [(metric, "accuracy")]


def test_sgd_gets_its_momentum_and_learning_rate() -> None:
    model = build_model({"optimizer": "sgd", "momentum": 0.5, "learning_rate": 0.05})
    assert model.optimizer.momentum == 0.5
    assert float(model.optimizer.learning_rate) == pytest.approx(0.05)


def test_logits_head_has_no_softmax_and_its_loss_knows(tiny_mnist: Dataset) -> None:
    softmax = build_model({"output": "softmax", "width": 16})
    logits = build_model({"output": "logits", "width": 16})
    assert _layer(softmax, "output").activation is keras.activations.softmax
    assert _layer(logits, "output").activation is keras.activations.linear
    assert logits.loss.get_config()["from_logits"] is True
    assert softmax.loss.get_config()["from_logits"] is False
    images = tiny_mnist.x_test[:32]
    out_softmax = softmax.predict(images, verbose=0)
    out_logits = logits.predict(images, verbose=0)
    np.testing.assert_allclose(out_softmax.sum(axis=1), 1.0, atol=1e-5)
    assert (out_logits < 0).any() and not np.allclose(out_logits.sum(axis=1), 1.0, atol=1e-3)


@pytest.mark.parametrize("output", ["softmax", "logits"])
@pytest.mark.parametrize("architecture", ["dense", "conv"])
def test_probabilities_sum_to_one_for_both_heads(tiny_mnist: Dataset, output: str, architecture: str) -> None:
    model = build_model({"output": output, "architecture": architecture, "width": 16, "filters": 4})
    images = tiny_mnist.x_test
    probs = probabilities(model, images)
    assert probs.shape == (len(images), 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert (probs >= 0).all()
    raw = model.predict(images, verbose=0)
    expected = raw if output == "softmax" else keras.ops.convert_to_numpy(keras.ops.softmax(raw, axis=1))
    np.testing.assert_allclose(probs, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(probs.argmax(axis=1), raw.argmax(axis=1))


def test_build_is_a_pure_function_of_params() -> None:
    params = {"depth": 2, "width": 8}
    before = dict(params)
    first, second = build_model(params), build_model(params)
    assert params == before
    assert [layer.name for layer in first.layers] == [layer.name for layer in second.layers]
    assert first.count_params() == second.count_params() == 784 * 8 + 8 + 8 * 8 + 8 + 8 * 10 + 10


def test_invalid_params_are_refused_before_building() -> None:
    with pytest.raises(ParamError, match="'depth' = 0"):
        build_model({"depth": 0})
