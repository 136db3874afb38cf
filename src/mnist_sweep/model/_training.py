"""Fit and evaluate one model. Knows nothing of Optuna or MLflow.

Extra Keras callbacks plug in (the sweep's pruning callback does); a NaN or infinite loss
stops training and comes back as a failed :class:`TrainResult`, as does running out of memory.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from mnist_sweep.model import _pipeline, runtime
from mnist_sweep.model._build import build_model, dtype_policy, one_hot_targets
from mnist_sweep.model._data import Dataset
from mnist_sweep.model._params import Params
from mnist_sweep.model._pipeline import targets
from mnist_sweep.model._schedules import schedule_callbacks
from mnist_sweep.model._state import CheckpointHook, TrainingState, restore_state

log = logging.getLogger(__name__)

EPOCH_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy", "seconds")
EpochHook = Callable[[int, dict[str, float]], None]


@dataclass
class TrainResult:
    """What one training run produced.

    ``history`` holds one dict per finished epoch with :data:`EPOCH_KEYS`.
    ``status`` is ``"ok"`` or ``"failed"`` (then ``failure`` says why, and test metrics are None).
    """

    params: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)
    status: str = "ok"
    failure: str | None = None
    test_loss: float | None = None
    test_accuracy: float | None = None
    param_count: int = 0
    wall_seconds: float = 0.0
    model: keras.Model | None = None
    levers: Levers | None = None
    test_probabilities: np.ndarray | None = None  # (n_test, 10) softmax probabilities

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def epochs_trained(self) -> int:
        return len(self.history)

    def final(self, key: str) -> float | None:
        return self.history[-1][key] if self.history else None

    def best(self, key: str, *, maximize: bool = True) -> float | None:
        values = [h[key] for h in self.history if key in h]
        if not values:
            return None
        return max(values) if maximize else min(values)


class _EpochRecorder(keras.callbacks.Callback):
    """Records each epoch's metrics and seconds; stops training on a non-finite loss."""

    def __init__(self, on_epoch: EpochHook | None, checkpoint: CheckpointHook | None = None) -> None:
        super().__init__()
        self.history: list[dict[str, float]] = []
        self.failure: str | None = None
        self._on_epoch = on_epoch
        self._checkpoint = checkpoint
        self._start = 0.0

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.failure = f"loss became {float(loss)} at batch {batch}: training diverged"
            self.model.stop_training = True

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        logs = dict(logs or {})
        record = {key: float(logs[key]) for key in EPOCH_KEYS if key in logs}
        record["seconds"] = time.perf_counter() - self._start
        if self.failure is None and not all(math.isfinite(v) for v in record.values()):
            self.failure = f"non-finite metrics at epoch {epoch + 1}: training diverged"
            self.model.stop_training = True
        if self.failure is None:
            self.history.append(record)
            if self._checkpoint is not None:  # first: every epoch reported anywhere has its checkpoint
                self._checkpoint(epoch + 1, self.model, self.history)
            if self._on_epoch is not None:
                self._on_epoch(epoch, record)


@dataclass(frozen=True)
class Levers:
    """How a model trains fast: what ``steps_per_execution`` / ``jit_compile`` / ``data_pipeline`` resolved to."""

    steps_per_execution: int = 1
    jit_compile: bool = False
    data_pipeline: str = "arrays"  # "arrays": fit on NumPy arrays; "dataset": cached tf.data (see _pipeline)
    dtype_policy: str = "float32"  # Keras's policy for the ``precision`` param on this device (see dtype_policy)

    def as_params(self) -> dict[str, Any]:
        """Every lever, as logged to the trial's run."""
        return {**self.compile_options(), "data_pipeline": self.data_pipeline, "dtype_policy": self.dtype_policy}

    def compile_options(self) -> dict[str, Any]:
        """The levers ``model.compile`` takes."""
        return {"steps_per_execution": self.steps_per_execution, "jit_compile": self.jit_compile}


# Measured on 2 CPU cores (Keras 3.15, one process, variants alternated; BENCHMARKS.md): for the
# dense-512 model, steps_per_execution=32 is 1.70x plain fit, jit_compile 1.29x, both only 1.46x;
# for the tutorial CNN, steps_per_execution changes nothing (0.98x) and XLA is 0.63x (slower).
AUTO_STEPS_PER_EXECUTION = 32


def choose_levers(values: Mapping[str, Any], *, gpu: bool) -> Levers:
    """Resolve ``auto`` levers for this model on this device; explicit values are kept.

    Small models are step-overhead bound: several batches per compiled step help them on every
    device. On a CPU, convolutions are compute bound (no gain) and XLA slows them; XLA adds
    nothing on top of steps_per_execution for dense models there. On a GPU both are on.
    """
    conv = values.get("architecture") == "conv"
    steps = values.get("steps_per_execution", "auto")
    jit = values.get("jit_compile", "auto")
    if steps == "auto":
        steps = AUTO_STEPS_PER_EXECUTION if gpu or not conv else 1
    if jit == "auto":
        # Keras cannot XLA-compile the augmentation layers' image transforms (it warns and falls back).
        jit = gpu and values.get("augment", "none") == "none"
    pipeline = values.get("data_pipeline", "auto")
    if pipeline == "auto":
        pipeline = "dataset" if gpu or not conv else "arrays"
    return Levers(
        steps_per_execution=int(steps),
        jit_compile=bool(jit),
        data_pipeline=str(pipeline),
        dtype_policy=dtype_policy(str(values.get("precision", "float32")), gpu=gpu),
    )


