"""Does a configuration's rank at asha's rungs predict its rank after the last epoch?

``bench/pruning.py`` compares whole sweeps, so two things move at once: the promotion rule, and
the configurations TPE samples once it sees paused trials instead of finished ones. This script
takes the sampler out. For each seed it runs the unpruned sweep of ``bench/pruning.py`` (every
configuration trained all ``--epochs``, so every curve is known at every epoch), then replays
promotion rules on those fixed curves, in the order the configurations arrived:

- ``sync``: synchronous successive halving: every configuration to the first rung, the top
  ``n // eta`` of each rung on to the next (the count ``promotion_quota`` keeps);
- ``sync, top k at the last rung``: the same with ``k`` configurations finishing;
- ``asha`` and ``asha, promotion_quota``: :func:`mnist_sweep.sweep._asha.promotable`, the rule the
  engine runs, with one worker (each ask promotes first, else takes the next configuration).

For each rule: the epochs it trains, and the best final validation accuracy among the
configurations it finishes against the best of all of them (what ``bench/pruning.py``'s goal
compares), with the test accuracy of each pick. It also prints where the configuration that is
best after the last epoch stood at each rung, and the rank correlation (Spearman) of the
configurations' values at each rung with their final values.

    .venv/bin/python bench/rung_ranking.py [--seeds 0 1 2 3] [--trials 20] [--epochs 8] [--limit 10000]
    .venv/bin/python bench/rung_ranking.py --whole-eval       # validation and test 10,000 each
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import default_data_dir, machine_line, quiet_logs, run_timed, table  # bench/ is on sys.path
from pruning import BEST_TOLERANCE, sweep_space


@dataclass(frozen=True)
class Curve:
    """One configuration of the unpruned sweep: validation accuracy per epoch, and its test accuracy."""

    number: int
    values: dict[int, float]
    test: float | None


@dataclass(frozen=True)
class Outcome:
    epochs: int
    finished: list[int]  # trial numbers of the configurations that reached the last epoch


def spearman(xs: list[float], ys: list[float]) -> float:
    """Rank correlation (ties broken by order: the values are accuracies on thousands of images)."""
    import numpy as np

    rx, ry = np.argsort(np.argsort(xs)), np.argsort(np.argsort(ys))
    return float(np.corrcoef(rx, ry)[0, 1])


def synchronous(curves: list[Curve], rungs: list[int], eta: int, last_top: int | None = None) -> Outcome:
    """Successive halving: all to the first rung, then the top ``n // eta`` (``last_top`` at the last rung)."""
    alive, epochs = list(curves), rungs[0] * len(curves)
    for position, rung in enumerate(rungs[:-1]):
        keep = last_top if last_top is not None and position == len(rungs) - 2 else len(alive) // eta
        alive = sorted(alive, key=lambda c: c.values[rung], reverse=True)[: max(keep, 1)]
        epochs += (rungs[position + 1] - rung) * len(alive)
    return Outcome(epochs, [c.number for c in alive])


def asha_replay(curves: list[Curve], rungs: Any) -> Outcome:
    """The engine's promotion rule (``_asha.promotable``) on fixed curves, one worker, arrival order."""
    import optuna

    from mnist_sweep.contract import ATTR_CHECKPOINT, ATTR_PARAMS_KEY, ATTR_PAUSED_AT, ATTR_PROMOTION_OF
    from mnist_sweep.sweep import _asha

    by_number = {c.number: c for c in curves}
    study = optuna.create_study(direction="maximize")
    dist: dict[str, optuna.distributions.BaseDistribution] = {
        "n": optuna.distributions.IntDistribution(0, max(by_number))
    }
    stops = rungs.epochs
    epochs, finished = 0, []

    def add(curve: Curve, upto: int, continues: optuna.trial.FrozenTrial | None) -> None:
        attrs: dict[str, Any] = {ATTR_PARAMS_KEY: str(curve.number), ATTR_CHECKPOINT: f"c{curve.number}"}
        if continues is not None:
            attrs[ATTR_PROMOTION_OF] = continues.number
        values = {e: v for e, v in curve.values.items() if e <= upto}
        last = upto == stops[-1]
        if not last:
            attrs[ATTR_PAUSED_AT] = upto
        study.add_trial(
            optuna.trial.create_trial(
                state=optuna.trial.TrialState.COMPLETE if last else optuna.trial.TrialState.PRUNED,
                value=values[upto],
                params={"n": curve.number},
                distributions=dist,
                intermediate_values=values,
                user_attrs=attrs,
            )
        )
        if last:
            finished.append(curve.number)

    pending = list(curves)
    while True:
        trials = study.get_trials(deepcopy=False)
        chosen = _asha.promotable(trials, rungs, maximize=True, sampling_done=not pending)
        if chosen is not None:
            at = int(chosen.user_attrs[ATTR_PAUSED_AT])
            nxt = rungs.next_stop(at)
            add(by_number[int(chosen.params["n"])], nxt, chosen)
            epochs += nxt - at
        elif pending:
            add(pending.pop(0), stops[0], None)
            epochs += stops[0]
        else:
            return Outcome(epochs, finished)


