"""What does checkpointing every epoch cost? The dense-512 preset with and without the sweep's checkpoint hook.

Both sides train the dense-512 preset (full MNIST: 50,000 train, 10,000 validation) through
``mnist_sweep.model.train``; side B also saves each epoch's weights, optimizer state, history and
seed into a folder store (:class:`mnist_sweep.sweep._checkpoints.CheckpointStore`, atomic write
then rename), exactly as a sweep trial does. The two alternate (A, B, A, B, ...) in one process
after an untimed warm-up, and two figures are reported: the time spent inside the save calls
per epoch over B's mean epoch time (direct, insensitive to the machine's load), and the median
of the per-round ratios of whole-run wall time per epoch B/A (end to end, noisy on a shared machine). Goal: < 5%.

    .venv/bin/python bench/checkpoint_cost.py [--rounds 2] [--epochs 3] [--data-dir DIR] [--store DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import default_data_dir, machine_line

GOAL = 0.05


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="A/B rounds (default 2)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per training run (default 3)")
    parser.add_argument("--data-dir", default=None, help="folder holding mnist/ (default: $MNIST_SWEEP_DATA_DIR)")
    parser.add_argument("--store", default=None, help="checkpoint folder (default: a temporary one)")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.epochs < 1:
        parser.error("--rounds and --epochs must be at least 1")

    from mnist_sweep.model import capture_state, get_preset, load_dataset, train
    from mnist_sweep.sweep._checkpoints import CheckpointStore, StoreChoice

    dataset = load_dataset("mnist", data_dir=args.data_dir or default_data_dir())
    params = {**get_preset("dense-512").params, "epochs": args.epochs}
    folder = args.store or tempfile.mkdtemp(prefix="mnist-sweep-ckpt-bench-")
    store = CheckpointStore(StoreChoice(folder))
    store.check_writable()

    def save(epochs_done: int, model: Any, history: list[dict[str, float]]) -> None:
        state = capture_state(model, epochs_done=epochs_done, history=history, seed=0)
        store.save("bench.ckpt.npz", state, params_key="")

    def epoch_seconds(checkpoint: bool) -> float:
        # Whole-run wall time per epoch: a history's "seconds" ends before the epoch's checkpoint is saved.
        result = train(params, dataset, seed=0, checkpoint=save if checkpoint else None, evaluate_test=False)
        return result.wall_seconds / len(result.history)

    print(machine_line())
    print(f"dense-512, {len(dataset.x_train)} training images, {args.epochs} epochs per run, store {folder}")
    epoch_seconds(False)
    epoch_seconds(True)  # warm-up of both sides, untimed
    store.seconds, store.writes = 0.0, 0
    ratios, plain_all, checkpointed_all = [], [], []
    for round_ in range(1, args.rounds + 1):
        plain = epoch_seconds(False)
        checkpointed = epoch_seconds(True)
        ratios.append(checkpointed / plain)
        plain_all.append(plain)
        checkpointed_all.append(checkpointed)
        print(f"round {round_}: {plain:.2f} s/epoch without, {checkpointed:.2f} s/epoch with checkpoints")
    size = Path(folder, "bench.ckpt.npz").stat().st_size
    per_save = store.seconds / store.writes
    direct = per_save / statistics.fmean(checkpointed_all)
    print(
        f"checkpoint: {size / 1e6:.1f} MB, {per_save * 1000:.1f} ms per save ({store.writes} saves) = "
        f"{direct:.1%} of an epoch ({statistics.fmean(checkpointed_all):.2f} s); "
        f"epoch time with/without, median of rounds: {statistics.median(ratios):.3f}x; goal < {GOAL:.0%}: "
        f"{'met' if direct < GOAL else 'NOT met'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
