"""The design axes of issue 13: batch norm, schedules, weight decay, augmentation, label smoothing, pooling.

Each axis defaults to the model as it was before it existed, is logged as a param, and is
refused with a one-line message when its value is bad.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import pytest

from mnist_sweep.errors import ParamError
from mnist_sweep.model._build import build_model, one_hot_targets
from mnist_sweep.model._data import Dataset
from mnist_sweep.model._params import PARAMS, Params, check_value, model_summary, resolve_params
from mnist_sweep.model._schedules import LinearWarmup, schedule_callbacks, steps_per_epoch
from mnist_sweep.model._training import choose_levers, train

AXES = {
    "batch_norm": False,
    "pooling": "flatten",
    "lr_schedule": "constant",
    "warmup_epochs": 0,
    "weight_decay": 0.0,
    "augment": "none",
    "label_smoothing": 0.0,
}
SMALL_CONV = {"architecture": "conv", "filters": 4, "width": 8}


def _layer_types(model: keras.Model) -> list[str]:
    return [type(layer).__name__ for layer in model.layers]


def _lr(model: keras.Model, step: int) -> float:
    rate = model.optimizer._learning_rate  # the schedule itself; .learning_rate is its current value
    return float(keras.ops.convert_to_numpy(rate(step))) if callable(rate) else float(rate)


# --------------------------------------------------------------------------- defaults


def test_defaults_are_the_models_of_before() -> None:
    assert {name: PARAMS[name].default for name in AXES} == AXES
    dense = build_model({})
    assert _layer_types(dense) == ["InputLayer", "Flatten", "Dense", "Dense"]
    conv = build_model({"architecture": "conv"})
    assert _layer_types(conv) == ["InputLayer", "Reshape", *["Conv2D", "MaxPooling2D"] * 2, "Flatten", "Dense", "Dense"]
    assert type(dense.optimizer) is keras.optimizers.RMSprop and dense.optimizer.weight_decay is None
    assert isinstance(dense.optimizer._learning_rate, keras.Variable), "a plain learning rate, no schedule"
    assert type(build_model({"optimizer": "adam"}).optimizer) is keras.optimizers.Adam
    assert isinstance(dense.loss, keras.losses.SparseCategoricalCrossentropy)
    assert schedule_callbacks(resolve_params({})) == []


def test_every_axis_is_logged_and_pooling_only_for_conv() -> None:
    dense = Params.resolve({}).logged()
    assert {k: dense[k] for k in AXES if k != "pooling"} == {k: v for k, v in AXES.items() if k != "pooling"}
    assert "pooling" not in dense
    assert Params.resolve({"architecture": "conv", "pooling": "global_avg"}).logged()["pooling"] == "global_avg"


# --------------------------------------------------------------------------- batch norm, pooling, conv blocks


def test_batch_norm_sits_between_each_bias_free_layer_and_its_activation() -> None:
    model = build_model({**SMALL_CONV, "batch_norm": True, "activation": "tanh"})
    names = [layer.name for layer in model.layers]
    for layer in ("conv_1", "conv_2", "dense_1"):
        at = names.index(layer)
        assert names[at : at + 3] == [layer, f"{layer}_bn", f"{layer}_act"]
        assert model.get_layer(layer).use_bias is False
        assert model.get_layer(f"{layer}_act").activation is keras.activations.tanh
    assert "output_bn" not in names
    # conv 1*9*4 + bn 4*4, conv 4*9*8 + bn 8*4, dense 200*8 + bn 8*4, output 8*10+10
    assert model.count_params() == 36 + 16 + 288 + 32 + 1600 + 32 + 90
    dense = build_model({"batch_norm": True, "width": 8, "depth": 2})
    assert _layer_types(dense).count("BatchNormalization") == 2
    assert dense.count_params() == 784 * 8 + 32 + 8 * 8 + 32 + 90


def test_global_average_pooling_replaces_the_flatten() -> None:
    model = build_model({**SMALL_CONV, "conv_blocks": 3, "pooling": "global_avg"})
    assert "flatten" not in [layer.name for layer in model.layers]
    assert model.get_layer("global_pool").output.shape == (None, 16)
    assert model.get_layer("dense_1").input.shape == (None, 16)
    assert model.get_layer("pool_3").output.shape == (None, 1, 1, 16)
    # a dense model has no feature map to pool: the param is not logged and changes nothing
    assert build_model({"pooling": "global_avg"}).count_params() == build_model({}).count_params()


def test_stacked_convs_keep_the_side_and_default_to_one_conv_per_block() -> None:
    model = build_model({**SMALL_CONV, "convs_per_block": 2, "batch_norm": True})
    names = [layer.name for layer in model.layers]
    assert names.index("conv_1") < names.index("conv_1_2") < names.index("pool_1") < names.index("conv_2_2")
    # the block's first conv shrinks 28 -> 26 ('valid', as before); the stacked one keeps 26
    assert model.get_layer("conv_1").output.shape == (None, 26, 26, 4)
    assert model.get_layer("conv_1_2").output.shape == (None, 26, 26, 4)
    assert model.get_layer("conv_2_2").output.shape == model.get_layer("conv_2").output.shape == (None, 11, 11, 8)
    assert model.get_layer("conv_1_2_bn") is not None and model.get_layer("conv_1_2").use_bias is False
    # one block more of each: conv 4*9*4 + bn 4*4 (block 1), conv 8*9*8 + bn 8*4 (block 2)
    single = build_model({**SMALL_CONV, "batch_norm": True})
    assert model.count_params() - single.count_params() == 144 + 16 + 576 + 32
    assert [layer.name for layer in single.layers if layer.name.startswith("conv_")] == [
        "conv_1", "conv_1_bn", "conv_1_act", "conv_2", "conv_2_bn", "conv_2_act"
    ]  # fmt: skip
    assert Params.resolve({"architecture": "conv", "convs_per_block": 2}).logged()["convs_per_block"] == 2
    assert "convs_per_block" not in Params.resolve({}).logged()  # dense: not logged
    assert "2x32 filters" in model_summary({"architecture": "conv", "convs_per_block": 2})
    with pytest.raises(ParamError, match="1 <= convs_per_block <= 3"):
        build_model({**SMALL_CONV, "convs_per_block": 4})


def test_three_conv_blocks_are_the_most() -> None:
    assert PARAMS["conv_blocks"].high == 3
    assert build_model({**SMALL_CONV, "conv_blocks": 3}).get_layer("conv_3").filters == 16
    with pytest.raises(ParamError, match="1 <= conv_blocks <= 3"):
        build_model({**SMALL_CONV, "conv_blocks": 4})


# --------------------------------------------------------------------------- schedules


def test_steps_per_epoch_default_to_the_full_split() -> None:
    assert steps_per_epoch({"batch_size": 128}, None) == 391  # ceil(50,000 / 128)
    assert steps_per_epoch({"batch_size": 100}, 300) == 3


def test_constant_with_warm_up_rises_linearly_then_holds() -> None:
    model = build_model({"learning_rate": 0.01, "warmup_epochs": 2, "epochs": 4, "batch_size": 100}, train_size=1000)
    assert [_lr(model, s) for s in (0, 10, 20, 30, 40)] == pytest.approx([0.0, 0.005, 0.01, 0.01, 0.01])


def test_cosine_decays_to_zero_over_the_epochs_after_the_warm_up() -> None:
    plain = build_model(
        {"lr_schedule": "cosine", "learning_rate": 0.01, "epochs": 4, "batch_size": 100}, train_size=1000
    )
    assert [_lr(plain, s) for s in (0, 20, 40, 80)] == pytest.approx([0.01, 0.005, 0.0, 0.0], abs=1e-7)
    warm = build_model(
        {"lr_schedule": "cosine", "learning_rate": 0.01, "warmup_epochs": 1, "epochs": 3, "batch_size": 100},
        train_size=1000,
    )
    assert [_lr(warm, s) for s in (0, 5, 10, 20, 30)] == pytest.approx([0.0, 0.005, 0.01, 0.005, 0.0], abs=1e-7)


def test_one_cycle_rises_from_a_25th_for_30_percent_then_anneals() -> None:
    model = build_model(
        {"lr_schedule": "one_cycle", "learning_rate": 0.01, "epochs": 10, "batch_size": 100}, train_size=1000
    )
    # 100 steps: rises over 30, peaks, then cosine down to lr / 250,000
    assert _lr(model, 0) == pytest.approx(0.0004)
    assert _lr(model, 30) == pytest.approx(0.01)
    assert _lr(model, 65) == pytest.approx(0.005, rel=1e-3)
    assert _lr(model, 100) == pytest.approx(0.01 / 250_000)
    warm = build_model(
        {"lr_schedule": "one_cycle", "learning_rate": 0.01, "warmup_epochs": 1, "epochs": 10, "batch_size": 100},
        train_size=1000,
    )
    assert _lr(warm, 10) == pytest.approx(0.01), "warmup_epochs sets the rise"


def test_plateau_keeps_a_plain_rate_and_adds_its_callbacks() -> None:
    params = {"lr_schedule": "plateau", "learning_rate": 0.02, "warmup_epochs": 1, "epochs": 3}
    model = build_model(params)
    assert isinstance(model.optimizer._learning_rate, keras.Variable)
    callbacks = schedule_callbacks(resolve_params(params), train_size=1000)
    assert [type(c).__name__ for c in callbacks] == ["LinearWarmup", "KeptPlateau"]
    warmup, plateau = callbacks
    assert isinstance(warmup, LinearWarmup) and warmup.steps == 8  # ceil(1000 / 128)
    assert isinstance(plateau, keras.callbacks.ReduceLROnPlateau)
    assert plateau.monitor == "val_loss" and plateau.min_lr == pytest.approx(0.0002)
    assert [type(c).__name__ for c in schedule_callbacks(resolve_params({**params, "warmup_epochs": 0}))] == [
        "KeptPlateau"
    ]


class _RateAtEpochEnd(keras.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.rates: list[float] = []

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        self.rates.append(float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))


def test_training_follows_the_schedule(tiny_mnist: Dataset) -> None:
    seen = _RateAtEpochEnd()
    cosine = train(
        {"lr_schedule": "cosine", "learning_rate": 0.01, "width": 16, "epochs": 2}, tiny_mnist, callbacks=[seen]
    )
    assert cosine.ok
    # 300 images at batch 128: 3 steps an epoch, 6 in all; the rate read after epoch 1 is step 3's
    assert seen.rates == pytest.approx([0.005, 0.0], abs=1e-7)


def test_training_warms_up_then_plateau_halves_the_rate(tiny_mnist: Dataset) -> None:
    """An lr so small that val_loss cannot improve by ReduceLROnPlateau's min_delta: cut after 2 epochs."""
    seen = _RateAtEpochEnd()
    params = {
        "lr_schedule": "plateau",
        "warmup_epochs": 1,
        "optimizer": "sgd",
        "momentum": 0.0,
        "learning_rate": 1.0e-6,
        "width": 16,
        "epochs": 4,
    }
    assert train(params, tiny_mnist, callbacks=[seen]).ok
    # warm-up over 3 steps, set once per compiled execution (dense on CPU: 32 steps, so one per
    # epoch here): 1/3 of the rate, then all of it; then plateau: no gain in epochs 2 and 3 ->
    # halved at the end of epoch 3
    assert seen.rates == pytest.approx([1e-6 / 3, 1e-6, 0.5e-6, 0.5e-6], rel=1e-5)


