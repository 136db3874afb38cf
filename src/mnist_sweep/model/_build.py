"""``build_model(params)``: a Keras model as a pure function of a plain parameter dict.

Building stays apart from training (as keras-tuner's ``HyperModel.build``), so the best trial
of a study can be rebuilt from its ``params`` alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import keras

from mnist_sweep.model import _schedules
from mnist_sweep.model._params import Params, resolved

if TYPE_CHECKING:
    from mnist_sweep.model._training import Levers

INPUT_SHAPE = (28, 28)
NUM_CLASSES = 10


def dtype_policy(precision: str, *, gpu: bool) -> str:
    """Keras's dtype policy for ``precision``: ``mixed`` computes in float16 on a GPU, in bfloat16 on a CPU.

    On a CPU, float16 arithmetic is emulated: a dense-512 epoch ran at 0.73-0.92x the speed of
    float32 on these 2 cores, bfloat16 (native on CPUs with AVX512-BF16 or AMX) at 1.00-1.38x, with
    the same test accuracy (bench/precision_speed.py, BENCHMARKS.md). Keras recommends the same split.
    """
    if precision != "mixed":
        return "float32"
    return "mixed_float16" if gpu else "mixed_bfloat16"


def build_model(
    params: Mapping[str, Any] | Params, *, levers: Levers | None = None, train_size: int | None = None
) -> keras.Model:
    """Build and compile the model that ``params`` describe (see :mod:`mnist_sweep.model`).

    Inputs are ``(batch, 28, 28)`` float32 images in [0, 1]; outputs are ten softmax
    probabilities, or ten logits when ``output: logits``. ``levers`` (see
    :func:`~mnist_sweep.model.choose_levers`) compile it for speed; without them it is compiled
    plainly, as for inference. ``train_size`` (training images per epoch) sets the length of a
    ``cosine`` / ``one_cycle`` schedule; without it the full 50,000-image split is assumed.
    ``augment`` layers act only while training: prediction and evaluation never augment.
    """
    p = resolved(params)
    if levers is not None:
        policy = levers.dtype_policy
    else:
        from mnist_sweep.model import runtime

        policy = dtype_policy(p.get("precision", "float32"), gpu=runtime.has_gpu())
    mixed = policy != "float32"
    keras.mixed_precision.set_global_policy(policy)
    inputs = keras.Input(shape=INPUT_SHAPE, name="image")
    x = inputs
    conv = p["architecture"] == "conv"
    if conv or p["augment"] != "none":
        x = keras.layers.Reshape((*INPUT_SHAPE, 1), name="channels")(x)
    x = _augmentation(x, p["augment"])
    if conv:
        filters = p["filters"]
        for block in range(p["conv_blocks"]):
            name = f"conv_{block + 1}"
            units = filters * 2**block
            for conv_index in range(p["convs_per_block"]):
                # The block's first conv is 'valid' (as it always was); stacked ones keep the side.
                layer = name if conv_index == 0 else f"{name}_{conv_index + 1}"
                padding = "valid" if conv_index == 0 else "same"
                x = _conv(x, units, p, layer, padding)
            x = keras.layers.MaxPooling2D(2, name=f"pool_{block + 1}")(x)
    if conv and p["pooling"] == "global_avg":
        x = keras.layers.GlobalAveragePooling2D(name="global_pool")(x)
    else:
        x = keras.layers.Flatten(name="flatten")(x)
    for i, units in enumerate(p["widths"], start=1):
        if p["batch_norm"]:
            x = keras.layers.Dense(units, use_bias=False, name=f"dense_{i}")(x)
            x = _normalized_activation(x, p["activation"], f"dense_{i}")
        else:
            x = keras.layers.Dense(units, activation=p["activation"], name=f"dense_{i}")(x)
        if p["dropout"] > 0:
            x = keras.layers.Dropout(p["dropout"], name=f"dropout_{i}")(x)
    logits = p["output"] == "logits"
    # Mixed precision computes in 16 bits but keeps the outputs (softmax, loss) in float32.
    outputs = keras.layers.Dense(
        NUM_CLASSES, activation=None if logits else "softmax", name="output", **({"dtype": "float32"} if mixed else {})
    )(x)
    model = keras.Model(inputs, outputs, name=f"{p['architecture']}_{len(p['widths'])}")
    speed = levers.compile_options() if levers is not None else {}
    model.compile(
        optimizer=_schedules.optimizer(p, train_size=train_size), loss=_loss(p), metrics=[_accuracy(p)], **speed
    )
    return model


def _conv(x: Any, units: int, p: Mapping[str, Any], name: str, padding: str) -> Any:
    if p["batch_norm"]:
        x = keras.layers.Conv2D(units, p["kernel_size"], padding=padding, use_bias=False, name=name)(x)
        return _normalized_activation(x, p["activation"], name)
    return keras.layers.Conv2D(units, p["kernel_size"], padding=padding, activation=p["activation"], name=name)(x)


# Random shift (fraction of the side), rotation (fraction of a full turn) and zoom (fraction of
# the side) per `augment` level; "strong" spans the robustness checks' ranges (+-3 px, +-15 deg,
# 0.8-1.2 scale). "flip" is the clothing recipe (a mirrored shirt is still a shirt, a mirrored
# digit is not): left-right flips and +-2 px shifts, no rotation or zoom. Pixels moved in from
# outside are black, like the images' background.
AUGMENT_RANGES: dict[str, dict[str, Any]] = {
    "light": {"shift": 2 / 28, "rotation": 8 / 360, "zoom": 0.1},
    "strong": {"shift": 3 / 28, "rotation": 15 / 360, "zoom": 0.2},
    "flip": {"flip": "horizontal", "shift": 2 / 28},
}


def _augmentation(x: Any, level: str) -> Any:
    if level == "none":
        return x
    r = AUGMENT_RANGES[level]
    fill = {"fill_mode": "constant", "fill_value": 0.0}
    if "flip" in r:
        x = keras.layers.RandomFlip(r["flip"], name="augment_flip")(x)
    x = keras.layers.RandomTranslation(r["shift"], r["shift"], name="augment_shift", **fill)(x)
    if "rotation" in r:
        x = keras.layers.RandomRotation(r["rotation"], name="augment_rotate", **fill)(x)
    if "zoom" in r:
        x = keras.layers.RandomZoom(r["zoom"], r["zoom"], name="augment_zoom", **fill)(x)
    return x


# PyTorch's default (0.1 there): Keras's 0.99 leaves the moving statistics far behind the
# batches' for the first few hundred steps, so short trials on small subsets validated at
# chance (measured: 5,000 images, 3 epochs, train accuracy 0.99, validation 0.10).
BN_MOMENTUM = 0.9


def _normalized_activation(x: Any, activation: str, name: str) -> Any:
    """Batch norm between the (bias-free) layer and its activation, as in ResNets."""
    x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    return keras.layers.Activation(activation, name=f"{name}_act")(x)


def one_hot_targets(params: Mapping[str, Any] | Params) -> bool:
    """True when the loss wants one-hot targets (categorical cross-entropy, MSE)."""
    return _one_hot(resolved(params))


def _one_hot(p: Mapping[str, Any]) -> bool:
    # Keras 3.15's sparse cross-entropy has no label smoothing: smoothing trains the same loss
    # on one-hot targets instead (categorical and sparse cross-entropy agree on one-hot labels).
    return p["loss"] != "sparse_categorical_crossentropy" or p["label_smoothing"] > 0


def _loss(p: Mapping[str, Any]) -> keras.losses.Loss:
    from_logits = p["output"] == "logits"
    if p["loss"] == "mse":
        return keras.losses.MeanSquaredError()
    if _one_hot(p):
        return keras.losses.CategoricalCrossentropy(from_logits=from_logits, label_smoothing=p["label_smoothing"])
    return keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)


def _accuracy(p: Mapping[str, Any]) -> keras.metrics.Metric:
    if not _one_hot(p):
        return keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    return keras.metrics.CategoricalAccuracy(name="accuracy")


def probabilities(model: keras.Model, images: Any, *, batch_size: int = 1024) -> Any:
    """Class probabilities for ``images`` ((n, 28, 28) in [0, 1]), whatever the output head."""
    import numpy as np

    out = model.predict(np.asarray(images, dtype=np.float32), batch_size=batch_size, verbose=0)
    if not np.allclose(out.sum(axis=1), 1.0, atol=1e-3) or (out < 0).any():
        out = keras.ops.convert_to_numpy(keras.ops.softmax(out, axis=1))
    return out
