"""Do two worker processes finish a fixed study faster than one on this machine?

The same 8-trial study runs three ways, each from scratch (fresh journal file, fresh MLflow
store), each through the real command (``mnist-sweep run FILE --workers N``):

* 1 worker, TensorFlow on every core (``MNIST_SWEEP_THREADS`` = cores): the baseline;
* 2 workers, the cores divided between them (what ``--workers 2`` does);
* 1 worker on 1 thread, to show how well one trial uses more than one core.

The study is fixed: a grid sampler over exactly 8 configurations (dense, widths 128-256,
relu/tanh), so every run trains the same 8 models; each trial trains for a few seconds on
``--limit`` images. Reported: the wall time of the whole command (process start-up, TensorFlow
import, MLflow store creation, training and logging) and of the trial phase alone (first trial
start to last trial end, from the study), and the ratio of the baseline to each.

    .venv/bin/python bench/workers_speedup.py [--limit 12000] [--epochs 3] [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from _common import run_command, trial_phase  # bench/ is on sys.path when a script here runs

GOAL = 1.8
SPACE = """\
study: speedup
question: how much faster do two workers finish a fixed study?
dataset: mnist
seed: 0
limit: {limit}
objective: {{metric: val_accuracy, direction: maximize}}
sampler: {{name: grid, seed: 0}}
pruner: {{name: none}}
budget: {{n_trials: 8}}
fixed: {{epochs: {epochs}, batch_size: 64, optimizer: adam, depth: 2}}
space:
  width: {{type: categorical, choices: [128, 160, 192, 256]}}
  activation: {{type: categorical, choices: [relu, tanh]}}
"""


def run_once(folder: Path, space: Path, *, workers: int, threads: int) -> dict[str, float]:
    journal = folder / "study.log"
    tracking = f"sqlite:///{folder / 'mlflow.db'}"
    env = {**os.environ, "MNIST_SWEEP_THREADS": str(threads)}
    command = [
        "run", str(space), "--workers", str(workers), "--storage", f"journal://{journal}", "--tracking-uri", tracking,
        "-q",
    ]  # fmt: skip
    wall = run_command(command, cwd=folder, what="run", env=env)
    import optuna

    from mnist_sweep.contract import ATTR_RESAMPLED
    from mnist_sweep.stores._storage import open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name="speedup", storage=open_storage(f"journal://{journal}"))
    # A grid point two workers draw at once is closed at once as a resampled duplicate: not a trial run.
    trials = [t for t in study.get_trials(deepcopy=False) if ATTR_RESAMPLED not in t.user_attrs]
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    if len(complete) != 8 or len(trials) != 8:
        raise SystemExit(f"expected 8 COMPLETE trials, got {[t.state.name for t in trials]}")
    per_trial = sorted((t.datetime_complete - t.datetime_start).total_seconds() for t in complete)  # type: ignore[operator]
    return {"wall": wall, "trials": trial_phase(complete), "median_trial": per_trial[len(per_trial) // 2]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=12000, help="training images per trial (default 12000)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per trial (default 3)")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each setting; the best is kept")
    parser.add_argument("--json", action="store_true", help="also print the numbers as JSON")
    parser.add_argument("--no-single-thread", action="store_true", help="leave out the 1 worker x 1 thread run")
    args = parser.parse_args(argv)
    cores = os.cpu_count() or 1
    settings = [
        (f"1 worker x {cores} threads", 1, cores),
        (f"2 workers x {max(1, cores // 2)} thread(s)", 2, max(1, cores // 2)),
        ("1 worker x 1 thread", 1, 1),
    ][: 2 if args.no_single_thread else 3]
    print(
        f"8-trial grid study, dense 2 layers x 128-256, {args.limit} images x {args.epochs} epochs per trial; "
        f"{cores} cores; load average {os.getloadavg()[0]:.2f}; journal storage, SQLite MLflow store"
    )
    results: dict[str, dict[str, float]] = {}
    for name, workers, threads in settings:
        best: dict[str, float] | None = None
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory(prefix="mnist-sweep-speedup-") as tmp:
                space = Path(tmp) / "speedup.yaml"
                space.write_text(SPACE.format(limit=args.limit, epochs=args.epochs))
                got = run_once(Path(tmp), space, workers=workers, threads=threads)
            if best is None or got["wall"] < best["wall"]:
                best = got
        assert best is not None
        results[name] = best
        print(
            f"  {name:<24} wall {best['wall']:6.1f} s   trial phase {best['trials']:6.1f} s   "
            f"median trial {best['median_trial']:5.1f} s",
            flush=True,
        )
    base = results[settings[0][0]]
    two = results[settings[1][0]]
    wall_ratio = base["wall"] / two["wall"]
    phase_ratio = base["trials"] / two["trials"]
    print(
        f"speed-up of 2 workers over 1: {wall_ratio:.2f}x wall time, {phase_ratio:.2f}x trial phase "
        f"(goal >= {GOAL}x: {'met' if wall_ratio >= GOAL else 'NOT met'})"
    )
    one_thread = results.get("1 worker x 1 thread")
    if one_thread is not None:
        print(
            f"one worker gains {one_thread['median_trial'] / base['median_trial']:.2f}x per trial from "
            f"{cores} threads instead of 1"
        )
    if args.json:
        print(json.dumps({"results": results, "wall_ratio": wall_ratio, "phase_ratio": phase_ratio}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