# --------------------------------------------------------------------------- weight decay


@pytest.mark.parametrize(
    ("optimizer", "cls"),
    [("adam", keras.optimizers.AdamW), ("sgd", keras.optimizers.SGD), ("rmsprop", keras.optimizers.RMSprop)],
)
def test_weight_decay_is_decoupled_and_spares_biases_and_norms(optimizer: str, cls: type) -> None:
    model = build_model({"optimizer": optimizer, "weight_decay": 0.01, "batch_norm": True, "width": 8})
    assert type(model.optimizer) is cls
    assert model.optimizer.weight_decay == pytest.approx(0.01)
    decayed = {v.name for v in model.trainable_variables if model.optimizer._use_weight_decay(v)}
    assert decayed == {"kernel"}, "biases and batch-norm scales and offsets are not decayed"
    assert {"bias", "gamma", "beta"} <= {v.name for v in model.trainable_variables}


# --------------------------------------------------------------------------- augmentation


@pytest.mark.parametrize(
    ("architecture", "level", "layers"),
    [
        ("dense", "strong", ["augment_shift", "augment_rotate", "augment_zoom"]),
        ("conv", "strong", ["augment_shift", "augment_rotate", "augment_zoom"]),
        ("conv", "flip", ["augment_flip", "augment_shift"]),
    ],
)
def test_augmentation_acts_in_training_only(
    tiny_mnist: Dataset, architecture: str, level: str, layers: list[str]
) -> None:
    model = build_model({**SMALL_CONV, "architecture": architecture, "augment": level})
    assert [layer.name for layer in model.layers if layer.name.startswith("augment_")] == layers
    if level == "flip":
        assert model.get_layer("augment_flip").mode == "horizontal"  # left-right only: never upside down
    images = tiny_mnist.x_test
    first = model.predict(images, verbose=0)
    second = model.predict(images, verbose=0)
    np.testing.assert_array_equal(first, second)
    np.testing.assert_allclose(first, keras.ops.convert_to_numpy(model(images, training=False)), atol=1e-6)
    training = keras.ops.convert_to_numpy(model(images, training=True))
    assert not np.allclose(training, first, atol=1e-4), "augmentation is not doing anything in training"


