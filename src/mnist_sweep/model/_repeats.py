"""One configuration trained with several seeds in lockstep, epoch by epoch. Knows nothing of Optuna or MLflow.

Every seed's model is built first; then each epoch runs once per model (``fit(initial_epoch=e,
epochs=e + 1)``) before the next epoch starts, and ``on_epoch`` sees all the seeds' records of
that epoch together: a caller can report their mean (a pruner keeps one value per step) and
stop every seed at once by raising. Before each model's epoch the global seed is set from that
model's seed and the epoch, so a seed's shuffling does not depend on how many others run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import keras

from mnist_sweep.model import runtime
from mnist_sweep.model._build import build_model, one_hot_targets
from mnist_sweep.model._data import Dataset
from mnist_sweep.model._params import Params
from mnist_sweep.model._schedules import schedule_callbacks
from mnist_sweep.model._training import (
    TrainResult,
    _EpochRecorder,
    _is_out_of_memory,
    choose_levers,
    evaluate_on_test,
    fit_inputs,
)

log = logging.getLogger(__name__)

RoundHook = Callable[[int, list[dict[str, float]]], None]
EPOCH_SEED_STRIDE = 7919


def train_seeds(
    params: Mapping[str, Any] | Params,
    dataset: Dataset,
    *,
    seeds: Sequence[int],
    callbacks: Sequence[keras.callbacks.Callback] = (),
    on_epoch: RoundHook | None = None,
    evaluate_test: bool = True,
    keep_model: bool = True,
) -> list[TrainResult]:
    """Train ``params`` once per seed in ``seeds``, in lockstep; one :class:`TrainResult` per seed.

    ``on_epoch(epoch, records)`` runs after every seed has finished ``epoch`` (0-based), with
    one record per seed (as :func:`~mnist_sweep.model.train` records them); an exception it
    raises propagates. Training stops for every seed once one diverges, runs out of memory or
    is stopped by a callback (``callbacks`` go to every ``fit`` call of every seed).
    """
    if not seeds:
        raise ValueError("train_seeds needs at least one seed")
    runtime.configure()
    checked = Params.resolve(params)
    values = checked.values
    keras.backend.clear_session()
    levers = choose_levers(values, gpu=runtime.has_gpu())
    models = []
    for seed in seeds:
        keras.utils.set_random_seed(seed)
        models.append(build_model(checked, levers=levers, train_size=len(dataset.x_train)))
    results = [
        TrainResult(params=dict(checked.given), param_count=int(model.count_params()), levers=levers)
        for model in models
    ]
    recorders = [_EpochRecorder(None) for _ in models]
    # Each seed's own schedule callbacks (plateau, warm-up), kept across its per-epoch fit calls.
    schedules = [schedule_callbacks(values, train_size=len(dataset.x_train)) for _ in models]
    seconds = [0.0 for _ in models]
    one_hot = one_hot_targets(checked)
    batch_size = values["batch_size"]
    # Arrays take no seed (fit shuffles them under the seed set per epoch): one set serves every fit.
    arrays = levers.data_pipeline == "arrays"
    shared = fit_inputs(levers, dataset, one_hot=one_hot, batch_size=batch_size, seed=0) if arrays else {}
    for epoch in range(int(values["epochs"])):
        fits = [
            shared
            if arrays
            else fit_inputs(levers, dataset, one_hot=one_hot, batch_size=batch_size, seed=_epoch_seed(seed, epoch))
            for seed in seeds
        ]
        if not _one_epoch(models, recorders, results, seeds, seconds, epoch, fits, callbacks, schedules):
            break
        if on_epoch is not None:
            on_epoch(epoch, [dict(recorder.history[-1]) for recorder in recorders])
    for i, (model, recorder, result) in enumerate(zip(models, recorders, results, strict=True)):
        result.history = recorder.history
        if result.ok and recorder.failure:
            result.status, result.failure = "failed", recorder.failure
        started = time.perf_counter()
        if result.ok and evaluate_test:
            evaluate_on_test(model, result, dataset, values, one_hot=one_hot)
        result.wall_seconds = seconds[i] + time.perf_counter() - started
        result.model = model if keep_model and result.ok else None
    return results


def _one_epoch(
    models: Sequence[keras.Model],
    recorders: Sequence[_EpochRecorder],
    results: Sequence[TrainResult],
    seeds: Sequence[int],
    seconds: list[float],
    epoch: int,
    fits: Sequence[Mapping[str, Any]],
    callbacks: Sequence[keras.callbacks.Callback],
    schedules: Sequence[Sequence[keras.callbacks.Callback]],
) -> bool:
    """Epoch ``epoch`` of every model; False once one of them could not finish it."""
    for i, (model, recorder) in enumerate(zip(models, recorders, strict=True)):
        keras.utils.set_random_seed(_epoch_seed(seeds[i], epoch))
        started = time.perf_counter()
        try:
            model.fit(
                **fits[i],
                initial_epoch=epoch,
                epochs=epoch + 1,
                callbacks=[recorder, *schedules[i], *callbacks],
                verbose=0,
            )
        except Exception as exc:
            if not _is_out_of_memory(exc):
                raise
            results[i].status, results[i].failure = "failed", f"out of memory: {str(exc).splitlines()[0][:300]}"
            return False
        finally:
            seconds[i] += time.perf_counter() - started
        if recorder.failure or len(recorder.history) <= epoch or model.stop_training:
            return False
    return True


def _epoch_seed(seed: int, epoch: int) -> int:
    """Seed ``seed``'s random state for epoch ``epoch`` (0-based): its own shuffle and dropout."""
    return (seed + EPOCH_SEED_STRIDE * (epoch + 1)) % 2**32
