"""``train``: history, test metrics, divergence and out-of-memory as failed runs, callbacks, seeds."""

from __future__ import annotations

import gc
import math
import os
import weakref
from typing import Any

import keras
import numpy as np
import pytest

from mnist_sweep.model import _training as training
from mnist_sweep.model._data import Dataset, load_dataset
from mnist_sweep.model._presets import get_preset
from mnist_sweep.model._training import EPOCH_KEYS, TrainResult, train

SMALL = {"width": 32, "epochs": 1}
# SGD with momentum at learning rate 10 on a 4-layer ReLU net: on the tiny real set at batch 32
# the loss is NaN at batch 4 for every seed tried (0-4), on CPU.
DIVERGING = {"optimizer": "sgd", "learning_rate": 10.0, "momentum": 0.9, "depth": 4, "width": 256}


def _metrics(result: TrainResult) -> list[dict[str, float]]:
    return [{k: v for k, v in epoch.items() if k != "seconds"} for epoch in result.history]


def test_one_epoch_on_tiny_data(tiny_mnist: Dataset) -> None:
    result = train({**get_preset("dense-512").params, "epochs": 1}, tiny_mnist)
    assert result.ok and result.status == "ok" and result.failure is None
    assert result.epochs_trained == 1
    assert set(result.history[0]) == set(EPOCH_KEYS)
    assert all(math.isfinite(v) for v in result.history[0].values())
    assert 0.0 <= result.history[0]["accuracy"] <= 1.0 and 0.0 <= result.history[0]["val_accuracy"] <= 1.0
    assert result.history[0]["seconds"] > 0
    assert result.test_accuracy is not None and 0.0 <= result.test_accuracy <= 1.0
    assert result.test_loss is not None and result.test_loss > 0
    assert result.param_count == 407_050
    assert result.wall_seconds >= result.history[0]["seconds"]
    assert isinstance(result.model, keras.Model)
    assert result.final("val_accuracy") == result.history[-1]["val_accuracy"]
    assert result.best("val_loss", maximize=False) == result.history[0]["val_loss"]
    assert result.best("no such key") is None


def test_several_epochs_learn(tiny_mnist: Dataset) -> None:
    result = train({"width": 64, "epochs": 4, "batch_size": 32}, tiny_mnist)
    assert result.epochs_trained == 4
    losses = [epoch["loss"] for epoch in result.history]
    assert losses[-1] < losses[0]
    assert result.final("accuracy") is not None and result.final("accuracy") > 0.5  # type: ignore[operator]


@pytest.mark.parametrize(
    "params",
    [
        {"loss": "mse", "activation": "sigmoid", "optimizer": "adam"},
        {"loss": "categorical_crossentropy", "output": "logits"},
        {"architecture": "conv", "filters": 4, "conv_blocks": 1, "output": "logits"},
        {"dropout": 0.5, "depth": 2},
    ],
    ids=["mse", "categorical-logits", "conv", "dropout"],
)
def test_every_loss_and_architecture_trains(tiny_mnist: Dataset, params: dict[str, Any]) -> None:
    result = train({**SMALL, **params}, tiny_mnist, keep_model=False)
    assert result.ok, result.failure
    assert result.test_accuracy is not None
    assert result.model is None


def test_options_skip_test_evaluation_and_model(tiny_mnist: Dataset) -> None:
    result = train(SMALL, tiny_mnist, evaluate_test=False, keep_model=False)
    assert result.ok
    assert result.test_accuracy is None and result.test_loss is None
    assert result.model is None


@pytest.mark.parametrize("seed", [0, 1])
def test_diverging_run_fails_with_a_reason(tiny_mnist: Dataset, seed: int) -> None:
    epochs_seen: list[int] = []
    result = train(
        {**DIVERGING, "epochs": 3, "batch_size": 32}, tiny_mnist, seed=seed, on_epoch=lambda e, _: epochs_seen.append(e)
    )
    assert result.status == "failed" and not result.ok
    assert result.failure is not None and "diverged" in result.failure and "nan" in result.failure
    assert result.history == [] and epochs_seen == []  # the NaN epoch is not recorded
    assert result.test_accuracy is None and result.test_loss is None
    assert result.model is None
    assert result.param_count > 0 and result.wall_seconds > 0


