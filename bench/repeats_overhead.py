"""What do lockstep seeds (``repeats: k``) cost over training the same k seeds one after the other?

Both sides train the same dense model (Dense(128, relu), adam, batch 128) with k seeds on the same
in-memory MNIST arrays, validation every epoch, test evaluation at the end: side A calls
``mnist_sweep.model.train`` once per seed, side B ``mnist_sweep.model.train_seeds`` once (one
``fit`` call per epoch and seed). They alternate (A, B, A, B, ...) after an untimed warm-up of
each; the median of the per-round ratios B / A is the result. It also times building the
robustness set (60,000 transformed images from the 10,000 test images) and the gate's
McNemar + bootstrap on 10,000 paired predictions.

    .venv/bin/python bench/repeats_overhead.py [--rounds 3] [--seeds 2] [--epochs 3] [--limit 20000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--limit", type=int, default=20_000, help="training images (validation/test: limit // 5)")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)

    import numpy as np

    from _common import default_data_dir, machine_line, quiet_logs
    from mnist_sweep import stats
    from mnist_sweep.model import load_dataset, load_raw, robust_set, train, train_seeds

    quiet_logs()
    data_dir = args.data_dir or default_data_dir()
    dataset = load_dataset("mnist", data_dir=data_dir, limit=args.limit)
    params = {"width": 128, "epochs": args.epochs, "batch_size": 128, "optimizer": "adam"}
    seeds = list(range(args.seeds))

    def sequential() -> float:
        start = time.perf_counter()
        for seed in seeds:
            train(params, dataset, seed=seed)
        return time.perf_counter() - start

    def lockstep() -> float:
        start = time.perf_counter()
        train_seeds(params, dataset, seeds=seeds)
        return time.perf_counter() - start

    sequential(), lockstep()  # warm-up
    ratios, a_times, b_times = [], [], []
    for _ in range(args.rounds):
        a, b = sequential(), lockstep()
        a_times.append(a)
        b_times.append(b)
        ratios.append(b / a)
    print(machine_line())
    print(f"{args.seeds} seeds x {args.epochs} epochs on {len(dataset.x_train)} images, {args.rounds} rounds")
    print(f"  sequential train() x{args.seeds}: median {statistics.median(a_times):.2f} s")
    print(f"  lockstep train_seeds():        median {statistics.median(b_times):.2f} s")
    print(
        f"  ratio lockstep / sequential: median {statistics.median(ratios):.3f} (rounds: "
        + ", ".join(f"{r:.3f}" for r in ratios)
        + ")"
    )

    raw = load_raw("mnist", data_dir)
    images = raw.test_images.astype(np.float32) / np.float32(255.0)
    start = time.perf_counter()
    robust_set(images, raw.test_labels)
    print(f"robust set (60,000 images): {time.perf_counter() - start:.2f} s")
    rng = np.random.default_rng(0)
    a_right, b_right = rng.random(10_000) < 0.97, rng.random(10_000) < 0.97
    start = time.perf_counter()
    test = stats.mcnemar_flags(a_right, b_right)
    stats.bootstrap_difference(test)
    print(f"McNemar + bootstrap on 10,000 pairs ({test.discordant} discordant): {time.perf_counter() - start:.3f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
