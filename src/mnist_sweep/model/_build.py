"""``build_model(params)``: a Keras model as a pure function of a plain parameter dict.

Building stays apart from training (as keras-tuner's ``HyperModel.build``), so the best trial
of a study can be rebuilt from its ``params`` alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import keras

from mnist_sweep.model._params import Params, resolved

if TYPE_CHECKING:
    from mnist_sweep.model._training import Levers

INPUT_SHAPE = (28, 28)
NUM_CLASSES = 10


def build_model(params: Mapping[str, Any] | Params, *, levers: Levers | None = None) -> keras.Model:
    """Build and compile the model that ``params`` describe (see :mod:`mnist_sweep.model`).

    Inputs are ``(batch, 28, 28)`` float32 images in [0, 1]; outputs are ten softmax
    probabilities, or ten logits when ``output: logits``. ``levers`` (see
    :func:`~mnist_sweep.model.choose_levers`) compile it for speed; without them it is compiled
    plainly, as for inference.
    """
    p = resolved(params)
    mixed = p.get("precision") == "mixed"
    keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")
    inputs = keras.Input(shape=INPUT_SHAPE, name="image")
    x = inputs
    if p["architecture"] == "conv":
        x = keras.layers.Reshape((*INPUT_SHAPE, 1), name="channels")(x)
        filters = p["filters"]
        for block in range(p["conv_blocks"]):
            x = keras.layers.Conv2D(
                filters * 2**block, p["kernel_size"], activation=p["activation"], name=f"conv_{block + 1}"
            )(x)
            x = keras.layers.MaxPooling2D(2, name=f"pool_{block + 1}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    for i, units in enumerate(p["widths"], start=1):
        x = keras.layers.Dense(units, activation=p["activation"], name=f"dense_{i}")(x)
        if p["dropout"] > 0:
            x = keras.layers.Dropout(p["dropout"], name=f"dropout_{i}")(x)
    logits = p["output"] == "logits"
    # Mixed precision computes in float16 but keeps the outputs (softmax, loss) in float32.
    outputs = keras.layers.Dense(
        NUM_CLASSES, activation=None if logits else "softmax", name="output", **({"dtype": "float32"} if mixed else {})
    )(x)
    model = keras.Model(inputs, outputs, name=f"{p['architecture']}_{len(p['widths'])}")
    speed = levers.as_params() if levers is not None else {}
    model.compile(optimizer=_optimizer(p), loss=_loss(p), metrics=[_accuracy(p)], **speed)
    return model


def one_hot_targets(params: Mapping[str, Any] | Params) -> bool:
    """True when the loss wants one-hot targets (categorical cross-entropy, MSE)."""
    return resolved(params)["loss"] != "sparse_categorical_crossentropy"


def _optimizer(p: Mapping[str, Any]) -> keras.optimizers.Optimizer:
    lr = p["learning_rate"]
    if p["optimizer"] == "adam":
        return keras.optimizers.Adam(learning_rate=lr)
    if p["optimizer"] == "sgd":
        return keras.optimizers.SGD(learning_rate=lr, momentum=p["momentum"])
    return keras.optimizers.RMSprop(learning_rate=lr)


def _loss(p: Mapping[str, Any]) -> keras.losses.Loss:
    from_logits = p["output"] == "logits"
    if p["loss"] == "mse":
        return keras.losses.MeanSquaredError()
    if p["loss"] == "categorical_crossentropy":
        return keras.losses.CategoricalCrossentropy(from_logits=from_logits)
    return keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)


def _accuracy(p: Mapping[str, Any]) -> keras.metrics.Metric:
    if p["loss"] == "sparse_categorical_crossentropy":
        return keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    return keras.metrics.CategoricalAccuracy(name="accuracy")


def probabilities(model: keras.Model, images: Any, *, batch_size: int = 1024) -> Any:
    """Class probabilities for ``images`` ((n, 28, 28) in [0, 1]), whatever the output head."""
    import numpy as np

    out = model.predict(np.asarray(images, dtype=np.float32), batch_size=batch_size, verbose=0)
    if not np.allclose(out.sum(axis=1), 1.0, atol=1e-3) or (out < 0).any():
        out = keras.ops.convert_to_numpy(keras.ops.softmax(out, axis=1))
    return out
