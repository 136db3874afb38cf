"""TPE against random search on the same budget: how soon each reaches a target, and its best.

Both samplers run the same dense sweep (learning rate, depth and width) for the same number of
trials, once per seed (the seed drives both the sampler and training), each in a fresh study
and fresh stores in a temporary folder, tracking off, no pruner. TPE starts with
``n_startup_trials`` random trials, then models the rest. The runs alternate (tpe, random, then
random, tpe for the next seed, ...).

The target validation accuracy comes from the data unless ``--target`` is given: the 90th
percentile of every COMPLETE trial of every sweep pooled (both samplers, all seeds), so about
one trial in ten reaches it and the choice favours neither sampler. "Trials to reach" counts
trials in the order the sweep asked for them, up to the first COMPLETE trial at or above the
target; a sweep that never reaches it counts as budget + 1 in the medians (shown as ">N").

    .venv/bin/python bench/samplers.py [--trials 20] [--epochs 3] [--limit 10000] [--seeds 0 1]
    .venv/bin/python bench/samplers.py --quick
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from _common import (  # bench/ is on sys.path when a script here runs
    SweepRun,
    default_data_dir,
    machine_line,
    make_space,
    median,
    quiet_logs,
    run_timed,
    table,
)

SAMPLERS = ("tpe", "random")
TPE_STARTUP = 5
TARGET_PERCENTILE = 90


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20, help="trials per sweep (default 20)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per trial (default 3)")
    parser.add_argument("--limit", type=int, default=10000, help="training images (default 10000; 0: all 50,000)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="seeds (default 0 1)")
    parser.add_argument(
        "--target",
        type=float,
        default=None,
        help=f"target validation accuracy (default: the pooled {TARGET_PERCENTILE}th percentile of all trials)",
    )
    parser.add_argument("--data-dir", default=default_data_dir(), help="folder holding mnist/ (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="tiny settings: 4 trials x 1 epoch, limit 1000, seed 0")
    args = parser.parse_args(argv)
    if args.quick:
        args.trials, args.epochs, args.limit, args.seeds = 4, 1, 1000, [0]
    if min(args.trials, args.epochs) < 1:
        parser.error("--trials and --epochs must be at least 1")
    limit = args.limit or None

    def space(seed: int, sampler: str) -> Any:
        options = {"n_startup_trials": TPE_STARTUP} if sampler == "tpe" else {}
        return make_space(
            f"samplers-{sampler}-seed{seed}",
            space={
                "learning_rate": {"type": "float", "low": 1.0e-4, "high": 1.0e-1, "log": True},
                "depth": {"type": "int", "low": 1, "high": 3},
                "width": {"type": "categorical", "choices": [32, 64, 128, 256, 512]},
            },
            fixed={
                "architecture": "dense",
                "activation": "relu",
                "optimizer": "adam",
                "batch_size": 128,
                "epochs": args.epochs,
            },
            n_trials=args.trials,
            limit=limit,
            seed=seed,
            sampler={"name": sampler, "seed": seed, "options": options},
            pruner={"name": "none"},
        )

    quiet_logs()
    print(machine_line())
    data = "all 50,000 training images" if limit is None else f"limit {limit} (validation {max(limit // 5, 10)})"
    print(
        f"sweep: {args.trials} trials x {args.epochs} epochs, dense relu, adam, batch 128, learning_rate "
        f"log[1e-4, 1e-1] x depth 1..3 x width {{32..512}}; {data}; TPE n_startup_trials {TPE_STARTUP}; "
        "no pruner; tracking OFF\n",
        flush=True,
    )
    runs: dict[tuple[int, str], SweepRun] = {}
    with tempfile.TemporaryDirectory(prefix="bench-samplers-") as tmp:
        for position, seed in enumerate(args.seeds):
            order = SAMPLERS if position % 2 == 0 else tuple(reversed(SAMPLERS))
            for name in order:
                run, _ = run_timed(
                    f"{name}-{seed}", space(seed, name), root=Path(tmp), data_dir=args.data_dir, tracking=False
                )
                runs[seed, name] = run
                print(
                    f"seed {seed} {name:6s}: best {run.best:.4f} after {args.trials} trials, {run.seconds:.1f} s",
                    flush=True,
                )

    print("\nvalidation accuracy per trial (trial number order):")
    for (seed, name), run in sorted(runs.items()):
        values = " ".join("  -   " if t.value is None else f"{t.value:.4f}" for t in _ordered(run))
        print(f"  seed {seed} {name:6s} {values}")

    pooled = [t.value for run in runs.values() for t in run.result.trials if t.state == "COMPLETE" and t.value]
    target = args.target if args.target is not None else float(np.percentile(pooled, TARGET_PERCENTILE))
    how = "given" if args.target is not None else f"pooled {TARGET_PERCENTILE}th percentile of {len(pooled)} trials"
    levels = [(f"p{q}", float(np.percentile(pooled, q))) for q in (75, 90, 95)] + [("target", target)]
    ladder: dict[str, tuple[str, float]] = {}
    for label, level in levels:  # the raw values: rounding could lift a level past the trial it came from
        ladder.setdefault(f"{level:.6f}", (label, level))

    rows = []
    for seed in args.seeds:
        for name in SAMPLERS:
            run = runs[seed, name]
            rows.append(
                [seed, name, _reach(run, target, args.trials), f"{run.best:.4f}", f"{run.seconds:.1f}"]
                + [_reach(run, level, args.trials) for _, level in ladder.values()]
            )
    print(f"\ntarget validation accuracy {target:.4f} ({how})")
    print(
        table(
            [
                "seed",
                "sampler",
                "trials to target",
                "best",
                "wall s",
                *(f"to {label} {level:.4f}" for label, level in ladder.values()),
            ],
            rows,
        )
    )
    print(f"\nSUMMARY over seeds {' '.join(map(str, args.seeds))} (not reached counts as {args.trials + 1})")
    summary = []
    for name in SAMPLERS:
        reach = [runs[s, name].trials_to_reach(target) or args.trials + 1 for s in args.seeds]
        bests = [runs[s, name].best or 0.0 for s in args.seeds]
        reached = sum(1 for s in args.seeds if runs[s, name].trials_to_reach(target) is not None)
        summary.append(
            [
                name,
                f"{median(reach):g}",
                f"{reached}/{len(args.seeds)}",
                f"{median(bests):.4f}",
                f"{float(np.mean(bests)):.4f}",
                f"{min(bests):.4f}-{max(bests):.4f}",
            ]
        )
    print(
        table(
            ["sampler", f"median trials to {target:.4f}", "seeds reaching it", "median best", "mean best", "range"],
            summary,
        )
    )
    return 0


def _ordered(run: SweepRun) -> list[Any]:
    return sorted(run.result.trials, key=lambda t: t.number)


def _reach(run: SweepRun, target: float, budget: int) -> str:
    found = run.trials_to_reach(target)
    return f">{budget}" if found is None else str(found)


if __name__ == "__main__":
    raise SystemExit(main())