def test_augmentation_adds_no_weights_and_is_the_plain_model_at_inference(tiny_mnist: Dataset) -> None:
    plain = build_model({**SMALL_CONV, "batch_norm": True})
    augmented = build_model({**SMALL_CONV, "batch_norm": True, "augment": "light"})
    assert augmented.count_params() == plain.count_params()
    augmented.set_weights(plain.get_weights())
    np.testing.assert_allclose(
        augmented.predict(tiny_mnist.x_test, verbose=0), plain.predict(tiny_mnist.x_test, verbose=0), atol=1e-6
    )


def test_trained_augmented_model_gives_identical_test_predictions_twice(tiny_mnist: Dataset) -> None:
    result = train({**SMALL_CONV, "augment": "light", "batch_norm": True, "epochs": 1}, tiny_mnist)
    assert result.ok and result.model is not None and result.test_probabilities is not None
    again = result.model.predict(tiny_mnist.x_test, verbose=0)
    np.testing.assert_array_equal(again, result.model.predict(tiny_mnist.x_test, verbose=0))
    np.testing.assert_allclose(again, result.test_probabilities, atol=1e-6)


def test_augmentation_turns_the_auto_xla_lever_off() -> None:
    assert choose_levers({"augment": "none"}, gpu=True).jit_compile is True
    assert choose_levers({"augment": "light"}, gpu=True).jit_compile is False


