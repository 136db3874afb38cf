"""How many epochs does pruning save, and what does it cost in best validation accuracy?

The same dense sweep (TPE with a fixed seed over learning rate, width and activation) runs with
each pruner and without one (``none``), each in a fresh study and fresh stores in a temporary
folder, tracking off (MLflow plays no part in what is measured here). For each sweep: the total
epochs trained (the sum over trials of the epochs each ran, from the trial's ``history``) and the
best validation accuracy of a COMPLETE trial (the objective: validation accuracy after the last
epoch). The goal of issue 3: at least 3x fewer epochs than ``none`` for a best within 0.3 points.

The variants alternate inside one run (none, pruner, ..., then the next seed in reverse order),
so their wall times are measured side by side too. With a pruner, TPE sees pruned trials, so the
sampled sequences part ways after the first pruning; that is part of what is measured.

    .venv/bin/python bench/pruning.py [--trials 20] [--epochs 8] [--limit 10000] [--seeds 0 1]
    .venv/bin/python bench/pruning.py --quick
    .venv/bin/python bench/pruning.py --pruners asha asha:bootstrap_count=6,reduction_factor=3
    .venv/bin/python bench/pruning.py --pruners asha asha:promotion_quota=true
    .venv/bin/python bench/pruning.py --pruners asha asha:promotion_quota=true --whole-eval

Beside the best validation accuracy (the goal's measure) each sweep reports the test accuracy of
the trial it picks. The best of many noisy validation values is biased upwards (a sweep that
finishes 20 configurations takes the maximum of 20 draws, one that finishes 2 the maximum of 2),
so the picked trial's accuracy on images it was not picked on is the fairer comparison.
``--whole-eval`` keeps the 10,000 validation and 10,000 test images whole (``train_limit`` in
place of ``limit``), which narrows both the noise of each comparison and that bias.

A pruner name may carry option overrides after a colon (``name:key=value,key=value``), so
variants of one pruner are compared in the same run.
"""

from __future__ import annotations

import argparse
import re
import tempfile
from pathlib import Path
from typing import Any

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

EPOCH_GOAL = 3.0
GOALS = {"asha": 3.5}  # issue 11's goal for the pausing pruner
BEST_TOLERANCE = 0.003  # 0.3 points of validation accuracy
TPE_STARTUP = 5


def slug(variant: str) -> str:
    """A variant's name as a study and folder name (``asha:bootstrap_count=6`` -> ``asha-bootstrap_count-6``)."""
    return re.sub(r"[^A-Za-z0-9_]+", "-", variant)


def pruner_settings(epochs: int) -> dict[str, dict[str, Any]]:
    """The pruners compared, with their options (``none`` is the baseline)."""
    return {
        "none": {"name": "none"},
        "successive_halving": {
            "name": "successive_halving",
            "options": {"min_resource": 1, "reduction_factor": 3, "min_early_stopping_rate": 0},
        },
        "median": {"name": "median", "options": {"n_startup_trials": 5, "n_warmup_steps": 1, "interval_steps": 1}},
        # Prunes a trial whenever it is outside the top 25% of the trials at the same epoch.
        "percentile": {
            "name": "percentile",
            "options": {"percentile": 25.0, "n_startup_trials": 3, "n_warmup_steps": 0, "interval_steps": 1},
        },
        "hyperband": {
            "name": "hyperband",
            "options": {"min_resource": 1, "max_resource": epochs, "reduction_factor": 3},
        },
        # Pauses and promotes (mnist_sweep.sweep._asha): rungs 1, 3, then the last epoch.
        "asha": {"name": "asha", "options": {"min_resource": 1, "max_resource": epochs, "reduction_factor": 3}},
    }


