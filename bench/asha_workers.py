"""How much faster do two workers finish an ``asha`` study than one?

The pruning benchmark's study (``bench/pruning.py``: TPE seeded, dense depth 1, learning rate x
width x activation, 20 trials x up to 8 epochs on ``--limit`` images, asha rungs 1, 3, 8) runs
through the real command, ``mnist-sweep run FILE --workers N --no-tracking``, each run in a
fresh folder (a journal-file study, as `--workers 2` needs on one machine; checkpoints beside it):

* ``none``, 1 worker: the unpruned baseline;
* ``asha``, 1 worker;
* ``asha``, 2 workers (the cores divided between them, as ``--workers 2`` does).

Runs alternate per seed (forward, then reversed for the next seed), so they are measured side by
side. Reported per run: the wall time of the whole command, the trial phase (first trial start
to last trial end, from the study), the epochs trained (a continuation counts only the epochs it
trained itself) and the best COMPLETE validation accuracy. Two workers do not draw the same
sequence of configurations as one (TPE sees the other worker's running trials), so the epochs and
the best value differ between them too; that is part of what is measured.

    .venv/bin/python bench/asha_workers.py [--trials 20] [--epochs 8] [--limit 10000] [--seeds 0 1]
    .venv/bin/python bench/asha_workers.py --quick
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from _common import (  # bench/ is on sys.path when a script here runs
    default_data_dir,
    machine_line,
    run_command,
    table,
    trial_phase,
)

SPACE = """\
study: asha-workers
question: how much faster do two workers finish an asha study?
dataset: mnist
seed: {seed}
limit: {limit}
objective: {{metric: val_accuracy, direction: maximize}}
sampler: {{name: tpe, seed: {seed}, options: {{n_startup_trials: 5}}}}
pruner: {pruner}
budget: {{n_trials: {trials}}}
fixed: {{architecture: dense, depth: 1, optimizer: adam, batch_size: 128, epochs: {epochs}}}
space:
  learning_rate: {{type: float, low: 1.0e-5, high: 1.0e-1, log: true}}
  width: {{type: categorical, choices: [32, 64, 128, 256, 512]}}
  activation: {{type: categorical, choices: [relu, tanh, sigmoid]}}
"""
PRUNERS = {
    "none": "{{name: none}}",
    "asha": "{{name: asha, options: {{min_resource: 1, max_resource: {epochs}, reduction_factor: 3}}}}",
}


def run_once(folder: Path, *, pruner: str, workers: int, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    space = folder / "space.yaml"
    space.write_text(
        SPACE.format(
            seed=seed,
            limit=args.limit,
            trials=args.trials,
            epochs=args.epochs,
            pruner=PRUNERS[pruner].format(epochs=args.epochs),
        )
    )
    storage = f"journal://{folder / 'study.log'}"  # what --workers 2 needs on one machine
    command = [
        "run", str(space), "--workers", str(workers), "--storage", storage, "--data-dir", args.data_dir,
        "--no-tracking", "-q",
    ]  # fmt: skip
    wall = run_command(command, cwd=folder, what=f"{pruner} x {workers} worker(s), seed {seed}")
    import optuna

    from mnist_sweep.stores._storage import open_storage
    from mnist_sweep.sweep import summarize

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name="asha-workers", storage=open_storage(storage))
    trials = study.get_trials(deepcopy=False)
    summaries = summarize(study)
    complete = [s.value for s in summaries if s.state == "COMPLETE" and s.value is not None]
    running = [t.number for t in trials if t.state.name == "RUNNING"]
    if running:
        raise SystemExit(f"{pruner} x {workers}: trials {running} left RUNNING")
    return {
        "wall": wall,
        "phase": trial_phase(trials),
        "epochs": sum(s.epochs for s in summaries),
        "best": max(complete) if complete else None,
        "states": dict(Counter(s.state for s in summaries)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20, help="configurations per study (default 20)")
    parser.add_argument("--epochs", type=int, default=8, help="epochs of a configuration never stopped (default 8)")
    parser.add_argument("--limit", type=int, default=10000, help="training images (default 10000)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="sampler/training seeds (default 0 1)")
    parser.add_argument("--data-dir", default=default_data_dir(), help="folder holding mnist/ (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="tiny settings: 6 trials x 3 epochs, limit 1000, seed 0")
    args = parser.parse_args(argv)
    if args.quick:
        args.trials, args.epochs, args.limit, args.seeds = 6, 3, 1000, [0]
    settings = [("none", 1), ("asha", 1), ("asha", 2)]
    print(machine_line())
    print(
        f"study: {args.trials} configurations x up to {args.epochs} epochs, dense depth 1, adam, batch 128, "
        f"limit {args.limit}; TPE seeded; asha min_resource 1, reduction_factor 3; tracking off; "
        f"{os.cpu_count()} cores\n",
        flush=True,
    )
    results: dict[tuple[int, str, int], dict[str, Any]] = {}
    for position, seed in enumerate(args.seeds):
        order = settings if position % 2 == 0 else list(reversed(settings))
        for pruner, workers in order:
            with tempfile.TemporaryDirectory(prefix="bench-asha-workers-") as tmp:
                got = run_once(Path(tmp), pruner=pruner, workers=workers, seed=seed, args=args)
            results[seed, pruner, workers] = got
            print(
                f"seed {seed} {pruner} x {workers} worker(s): wall {got['wall']:.1f} s, trial phase "
                f"{got['phase']:.1f} s, {got['epochs']} epochs, best {got['best']}, {got['states']}",
                flush=True,
            )
    rows = []
    for seed in args.seeds:
        base = results[seed, "none", 1]
        one = results[seed, "asha", 1]
        for pruner, workers in settings:
            r = results[seed, pruner, workers]
            rows.append(
                [
                    seed,
                    f"{pruner} x {workers}",
                    r["epochs"],
                    "-" if r["best"] is None else f"{r['best']:.4f}",
                    f"{r['wall']:.1f}",
                    f"{r['phase']:.1f}",
                    f"{base['wall'] / r['wall']:.2f}x",
                    f"{one['wall'] / r['wall']:.2f}x",
                    f"{one['phase'] / r['phase']:.2f}x",
                ]
            )
    print("\nSUMMARY (tracking off)")
    print(
        table(
            [
                "seed",
                "run",
                "epochs",
                "best val acc",
                "wall s",
                "trial phase s",
                "none x 1 / this wall",
                "asha x 1 / this wall",
                "asha x 1 / this phase",
            ],
            rows,
        )
    )
    one_wall = sum(results[s, "asha", 1]["wall"] for s in args.seeds)
    two_wall = sum(results[s, "asha", 2]["wall"] for s in args.seeds)
    one_phase = sum(results[s, "asha", 1]["phase"] for s in args.seeds)
    two_phase = sum(results[s, "asha", 2]["phase"] for s in args.seeds)
    print(
        f"\nasha, 2 workers against 1 over {len(args.seeds)} seed(s): {one_wall / two_wall:.2f}x wall time, "
        f"{one_phase / two_phase:.2f}x trial phase"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
