"""The GPU path in one short run (issue 12): speed levers, workers per GPU, mixed precision.

For a machine with an NVIDIA GPU; it prints three things and exits non-zero on a missed goal:

1. the dense-512 epoch time with each lever (plain ``fit``, ``steps_per_execution``,
   ``jit_compile``, both, both on the cached ``data_pipeline``, and mnist-sweep's ``auto``)
   against an overhead-free figure: the data resident on the GPU as a cached ``tf.data``
   pipeline and ``steps_per_execution=390`` (one compiled step per epoch). Goal: ``auto`` within 2x of it;
2. trials per minute of a small study with 1 worker, and with 4 workers on one GPU
   (``--workers-per-gpu 4``);
3. ``precision: mixed`` against float32: test accuracy within 0.3 points.

    bash bench/gpu_check.sh            # (the wrapper caps it at 5 minutes)
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
EPOCHS = 3
REPO = Path(__file__).resolve().parents[1]

STUDY = """\
study: gpu-check
dataset: mnist
seed: 0
limit: 5000
objective: {metric: val_accuracy}
sampler: {name: random, seed: 0}
pruner: {name: none}
budget: {n_trials: 8}
fixed: {epochs: 2, batch_size: 128}
space:
  width: {type: categorical, choices: [128, 256, 512, 1024]}
  activation: {type: categorical, choices: [relu, tanh]}
"""


def epoch_seconds(train_fn: Any) -> float:
    """Seconds per epoch of ``train_fn(epochs)``, from the difference of 1 and 1 + EPOCHS epochs."""
    started = time.perf_counter()
    train_fn(1)
    one = time.perf_counter() - started
    started = time.perf_counter()
    train_fn(1 + EPOCHS)
    return (time.perf_counter() - started - one) / EPOCHS


def main() -> int:
    import keras
    import tensorflow as tf

    from mnist_sweep.model import build_model, get_preset, load_dataset, runtime, train

    if not runtime.has_gpu():
        print("no GPU visible to TensorFlow: nothing to check")
        return 2
    print(runtime.device_description(), "TensorFlow", tf.__version__, "Keras", keras.__version__)
    data = load_dataset("mnist")
    params = dict(get_preset("dense-512").params)
    failed = []

    arrays = {"data_pipeline": "arrays"}
    levers = {
        "plain fit": {"steps_per_execution": 1, "jit_compile": False, **arrays},
        "steps_per_execution=32": {"steps_per_execution": 32, "jit_compile": False, **arrays},
        "jit_compile": {"steps_per_execution": 1, "jit_compile": True, **arrays},
        "both": {"steps_per_execution": 32, "jit_compile": True, **arrays},
        "both + data_pipeline": {"steps_per_execution": 32, "jit_compile": True, "data_pipeline": "dataset"},
        "auto (mnist-sweep)": {},
    }
    times = {}
    for name, lever in levers.items():
        times[name] = epoch_seconds(
            lambda n, lever=lever: train({**params, **lever, "epochs": n}, data, keep_model=False)
        )

    def resident(epochs: int) -> None:
        keras.backend.clear_session()
        model = build_model(params)
        model.compile(
            optimizer="rmsprop", loss="sparse_categorical_crossentropy", steps_per_execution=390, jit_compile=True
        )
        with tf.device("/GPU:0"):
            ds = tf.data.Dataset.from_tensor_slices((data.x_train, data.y_train)).batch(128).cache().prefetch(2)
        model.fit(ds, epochs=epochs, verbose=0)

    floor = epoch_seconds(resident)
    print(f"1. dense-512 seconds per epoch (overhead-free: data on the GPU, one step per epoch: {floor:.3f} s)")
    for name, seconds in times.items():
        print(f"   {name:<24} {seconds:.3f} s  ({seconds / floor:.2f}x the overhead-free figure)")
    if times["auto (mnist-sweep)"] > 2 * floor:
        failed.append("auto levers more than 2x the overhead-free epoch")

    with tempfile.TemporaryDirectory() as tmp:
        space = Path(tmp) / "gpu-check.yaml"
        space.write_text(STUDY)
        for label, flags in (("1 worker", ["--workers", "1"]), ("4 workers on one GPU", ["--workers-per-gpu", "4"])):
            storage = f"journal:///{tmp}/{label.replace(' ', '-')}.log"
            command = [sys.executable, "-m", "mnist_sweep.cli", "run", str(space), *flags, "--storage", storage]
            command += ["--tracking-uri", f"sqlite:///{tmp}/{label.replace(' ', '-')}.db", "--quiet"]
            started = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True, check=False, env={**os.environ})
            minutes = (time.perf_counter() - started) / 60
            print(f"2. {label}: {8 / minutes:.1f} trials per minute (exit {done.returncode})")
            if done.returncode:
                failed.append(f"{label}: {done.stderr.strip().splitlines()[-1:]}")

    results = {p: train({**params, "precision": p, "epochs": 5}, data, keep_model=False) for p in ("float32", "mixed")}
    gap = 100 * abs((results["mixed"].test_accuracy or 0) - (results["float32"].test_accuracy or 0))
    print(
        f"3. test accuracy float32 {results['float32'].test_accuracy:.4f}, mixed {results['mixed'].test_accuracy:.4f}:"
        f" {gap:.2f} points apart (goal <= 0.3)"
    )
    if gap > 0.3:
        failed.append("mixed precision more than 0.3 points from float32")
    for problem in failed:
        print("NOT met:", problem)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