# --------------------------------------------------------------------------- label smoothing


@pytest.mark.parametrize("loss", ["sparse_categorical_crossentropy", "categorical_crossentropy"])
def test_label_smoothing_trains_on_one_hot_targets(loss: str) -> None:
    params = {"loss": loss, "label_smoothing": 0.1, "width": 8}
    model = build_model(params)
    assert isinstance(model.loss, keras.losses.CategoricalCrossentropy)
    assert model.loss.label_smoothing == pytest.approx(0.1)
    assert one_hot_targets(params) is True
    metrics = model.get_compile_config()["metrics"]
    assert [m["class_name"] for m in metrics] == ["CategoricalAccuracy"]
    assert one_hot_targets({"label_smoothing": 0.0}) is False


def test_label_smoothing_moves_the_targets_off_one_and_zero(tiny_mnist: Dataset) -> None:
    labels = keras.ops.one_hot(np.array([0, 3]), 10)
    sure = keras.ops.clip(labels, 1e-7, 1.0)
    assert float(build_model({"loss": "categorical_crossentropy"}).loss(labels, sure)) == pytest.approx(0.0, abs=1e-5)
    smoothed = float(build_model({"label_smoothing": 0.2}).loss(labels, sure))
    assert smoothed > 1.0, "a certain prediction is penalised once the targets are smoothed"
    result = train({"label_smoothing": 0.2, "epochs": 2}, tiny_mnist)
    assert result.ok and result.test_accuracy is not None and result.test_accuracy > 0.5


