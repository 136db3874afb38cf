"""What does ``mnist_sweep.training.train`` cost over a bare Keras script doing the same work?

Both sides train the dense-512 preset (Dense(512, relu) + softmax, RMSprop 0.001, batch 128) on
the same in-memory MNIST arrays (50,000 train, 10,000 validation every epoch, 10,000 test), and
each timing covers model build + fit + test evaluation. Both clear the Keras session and seed
the same way first, so they run identical steps. The two alternate (A, B, A, B, ...) in one
process after an untimed warm-up of each, and the median of the per-round ratios is the result.

    .venv/bin/python bench/train_overhead.py [--rounds 3] [--epochs 5] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

GOALS = {"dense-512": 0.65, "cnn": 1.0}
ACCURACY_POINTS = 0.3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(GOALS), default="dense-512")
    parser.add_argument("--rounds", type=int, default=3, help="A/B rounds (default 3)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per training run (default: the preset's)")
    parser.add_argument("--data-dir", default=None, help="folder holding mnist/ (default: $MNIST_SWEEP_DATA_DIR)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.rounds < 1 or (args.epochs is not None and args.epochs < 1):
        parser.error("--rounds and --epochs must be at least 1")

    import keras
    import tensorflow as tf

    from mnist_sweep.model import Params, build_model, choose_levers, get_preset, load_dataset, runtime, train

    preset = args.preset
    dataset = load_dataset("mnist", data_dir=args.data_dir)
    params = dict(get_preset(preset).params)
    args.epochs = args.epochs or int(params["epochs"])
    params["epochs"] = args.epochs
    batch_size = int(params["batch_size"])
    levers = choose_levers(Params.resolve(params).values, gpu=runtime.has_gpu())
    print(
        f"{preset}, {args.epochs} epoch(s), batch {batch_size}, {dataset.describe()}; mnist-sweep levers {levers}\n"
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}, {runtime.device_description()}, "
        f"load average {_load()}"
    )

    def with_mnist_sweep(epochs: int, data: Any) -> float:
        result = train({**params, "epochs": epochs}, data, seed=args.seed, keep_model=False)
        if not result.ok or result.test_accuracy is None:
            raise RuntimeError(f"mnist_sweep training failed: {result.failure}")
        return result.test_accuracy

    def bare_keras(epochs: int, data: Any) -> float:
        keras.backend.clear_session()
        keras.utils.set_random_seed(args.seed)
        model = build_model(params)  # the same layers, compiled plainly: what the tutorial does
        one_hot = params.get("loss", "sparse_categorical_crossentropy") != "sparse_categorical_crossentropy"
        y_train = keras.utils.to_categorical(data.y_train, 10) if one_hot else data.y_train
        y_val = keras.utils.to_categorical(data.y_val, 10) if one_hot else data.y_val
        model.fit(
            data.x_train, y_train, batch_size=batch_size, epochs=epochs, validation_data=(data.x_val, y_val), verbose=0
        )
        # train() predicts at max(batch_size, 256); the same here, so both do the same work.
        outputs = model.predict(data.x_test, batch_size=max(batch_size, 256), verbose=0)
        return float((outputs.argmax(axis=1) == data.y_test).mean())

    sides: list[tuple[str, Callable[[int, Any], float]]] = [
        ("mnist_sweep", with_mnist_sweep),
        ("bare keras", bare_keras),
    ]
    warmup = load_dataset("mnist", data_dir=args.data_dir, limit=1000)
    for _, run in sides:
        run(1, warmup)

    seconds: dict[str, list[float]] = {name: [] for name, _ in sides}
    cpu_seconds: dict[str, list[float]] = {name: [] for name, _ in sides}
    accuracies: dict[str, list[float]] = {name: [] for name, _ in sides}
    ratios = []
    for round_number in range(1, args.rounds + 1):
        cells = []
        for name, run in sides:
            started, cpu_started = time.perf_counter(), time.process_time()
            accuracy = run(args.epochs, dataset)
            accuracies[name].append(accuracy)
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
            seconds[name].append(elapsed)
            cpu_seconds[name].append(cpu)
            cells.append(f"{name} {elapsed:6.2f} s wall, {cpu:6.2f} s CPU (test accuracy {accuracy:.4f})")
        ratios.append(seconds["mnist_sweep"][-1] / seconds["bare keras"][-1])
        print(f"round {round_number}: " + " | ".join(cells) + f" | ratio {ratios[-1]:.3f}", flush=True)

    median_ratio = statistics.median(ratios)
    goal = GOALS[preset]
    accuracy_gap = 100 * abs(statistics.median(accuracies["mnist_sweep"]) - statistics.median(accuracies["bare keras"]))
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    cpu_ratio = statistics.median(
        a / b for a, b in zip(cpu_seconds["mnist_sweep"], cpu_seconds["bare keras"], strict=True)
    )
    print(
        f"median wall time: mnist_sweep {medians['mnist_sweep']:.2f} s, bare keras {medians['bare keras']:.2f} s\n"
        f"median wall-time ratio mnist_sweep / bare: {median_ratio:.3f} "
        f"(goal <= {goal}: {'met' if median_ratio <= goal else 'NOT met'})\n"
        f"test accuracy gap: {accuracy_gap:.2f} points (goal <= {ACCURACY_POINTS}: "
        f"{'met' if accuracy_gap <= ACCURACY_POINTS else 'NOT met'})\n"
        f"median CPU-time ratio mnist_sweep / bare: {cpu_ratio:.3f}\n"
        f"load average (1, 5, 15 min) at the end: {_load()}"
    )
    return 0


def _load() -> str:
    try:
        return ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


if __name__ == "__main__":
    raise SystemExit(main())