def sweep_space(
    study: str, seed: int, pruner: dict[str, Any], *, trials: int, epochs: int, limit: int | None, whole_eval: bool
) -> Any:
    """The benchmark's dense sweep (TPE seeded with ``seed``) under ``pruner``."""
    return make_space(
        study,
        space={
            "learning_rate": {"type": "float", "low": 1.0e-5, "high": 1.0e-1, "log": True},
            "width": {"type": "categorical", "choices": [32, 64, 128, 256, 512]},
            "activation": {"type": "categorical", "choices": ["relu", "tanh", "sigmoid"]},
        },
        fixed={"architecture": "dense", "depth": 1, "optimizer": "adam", "batch_size": 128, "epochs": epochs},
        n_trials=trials,
        limit=None if whole_eval else limit,
        train_limit=limit if whole_eval else None,
        seed=seed,
        sampler={"name": "tpe", "seed": seed, "options": {"n_startup_trials": TPE_STARTUP}},
        pruner=pruner,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20, help="trials per sweep (default 20)")
    parser.add_argument("--epochs", type=int, default=8, help="epochs of a trial that is never pruned (default 8)")
    parser.add_argument("--limit", type=int, default=10000, help="training images (default 10000; 0: all 50,000)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="sampler/training seeds (default 0 1)")
    parser.add_argument(
        "--pruners",
        nargs="+",
        default=["successive_halving"],
        metavar="PRUNER[:KEY=VALUE,...]",
        help="pruners compared with none (default: successive_halving); one of successive_halving, median, "
        "percentile, hyperband, asha, each with optional option overrides",
    )
    parser.add_argument("--data-dir", default=default_data_dir(), help="folder holding mnist/ (default: %(default)s)")
    parser.add_argument(
        "--whole-eval",
        action="store_true",
        help="cut only the training split to --limit; validation and test stay whole (10,000 each)",
    )
    parser.add_argument("--quick", action="store_true", help="tiny settings: 6 trials x 3 epochs, limit 1000, seed 0")
    args = parser.parse_args(argv)
    if args.quick:
        args.trials, args.epochs, args.limit, args.seeds = 6, 3, 1000, [0]
    if min(args.trials, args.epochs) < 1:
        parser.error("--trials and --epochs must be at least 1")
    limit = args.limit or None
    settings = pruner_settings(args.epochs)
    for variant in args.pruners:
        base, _, overrides = variant.partition(":")
        if base not in settings or base == "none":
            parser.error(f"unknown pruner {base!r} in {variant!r}")
        options = dict(settings[base].get("options", {}))
        for pair in filter(None, overrides.split(",")):
            key, _, value = pair.partition("=")
            if not value:
                parser.error(f"{variant!r}: an override is key=value, got {pair!r}")
            if value in ("true", "false"):
                options[key] = value == "true"
            else:
                options[key] = float(value) if "." in value else int(value)
        settings[variant] = {"name": base, "options": options}
    variants = ["none", *args.pruners]

    def space(seed: int, pruner: str) -> Any:
        return sweep_space(
            f"pruning-{slug(pruner)}-seed{seed}",
            seed,
            settings[pruner],
            trials=args.trials,
            epochs=args.epochs,
            limit=limit,
            whole_eval=args.whole_eval,
        )

    quiet_logs()
    print(machine_line())
    if limit is None:
        data = "all 50,000 training images"
    elif args.whole_eval:
        data = f"train_limit {limit} (validation and test whole: 10,000 each)"
    else:
        data = f"limit {limit} (validation and test {max(limit // 5, 10)} each)"
    print(
        f"sweep: {args.trials} trials x up to {args.epochs} epochs, dense depth 1, adam, batch 128, "
        f"learning_rate log[1e-5, 1e-1] x width {{32..512}} x activation {{relu,tanh,sigmoid}}; {data}; "
        f"TPE (n_startup_trials {TPE_STARTUP}) seeded per run; tracking OFF"
    )
    for name in variants:
        print(f"  pruner {name}: {settings[name].get('options', {})}")
    print(flush=True)

    runs: dict[tuple[int, str], SweepRun] = {}
    with tempfile.TemporaryDirectory(prefix="bench-pruning-") as tmp:
        for position, seed in enumerate(args.seeds):
            order = variants if position % 2 == 0 else list(reversed(variants))
            for name in order:
                run, _ = run_timed(
                    f"{slug(name)}-{seed}", space(seed, name), root=Path(tmp), data_dir=args.data_dir, tracking=False
                )
                runs[seed, name] = run
                states = run.states()
                print(
                    f"seed {seed} {name:18s}: {run.epochs:4d} epochs, best {run.best:.4f} "
                    f"(test {_fmt(run.best_test)}), "
                    f"{states.get('COMPLETE', 0)} complete / {states.get('PRUNED', 0)} pruned / "
                    f"{states.get('FAIL', 0)} failed, {run.seconds:.1f} s",
                    flush=True,
                )

    print("\nper trial, epochs run (trial number order):")
    for (seed, name), run in sorted(runs.items()):
        epochs = " ".join(str(t.epochs) for t in sorted(run.result.trials, key=lambda t: t.number))
        print(f"  seed {seed} {name:18s} {epochs}")

    rows = []
    verdicts: dict[str, list[bool]] = {name: [] for name in args.pruners}
    for seed in args.seeds:
        base = runs[seed, "none"]
        for name in variants:
            run = runs[seed, name]
            ratio = base.epochs / run.epochs if run.epochs else float("inf")
            delta = None if run.best is None or base.best is None else 100 * (run.best - base.best)
            picked, picked_base = run.best_test, base.best_test
            test_delta = None if picked is None or picked_base is None else 100 * (picked - picked_base)
            met = "-"
            if name != "none":
                goal = GOALS.get(name.partition(":")[0], EPOCH_GOAL)
                ok = ratio >= goal and delta is not None and delta >= -100 * BEST_TOLERANCE
                verdicts[name].append(ok)
                met = "met" if ok else "NOT met"
            states = run.states()
            rows.append(
                [
                    seed,
                    name,
                    f"{states.get('COMPLETE', 0)}/{states.get('PRUNED', 0)}",
                    run.epochs,
                    f"{ratio:.2f}x",
                    _fmt(run.best),
                    "-" if delta is None else f"{delta:+.2f}",
                    _fmt(run.best_test),
                    "-" if test_delta is None else f"{test_delta:+.2f}",
                    f"{run.seconds:.1f}",
                    f"{base.seconds / run.seconds:.2f}x",
                    met,
                ]
            )
    print("\nSUMMARY (tracking off; best = best COMPLETE trial's final validation accuracy)")
    print(
        table(
            [
                "seed",
                "pruner",
                "complete/pruned",
                "epochs",
                "none/this epochs",
                "best val acc",
                "vs none (points)",
                "pick's test acc",
                "vs none (points)",
                "wall s",
                "none/this wall",
                f"goal (>= {EPOCH_GOAL:g}x, asha {GOALS['asha']:g}x; within {100 * BEST_TOLERANCE:.1f} pt)",
            ],
            rows,
        )
    )
    print()
    for name in args.pruners:
        total_none = sum(runs[s, "none"].epochs for s in args.seeds)
        total = sum(runs[s, name].epochs for s in args.seeds)
        deltas = [100 * ((runs[s, name].best or 0.0) - (runs[s, "none"].best or 0.0)) for s in args.seeds]
        tests = [100 * ((runs[s, name].best_test or 0.0) - (runs[s, "none"].best_test or 0.0)) for s in args.seeds]
        print(
            f"{name}: {total_none} / {total} epochs over {len(args.seeds)} seed(s) = {total_none / total:.2f}x fewer; "
            f"median best vs none {median(deltas):+.2f} points (pick's test {median(tests):+.2f}); goal met in "
            f"{sum(verdicts[name])} of {len(verdicts[name])} seed(s)"
        )
    return 0


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


if __name__ == "__main__":
    raise SystemExit(main())