def unpruned_curves(seed: int, args: argparse.Namespace, root: Path) -> list[Curve]:
    import optuna

    space = sweep_space(
        f"ranking-seed{seed}",
        seed,
        {"name": "none"},
        trials=args.trials,
        epochs=args.epochs,
        limit=args.limit or None,
        whole_eval=args.whole_eval,
    )
    run, _ = run_timed(f"none-{seed}", space, root=root, data_dir=args.data_dir, tracking=False)
    tests = {t.number: t.test_accuracy for t in run.result.trials}
    study = optuna.load_study(study_name=run.result.study_name, storage=run.result.storage)
    return [
        Curve(t.number, {int(e): float(v) for e, v in t.intermediate_values.items()}, tests.get(t.number))
        for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
        if t.state.name == "COMPLETE" and len(t.intermediate_values) == args.epochs
    ]


def main(argv: list[str] | None = None) -> int:
    from mnist_sweep.sweep._asha import Rungs

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20, help="configurations per sweep (default 20)")
    parser.add_argument("--epochs", type=int, default=8, help="epochs of every configuration (default 8)")
    parser.add_argument("--limit", type=int, default=10000, help="training images (default 10000)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3], help="sampler seeds (default 0-3)")
    parser.add_argument("--min-resource", type=int, default=1, help="first rung, in epochs (default 1)")
    parser.add_argument("--reduction-factor", type=int, default=3, help="eta (default 3)")
    parser.add_argument("--whole-eval", action="store_true", help="validation and test whole (10,000 each)")
    parser.add_argument("--data-dir", default=default_data_dir(), help="folder holding mnist/ (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.trials < 2 or args.epochs <= args.min_resource or args.reduction_factor < 2:
        parser.error("need --trials >= 2, --epochs > --min-resource and --reduction-factor >= 2")
    plain = Rungs(args.min_resource, args.epochs, args.reduction_factor)
    quota = Rungs(args.min_resource, args.epochs, args.reduction_factor, promotion_quota=True)
    rungs, eta = plain.epochs, args.reduction_factor
    full = args.trials * args.epochs
    quiet_logs()
    print(machine_line())
    print(
        f"unpruned sweep of bench/pruning.py: {args.trials} configurations x {args.epochs} epochs, rungs {rungs}, "
        f"eta {eta}; {'validation and test whole' if args.whole_eval else f'limit {args.limit}'}; seeds {args.seeds}\n",
        flush=True,
    )
    rows, lines = [], []
    with tempfile.TemporaryDirectory(prefix="bench-ranking-") as tmp:
        for seed in args.seeds:
            curves = unpruned_curves(seed, args, Path(tmp))
            final = {c.number: c.values[args.epochs] for c in curves}
            winner = max(curves, key=lambda c: final[c.number])
            ranks = []
            for rung in rungs[:-1]:
                order = sorted(curves, key=lambda c: c.values[rung], reverse=True)
                ranks.append(f"{[c.number for c in order].index(winner.number) + 1} of {len(curves)} at epoch {rung}")
            correlations = ", ".join(
                f"epoch {r}: {spearman([c.values[r] for c in curves], list(final.values())):.2f}" for r in rungs[:-1]
            )
            lines.append(
                f"seed {seed}: best after epoch {args.epochs} is trial {winner.number} ({final[winner.number]:.4f}); "
                f"it ranked {', '.join(ranks)}. Rank correlation with the final value: {correlations}"
            )
            sync_top = len(curves) // eta
            rules = {
                "sync (quota's counts)": synchronous(curves, rungs, eta),
                **{
                    f"sync, top {k} at the last rung": synchronous(curves, rungs, eta, last_top=k)
                    for k in (3, 4)
                    if len(rungs) > 2 and k > (sync_top // eta)
                },
                "asha": asha_replay(curves, plain),
                "asha, promotion_quota": asha_replay(curves, quota),
            }
            for name, outcome in rules.items():
                picked = max((c for c in curves if c.number in outcome.finished), key=lambda c: final[c.number])
                delta = 100 * (final[picked.number] - final[winner.number])
                test_delta = None if picked.test is None or winner.test is None else 100 * (picked.test - winner.test)
                rows.append(
                    [
                        seed,
                        name,
                        outcome.epochs,
                        f"{full / outcome.epochs:.2f}x",
                        len(outcome.finished),
                        f"{final[picked.number]:.4f}",
                        f"{delta:+.2f}",
                        "-" if test_delta is None else f"{test_delta:+.2f}",
                        "yes" if delta >= -100 * BEST_TOLERANCE else "NO",
                    ]
                )
            print(lines[-1], flush=True)
    print()
    print(
        table(
            [
                "seed",
                "rule (on the unpruned sweep's curves)",
                "epochs",
                f"{full} / epochs",
                "finished",
                "best finished val",
                "vs best of all (points)",
                "pick's test vs best's (points)",
                f"within {100 * BEST_TOLERANCE:.1f} pt",
            ],
            rows,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
