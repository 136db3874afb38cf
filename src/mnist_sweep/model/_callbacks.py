"""The Keras callbacks a sweep plugs into training: pruning and the per-trial timeout.

Kept apart from :mod:`mnist_sweep.sweep` so that module loads without Keras (``status``,
``best`` and ``studies`` never need TensorFlow).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import keras
import optuna


def _call(fn: Callable[[], Any]) -> Any:
    return fn()


class PruningCallback(keras.callbacks.Callback):
    """Reports the objective metric to Optuna each epoch and prunes when the pruner says so.

    ``retry`` wraps each storage call (a shared database may blink); ``history`` keeps the
    epochs seen, so a pruned trial's curve is not lost.
    """

    def __init__(self, trial: optuna.Trial, metric: str, retry: Callable[[Callable[[], Any]], Any] = _call) -> None:
        super().__init__()
        self.trial = trial
        self.metric = metric
        self.retry = retry
        self.history: list[dict[str, float]] = []
        self.reported: set[int] = set()
        """Steps the trial holds already (a retry inherits them): not reported again."""

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        logs = dict(logs or {})
        self.history.append({k: float(v) for k, v in logs.items() if isinstance(v, int | float)})
        value = logs.get(self.metric)
        if value is None or not math.isfinite(float(value)):
            return
        if epoch + 1 not in self.reported:
            self.retry(lambda: self.trial.report(float(value), step=epoch + 1))
        if self.retry(self.trial.should_prune):
            raise optuna.TrialPruned(f"pruned at epoch {epoch + 1} ({self.metric} {float(value):.4f})")


class StopAtEpoch(keras.callbacks.Callback):
    """Stops training after epoch ``epochs`` (a rung of asynchronous successive halving)."""

    def __init__(self, epochs: int) -> None:
        super().__init__()
        self.epochs = epochs

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        if epoch + 1 >= self.epochs:
            self.model.stop_training = True


class TrialTimeout(keras.callbacks.Callback):
    """Stops training once a trial has run longer than ``seconds`` (None: never)."""

    def __init__(self, seconds: float | None) -> None:
        super().__init__()
        self.seconds = seconds
        self.expired = False
        self._start = time.monotonic()
        self._began = False

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        if not self._began:  # lockstep seeds call fit once per epoch: the clock runs from the first
            self._began = True
            self._start = time.monotonic()

    def on_train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        if self.seconds is not None and time.monotonic() - self._start > self.seconds:
            self.expired = True
            self.model.stop_training = True