def test_out_of_memory_fails_with_a_reason(tiny_mnist: Dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    import tensorflow as tf

    real_build = training.build_model

    def build_then_run_out_of_memory(params: Any, **kwargs: Any) -> keras.Model:
        model = real_build(params, **kwargs)

        def fit(*args: Any, **kwargs: Any) -> None:
            raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor with shape[65536,784]")

        model.fit = fit
        return model

    monkeypatch.setattr(training, "build_model", build_then_run_out_of_memory)
    result = train(SMALL, tiny_mnist)
    assert result.status == "failed"
    assert result.failure == "out of memory: OOM when allocating tensor with shape[65536,784]"
    assert result.model is None and result.test_accuracy is None


def test_other_errors_propagate(tiny_mnist: Dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    class Boom(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            raise RuntimeError("a bug in a callback")

    with pytest.raises(RuntimeError, match="a bug in a callback"):
        train(SMALL, tiny_mnist, callbacks=[Boom()])


def test_extra_callbacks_and_the_epoch_hook_are_called(tiny_mnist: Dataset) -> None:
    class Counter(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.batches = 0
            self.epoch_logs: list[dict[str, Any]] = []
            self.began = self.ended = False

        def on_train_begin(self, logs: Any = None) -> None:
            self.began = True

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            self.batches += 1

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self.epoch_logs.append(dict(logs or {}))

        def on_train_end(self, logs: Any = None) -> None:
            self.ended = True

    counter = Counter()
    hook_calls: list[tuple[int, dict[str, float]]] = []
    result = train(
        # Batch hooks run once per compiled step: one batch per step here, to count every batch.
        {**SMALL, "epochs": 2, "batch_size": 100, "steps_per_execution": 1},
        tiny_mnist,
        callbacks=[counter],
        on_epoch=lambda epoch, record: hook_calls.append((epoch, dict(record))),
    )
    assert counter.began and counter.ended
    assert counter.batches == 2 * 3  # 300 images in batches of 100
    assert [logs["val_accuracy"] for logs in counter.epoch_logs] == [e["val_accuracy"] for e in result.history]
    assert [epoch for epoch, _ in hook_calls] == [0, 1]
    assert [record for _, record in hook_calls] == result.history


def test_a_callback_can_stop_training_early(tiny_mnist: Dataset) -> None:
    class StopAfterFirstEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self.model.stop_training = True

    result = train({**SMALL, "epochs": 5}, tiny_mnist, callbacks=[StopAfterFirstEpoch()])
    assert result.ok and result.epochs_trained == 1


def test_same_seed_same_history(tiny_mnist: Dataset) -> None:
    params = {**SMALL, "epochs": 2, "dropout": 0.2}
    first = train(params, tiny_mnist, seed=7, keep_model=False)
    second = train(params, tiny_mnist, seed=7, keep_model=False)
    other = train(params, tiny_mnist, seed=8, keep_model=False)
    assert _metrics(first) == _metrics(second)
    assert first.test_accuracy == second.test_accuracy and first.test_loss == second.test_loss
    assert _metrics(first) != _metrics(other)


def test_params_are_recorded_as_given(tiny_mnist: Dataset) -> None:
    params = {"width": 16, "epochs": 1, "optimizer": "sgd"}
    result = train(params, tiny_mnist, keep_model=False)
    assert result.params == params and result.params is not params


def _rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def test_models_are_not_kept_alive(tiny_mnist: Dataset) -> None:
    first = train(SMALL, tiny_mnist)
    assert first.model is not None
    model = weakref.ref(first.model)
    del first
    train(SMALL, tiny_mnist, keep_model=False)
    gc.collect()
    assert model() is None


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads RSS from /proc")
def test_memory_stays_roughly_flat(tiny_mnist: Dataset) -> None:
    # TensorFlow keeps about 3 MB of graph state per model built (bare Keras does the same); a
    # leaked model, optimizer or copy of the data would cost far more than the bound here.
    train(SMALL, tiny_mnist, keep_model=False)
    gc.collect()
    before = _rss_mb()
    runs = 4
    for seed in range(runs):
        train(SMALL, tiny_mnist, seed=seed, keep_model=False)
    gc.collect()
    assert (_rss_mb() - before) / runs < 15


@pytest.mark.slow
@pytest.mark.full_data
def test_dense_512_on_full_mnist_reaches_the_tutorial_accuracy(data_dir: Any) -> None:
    dataset = load_dataset("mnist", data_dir=data_dir)
    result = train(get_preset("dense-512").params, dataset, keep_model=False)
    assert result.ok and result.epochs_trained == 5
    assert result.test_accuracy is not None and result.test_accuracy >= 0.975
    assert result.final("accuracy") >= 0.985  # type: ignore[operator]
    assert np.isfinite(result.test_loss)  # type: ignore[arg-type]


LEVER_CASES = [
    # (params, gpu, steps_per_execution, jit_compile, data_pipeline)
    ({"architecture": "dense"}, False, 32, False, "dataset"),
    ({"architecture": "conv"}, False, 1, False, "arrays"),
    ({"architecture": "dense"}, True, 32, True, "dataset"),
    ({"architecture": "conv"}, True, 32, True, "dataset"),
    ({"architecture": "conv", "steps_per_execution": 4, "jit_compile": True}, False, 4, True, "arrays"),
    ({"architecture": "conv", "data_pipeline": "dataset"}, False, 1, False, "dataset"),
    ({"architecture": "dense", "jit_compile": False, "data_pipeline": "arrays"}, True, 32, False, "arrays"),
]


@pytest.mark.parametrize(("given", "gpu", "steps", "jit", "pipeline"), LEVER_CASES)
def test_auto_levers_follow_the_measured_rule_and_explicit_ones_win(
    given: dict[str, object], gpu: bool, steps: int, jit: bool, pipeline: str
) -> None:
    from mnist_sweep.model import Params, choose_levers

    levers = choose_levers(Params.resolve(given).values, gpu=gpu)
    assert (levers.steps_per_execution, levers.jit_compile, levers.data_pipeline) == (steps, jit, pipeline)
    logged = {"steps_per_execution": steps, "jit_compile": jit, "data_pipeline": pipeline, "dtype_policy": "float32"}
    assert levers.as_params() == logged
    assert levers.compile_options() == {"steps_per_execution": steps, "jit_compile": jit}


def test_levers_are_params_with_auto_defaults() -> None:
    from mnist_sweep.errors import ParamError
    from mnist_sweep.model import Params

    values = Params.resolve({}).values
    assert values["steps_per_execution"] == "auto" and values["jit_compile"] == "auto"
    assert values["data_pipeline"] == "auto"
    assert values["precision"] == "float32"
    assert Params.resolve({"steps_per_execution": 8, "jit_compile": True}).values["steps_per_execution"] == 8
    assert not {"steps_per_execution", "jit_compile", "data_pipeline"} & set(Params.resolve({}).logged())
    for bad in ({"steps_per_execution": 0}, {"jit_compile": "yes"}, {"precision": "half"}, {"data_pipeline": "gpu"}):
        with pytest.raises(ParamError, match=next(iter(bad))):
            Params.resolve(bad)


def test_steps_per_execution_keeps_nan_detection_and_epoch_metrics(tiny_mnist) -> None:  # type: ignore[no-untyped-def]
    from mnist_sweep.model import train

    diverging = {**DIVERGING, "epochs": 3, "batch_size": 32, "steps_per_execution": 4}
    result = train(diverging, tiny_mnist)
    assert not result.ok and "training diverged" in (result.failure or "")
    result = train({"epochs": 2, "batch_size": 32, "width": 16, "steps_per_execution": 4}, tiny_mnist)
    assert result.ok and len(result.history) == 2 and result.levers is not None
    assert result.levers.steps_per_execution == 4
    assert all(h["seconds"] > 0 for h in result.history)


def test_mixed_precision_trains_and_keeps_float32_outputs(tiny_mnist) -> None:  # type: ignore[no-untyped-def]
    import keras

    from mnist_sweep.model import train

    try:
        from mnist_sweep.model import runtime

        result = train({"epochs": 1, "batch_size": 32, "width": 16, "precision": "mixed"}, tiny_mnist)
        assert result.ok and result.model is not None and result.levers is not None
        assert result.model.get_layer("output").dtype_policy.compute_dtype == "float32"
        half = "float16" if runtime.has_gpu() else "bfloat16"  # float16 is emulated (slow) on a CPU
        assert result.model.get_layer("dense_1").dtype_policy.compute_dtype == half
        assert result.levers.as_params()["dtype_policy"] == f"mixed_{half}"
        assert result.test_probabilities is not None and result.test_probabilities.dtype.name == "float32"
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize(
    ("precision", "gpu", "policy"),
    [
        ("float32", False, "float32"),
        ("float32", True, "float32"),
        ("mixed", True, "mixed_float16"),
        ("mixed", False, "mixed_bfloat16"),
    ],
)
def test_precision_resolves_per_device(precision: str, gpu: bool, policy: str) -> None:
    from mnist_sweep.model import Params, choose_levers

    levers = choose_levers(Params.resolve({"precision": precision}).values, gpu=gpu)
    assert levers.dtype_policy == policy
