"""What does ``precision: mixed`` cost or save on this machine, per 16-bit type?

The dense-512 preset (all 50,000 training images, validation every epoch) trains with the levers
``auto`` picks on this device, under three Keras dtype policies: ``float32``, ``mixed_float16``
and ``mixed_bfloat16``. ``precision: mixed`` resolves to float16 on a GPU and bfloat16 on a CPU
(``mnist_sweep.model.dtype_policy``); this script measures why. The policies alternate inside one
process after an untimed warm-up of each; each round reports the median epoch time after the
first (tracing) epoch and the test accuracy, and the summary the medians over rounds.

    .venv/bin/python bench/precision_speed.py [--rounds 3] [--epochs 3] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

from _common import default_data_dir, machine_line, quiet_logs, table  # bench/ is on sys.path here

POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the three policies (default 3)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per training run (default 3, at least 2)")
    parser.add_argument("--data-dir", default=default_data_dir(), help="folder holding mnist/ (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.epochs < 2:
        parser.error("--rounds must be at least 1 and --epochs at least 2")

    quiet_logs()
    import keras

    from mnist_sweep.model import (
        Dataset,
        Params,
        TrainResult,
        build_model,
        choose_levers,
        get_preset,
        load_dataset,
        runtime,
    )
    from mnist_sweep.model._training import evaluate_on_test, fit_inputs

    params = {**get_preset("dense-512").params, "epochs": args.epochs}
    values = Params.resolve(params).values
    dataset = load_dataset("mnist", data_dir=args.data_dir)
    auto = choose_levers(values, gpu=runtime.has_gpu())
    print(machine_line())
    print(f"dense-512, {args.epochs} epochs, {dataset.describe()}; levers {auto}; {runtime.device_description()}")

    def run(policy: str, data: Dataset, epochs: int) -> tuple[list[float], float]:
        keras.backend.clear_session()
        keras.utils.set_random_seed(0)
        levers = dataclasses.replace(auto, dtype_policy=policy)
        model = build_model(values, levers=levers, train_size=len(data.x_train))
        times: list[float] = []

        class Timer(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch: int, logs: object = None) -> None:
                self.started = time.perf_counter()

            def on_epoch_end(self, epoch: int, logs: object = None) -> None:
                times.append(time.perf_counter() - self.started)

        try:
            model.fit(
                **fit_inputs(levers, data, one_hot=False, batch_size=values["batch_size"], seed=0),
                epochs=epochs,
                callbacks=[Timer()],
                verbose=0,
            )
            result = TrainResult(params=dict(values))
            evaluate_on_test(model, result, data, values, one_hot=False)
        finally:
            keras.mixed_precision.set_global_policy("float32")
        return times, float(result.test_accuracy or 0.0)

    warmup = load_dataset("mnist", data_dir=args.data_dir, limit=1000)
    for policy in POLICIES:
        run(policy, warmup, 1)
    epoch_times: dict[str, list[float]] = {p: [] for p in POLICIES}
    accuracy: dict[str, list[float]] = {p: [] for p in POLICIES}
    for number in range(1, args.rounds + 1):
        order = POLICIES if number % 2 else tuple(reversed(POLICIES))
        cells = []
        for policy in order:
            times, acc = run(policy, dataset, args.epochs)
            epoch_times[policy].append(statistics.median(times[1:]))
            accuracy[policy].append(acc)
            cells.append(f"{policy} {epoch_times[policy][-1]:.2f} s/epoch (test {acc:.4f})")
        print(f"round {number}: " + " | ".join(cells), flush=True)

    base = statistics.median(epoch_times["float32"])
    rows = []
    for policy in POLICIES:
        median = statistics.median(epoch_times[policy])
        acc = statistics.median(accuracy[policy])
        gap = 100 * (acc - statistics.median(accuracy["float32"]))
        rows.append([policy, f"{median:.3f}", f"{base / median:.2f}x", f"{acc:.4f}", f"{gap:+.2f}"])
    print()
    print(table(["policy", "s per epoch (median)", "speed vs float32", "test accuracy", "vs float32 (points)"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