def fit_inputs(levers: Levers, dataset: Dataset, *, one_hot: bool, batch_size: int, seed: int) -> dict[str, Any]:
    """``model.fit``'s data arguments for ``levers.data_pipeline``: arrays, or the cached pipeline."""
    if levers.data_pipeline == "dataset":
        return {
            "x": _pipeline.training_batches(dataset, one_hot=one_hot, batch_size=batch_size, seed=seed),
            "validation_data": _pipeline.validation_batches(dataset, one_hot=one_hot),
            "shuffle": False,  # the pipeline shuffles (Keras warns that it would not)
        }
    return {
        "x": dataset.x_train,
        "y": targets(dataset.y_train, one_hot=one_hot),
        "batch_size": batch_size,
        "validation_data": (dataset.x_val, targets(dataset.y_val, one_hot=one_hot)),
    }


def train(
    params: Mapping[str, Any] | Params,
    dataset: Dataset,
    *,
    seed: int = 0,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    on_epoch: EpochHook | None = None,
    evaluate_test: bool = True,
    keep_model: bool = True,
    checkpoint: CheckpointHook | None = None,
    resume: TrainingState | None = None,
) -> TrainResult:
    """Build the model of ``params``, fit it with validation every epoch, evaluate on test.

    ``epochs`` and ``batch_size`` come from ``params``. Memory stays flat over many calls in
    one process (the Keras session is cleared before each build). ``checkpoint`` is called
    after every epoch, before ``on_epoch``; ``resume`` continues from a state it was given
    (the result's history then starts with the resumed epochs). A state that does not fit
    the model raises ValueError before anything trains.
    """
    runtime.configure()
    checked = Params.resolve(params)
    values = checked.values
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    started = time.perf_counter()
    levers = choose_levers(values, gpu=runtime.has_gpu())
    model = build_model(checked, levers=levers, train_size=len(dataset.x_train))
    result = TrainResult(params=dict(checked.given), param_count=int(model.count_params()), levers=levers)
    one_hot = one_hot_targets(checked)
    recorder = _EpochRecorder(on_epoch, checkpoint)
    initial_epoch = 0
    if resume is not None:
        restore_state(model, resume)
        recorder.history = [dict(h) for h in resume.history]
        initial_epoch = resume.epochs_done
    try:
        model.fit(
            **fit_inputs(levers, dataset, one_hot=one_hot, batch_size=values["batch_size"], seed=seed),
            epochs=values["epochs"],
            initial_epoch=initial_epoch,
            callbacks=[recorder, *schedule_callbacks(values, train_size=len(dataset.x_train)), *callbacks],
            verbose=0,
        )
    except Exception as exc:
        if not _is_out_of_memory(exc):
            raise
        result.status, result.failure = "failed", f"out of memory: {str(exc).splitlines()[0][:300]}"
    result.history = recorder.history
    if result.ok and recorder.failure:
        result.status, result.failure = "failed", recorder.failure
    if result.ok and evaluate_test:
        evaluate_on_test(model, result, dataset, values, one_hot=one_hot)
    result.wall_seconds = time.perf_counter() - started
    result.model = model if keep_model and result.ok else None
    return result


def evaluate_on_test(
    model: keras.Model, result: TrainResult, dataset: Dataset, values: Mapping[str, Any], *, one_hot: bool
) -> None:
    """Fill ``result``'s test loss, accuracy and class probabilities from one forward pass.

    One pass gives all three (evaluate() and a second predict() cost two); the sweep draws its
    confusion matrix from the probabilities.
    """
    outputs = model.predict(dataset.x_test, batch_size=max(values["batch_size"], 256), verbose=0)
    loss = model.loss(targets(dataset.y_test, one_hot=one_hot), outputs)
    result.test_loss = float(keras.ops.convert_to_numpy(loss))
    probs = outputs if values["output"] == "softmax" else keras.ops.convert_to_numpy(keras.ops.softmax(outputs))
    result.test_probabilities = np.asarray(probs, dtype=np.float32)
    result.test_accuracy = float(np.mean(np.argmax(outputs, axis=1) == dataset.y_test))


def _is_out_of_memory(exc: BaseException) -> bool:
    try:
        import tensorflow as tf

        if isinstance(exc, tf.errors.ResourceExhaustedError):
            return True
    except ImportError:  # pragma: no cover - TensorFlow is a dependency
        pass
    return isinstance(exc, MemoryError)