# --------------------------------------------------------------------------- everything at once, and summaries


def test_all_axes_together_train(tiny_mnist: Dataset) -> None:
    params = {
        **SMALL_CONV,
        "conv_blocks": 3,
        "pooling": "global_avg",
        "batch_norm": True,
        "augment": "light",
        "lr_schedule": "one_cycle",
        "warmup_epochs": 1,
        "weight_decay": 0.01,
        "label_smoothing": 0.1,
        "optimizer": "adam",
        "epochs": 2,
    }
    result = train(params, tiny_mnist)
    assert result.ok and result.epochs_trained == 2
    assert model_summary(params) == (
        "conv 3 blocks (4 filters, 3x3) + dense 1x8 relu, sparse_categorical_crossentropy, adam lr=0.001"
        " one_cycle warmup=1 wd=0.01, batch norm, global_avg pooling, light augmentation, label smoothing 0.1"
    )


# --------------------------------------------------------------------------- bad values


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("batch_norm", "yes", "must be true or false"),
        ("batch_norm", 1, "must be true or false"),
        ("lr_schedule", "step", "choose one of constant, cosine, one_cycle, plateau"),
        ("warmup_epochs", -1, "0 <= warmup_epochs <= 10000"),
        ("warmup_epochs", 1.5, "must be an integer"),
        ("weight_decay", 1.0, "0 <= weight_decay < 1"),
        ("weight_decay", -0.01, "0 <= weight_decay < 1"),
        ("augment", "heavy", "choose one of none, light, strong, flip"),
        ("augment", True, "choose one of none, light, strong, flip"),
        ("label_smoothing", 1.0, "0 <= label_smoothing < 1"),
        ("label_smoothing", "0.1x", "must be a number"),
        ("pooling", "max", "choose one of flatten, global_avg"),
    ],
)
def test_bad_values_are_refused_in_one_line(name: str, value: Any, fragment: str) -> None:
    with pytest.raises(ParamError) as info:
        check_value(name, value)
    message = str(info.value)
    assert repr(name) in message and fragment in message and "\n" not in message


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"label_smoothing": 0.1, "loss": "mse"}, "'label_smoothing' = 0.1 needs a cross-entropy loss, not 'mse'"),
        ({"warmup_epochs": 5, "epochs": 5}, "'warmup_epochs' = 5 must be below 'epochs' = 5"),
        ({"warmup_epochs": 6}, "'warmup_epochs' = 6 must be below 'epochs' = 5"),
    ],
)
def test_bad_pairings_are_refused_before_building(params: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ParamError, match=fragment):
        build_model(params)


def test_a_model_with_every_axis_saves_and_loads_without_custom_objects(tiny_mnist: Dataset, tmp_path: Any) -> None:
    """What a trial logs must load for serving: the schedule, AdamW and the augmentation layers are Keras's own."""
    params = {
        **SMALL_CONV,
        "batch_norm": True,
        "augment": "strong",
        "lr_schedule": "cosine",
        "warmup_epochs": 1,
        "weight_decay": 0.01,
        "label_smoothing": 0.1,
        "optimizer": "adam",
        "epochs": 2,
    }
    model = build_model(params, train_size=300)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded.optimizer) is keras.optimizers.AdamW
    assert isinstance(loaded.optimizer._learning_rate, keras.optimizers.schedules.CosineDecay)
    np.testing.assert_allclose(
        loaded.predict(tiny_mnist.x_test, verbose=0), model.predict(tiny_mnist.x_test, verbose=0), atol=1e-6
    )
