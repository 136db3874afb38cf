"""Learning-rate schedules (``lr_schedule``, ``warmup_epochs``) and weight decay, from params.

``constant``, ``cosine`` and ``one_cycle`` are Keras's own :class:`~keras.optimizers.schedules.CosineDecay`
(with its linear warm-up), so a saved model's optimizer loads back without custom code.
``plateau`` keeps a plain learning rate that :class:`~keras.callbacks.ReduceLROnPlateau` lowers
(a schedule object cannot be lowered); its warm-up is a callback. Both are training only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import keras

DEFAULT_TRAIN_SIZE = 50_000
"""Training images assumed when :func:`~mnist_sweep.model.build_model` is not told (the full split)."""

ONE_CYCLE_RISE = 0.3  # share of training spent rising when no warm-up is given (fastai's pct_start)
ONE_CYCLE_START = 25.0  # one_cycle starts at lr / 25 ...
ONE_CYCLE_END = 25.0 * 1e4  # ... and ends at lr / 250,000 (fastai's div and final_div)
PLATEAU_FACTOR = 0.5
PLATEAU_PATIENCE = 2
PLATEAU_MIN_FRACTION = 0.01  # never below 1% of the learning rate
NO_DECAY = ("bias", "gamma", "beta")  # biases and batch-norm scales/offsets are not decayed


def steps_per_epoch(p: Mapping[str, Any], train_size: int | None) -> int:
    return max(1, math.ceil((train_size or DEFAULT_TRAIN_SIZE) / p["batch_size"]))


def learning_rate(
    p: Mapping[str, Any], *, train_size: int | None = None
) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """The optimizer's ``learning_rate``: the plain number (today's behaviour) or a schedule."""
    lr = float(p["learning_rate"])
    schedule = p["lr_schedule"]
    per_epoch = steps_per_epoch(p, train_size)
    total = p["epochs"] * per_epoch
    warmup = p["warmup_epochs"] * per_epoch
    if schedule == "plateau" or (schedule == "constant" and not warmup):
        return lr
    if schedule == "one_cycle":
        rise = warmup or max(1, round(ONE_CYCLE_RISE * total))
        return keras.optimizers.schedules.CosineDecay(
            lr / ONE_CYCLE_START,
            max(1, total - rise),
            alpha=1 / ONE_CYCLE_END,
            warmup_target=lr,
            warmup_steps=rise,
        )
    # constant with warm-up: a cosine "decay" to alpha = 1.0 of the target, i.e. none.
    alpha = 1.0 if schedule == "constant" else 0.0
    if not warmup:
        return keras.optimizers.schedules.CosineDecay(lr, max(1, total), alpha=alpha)
    return keras.optimizers.schedules.CosineDecay(
        0.0, max(1, total - warmup), alpha=alpha, warmup_target=lr, warmup_steps=warmup
    )


def optimizer(p: Mapping[str, Any], *, train_size: int | None = None) -> keras.optimizers.Optimizer:
    """The optimizer of ``p``: adam becomes AdamW when ``weight_decay`` > 0; SGD and RMSprop decay too."""
    lr = learning_rate(p, train_size=train_size)
    decay = float(p["weight_decay"])
    opt: keras.optimizers.Optimizer
    if p["optimizer"] == "adam":
        opt = keras.optimizers.AdamW(learning_rate=lr, weight_decay=decay) if decay else keras.optimizers.Adam(lr)
    elif p["optimizer"] == "sgd":
        opt = keras.optimizers.SGD(learning_rate=lr, momentum=p["momentum"], weight_decay=decay or None)
    else:
        opt = keras.optimizers.RMSprop(learning_rate=lr, weight_decay=decay or None)
    if decay:
        opt.exclude_from_weight_decay(var_names=list(NO_DECAY))
    return opt


class LinearWarmup(keras.callbacks.Callback):
    """Raises a plain learning rate linearly to ``target`` over ``steps`` optimizer steps.

    Keras calls it once per compiled execution (``steps_per_execution`` batches), so the rate
    rises in such chunks; the first chunk runs at ``target / steps``, never at zero.
    """

    def __init__(self, target: float, steps: int) -> None:
        super().__init__()
        self.target = target
        self.steps = steps

    def on_train_batch_begin(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        if step <= self.steps:
            self.model.optimizer.learning_rate = self.target * min(1.0, (step + 1) / self.steps)


class KeptPlateau(keras.callbacks.ReduceLROnPlateau):
    """``ReduceLROnPlateau`` whose patience survives several ``fit`` calls.

    Keras resets the plateau's counters at every ``on_train_begin``; seeds trained in lockstep
    (one ``fit`` per epoch) would then never lower the rate. This one resets only once.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._started = False

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        if not self._started:
            self._started = True
            super().on_train_begin(logs)


def schedule_callbacks(p: Mapping[str, Any], *, train_size: int | None = None) -> list[keras.callbacks.Callback]:
    """The callbacks ``train`` adds for ``p``'s schedule: none unless ``lr_schedule: plateau``."""
    if p["lr_schedule"] != "plateau":
        return []
    lr = float(p["learning_rate"])
    callbacks: list[keras.callbacks.Callback] = []
    if p["warmup_epochs"]:
        callbacks.append(LinearWarmup(lr, p["warmup_epochs"] * steps_per_epoch(p, train_size)))
    callbacks.append(
        KeptPlateau(
            monitor="val_loss",
            factor=PLATEAU_FACTOR,
            patience=PLATEAU_PATIENCE,
            min_lr=lr * PLATEAU_MIN_FRACTION,
            verbose=0,
        )
    )
    return callbacks
