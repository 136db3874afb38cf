"""The sweep a user would write by hand: an Optuna study, nested MLflow runs, MLflow's Keras autolog.

The peer of ``mnist-sweep`` in ``tracking_overhead.py``: the script from the MLflow and Optuna
tutorials, with nothing of this project in the loop but the arrays (the same ones the sweep
trains on). Its trials are enqueued with the params the mnist-sweep side drew, so both train
the same configurations; the sampler is still TPE, seeded. Optuna's storage is in memory (the
tutorials' default, the cheapest there is); MLflow goes to a fresh SQLite store like the sweep's.
Autolog's defaults: params, per-epoch metrics, the datasets, the model with a signature.

The autolog is ``mlflow.keras.autolog()``, MLflow 3's autolog for Keras 3:
``mlflow.tensorflow.autolog()`` patches the same ``fit`` but writes its metrics through
``tf.summary``, which fails on TensorFlow 2.21 without TensorBoard (not a dependency of
TensorFlow 2.21 any more, nor of this project): ``TBNotInstalledError``.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def peer_sweep(
    params: Sequence[Mapping[str, Any]],
    load: Callable[[], Any],
    *,
    epochs: int,
    seed: int,
    tracking_uri: str,
    experiment: str,
) -> tuple[float, float, float]:
    """Run the hand-written sweep over ``params`` on ``load()``'s arrays; return (wall s, process CPU s, best)."""
    import keras
    import mlflow
    import mlflow.keras
    import optuna

    started, cpu_started = time.perf_counter(), _cpu_with_children()
    dataset = load()  # timed, as the sweep's own loading is
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(experiment)
    mlflow.keras.autolog(silent=True)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    for trial_params in params:
        study.enqueue_trial(dict(trial_params))

    def objective(trial: optuna.Trial) -> float:
        width = trial.suggest_categorical("width", [128, 256, 512])
        activation = trial.suggest_categorical("activation", ["relu", "tanh"])
        learning_rate = trial.suggest_float("learning_rate", 3.0e-4, 3.0e-3, log=True)
        with mlflow.start_run(run_name=f"trial-{trial.number}", nested=True):
            keras.utils.set_random_seed(seed + trial.number)
            model = keras.Sequential(
                [
                    keras.Input(shape=(28, 28)),
                    keras.layers.Flatten(),
                    keras.layers.Dense(width, activation=activation),
                    keras.layers.Dense(10, activation="softmax"),
                ]
            )
            model.compile(
                optimizer=keras.optimizers.RMSprop(learning_rate),
                loss="sparse_categorical_crossentropy",
                metrics=["accuracy"],
            )
            history = model.fit(
                dataset.x_train,
                dataset.y_train,
                batch_size=128,
                epochs=epochs,
                validation_data=(dataset.x_val, dataset.y_val),
                verbose=0,
            )
            return float(history.history["val_accuracy"][-1])

    try:
        with mlflow.start_run(run_name="study"):
            study.optimize(objective, n_trials=len(params))
    finally:
        mlflow.keras.autolog(disable=True)
    return time.perf_counter() - started, _cpu_with_children() - cpu_started, float(study.best_value)


def _cpu_with_children() -> float:
    """Process CPU time plus that of finished child processes (autolog infers requirements in one)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime
