"""What does full MLflow tracking cost a sweep? The same trials with tracking on and off.

Both sides run the same small dense sweep (a seeded TPE sampler, so both draw the same
parameters; every trial is still a random start-up trial) through ``mnist_sweep.study.run_sweep``,
each in a fresh study and fresh SQLite stores in a temporary folder. "on" is the default
``SweepOptions(tracking=True)``: parent and trial runs, params, per-epoch metric batches, learning
curves and confusion-matrix figures, the logged model, study plots and a CSV in the parent run.
"off" is ``SweepOptions(tracking=False)``. The timing covers the whole ``run_sweep`` call (data
loading included, which is the same on both sides); the MLflow schema of each new store is
created before the clock starts, since that is paid once per store, not per sweep.

An untimed warm-up of each side comes first (imports, TensorFlow start-up). Then the sides
alternate in one process, the order flipping each round (on, off | off, on | ...), and the
result is the median of the per-round ratios on / off. While the "on" side runs, the tracking
steps are timed (exclusive seconds: a step's nested steps are not counted twice), so the
report also says where the extra time goes. The ratio of process CPU time (all threads) is
reported beside the wall-time ratio: on a machine shared with other jobs it is the steadier one.

    .venv/bin/python bench/tracking_overhead.py [--rounds 3] [--trials 5] [--epochs 2] [--limit N]
    .venv/bin/python bench/tracking_overhead.py --quick
    .venv/bin/python bench/tracking_overhead.py --system-metrics   # what MLflow's system metrics add

"on" is the product's default tracking, MLflow's system metrics in every trial run included.
``--system-metrics`` compares tracking with MLflow's system metrics in every trial run ("on")
against the same tracking without them ("off"): the cost of the monitor alone.

A third side, "peer" (``--no-peer`` leaves it out), is the script a user would write by hand
for the same trials: an Optuna study whose objective opens a nested MLflow run and trains with
MLflow's Keras autolog on (``bench/_peer.py``). The goal there is "on" / "peer" <= 1.
The three sides rotate through the rounds (on, off, peer | off, peer, on | peer, on, off).
"""

from __future__ import annotations

import argparse
import functools
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import (  # bench/ is on sys.path when a script here runs
    SweepRun,
    default_data_dir,
    fresh_stores,
    init_mlflow_store,
    machine_line,
    make_space,
    median,
    quiet_logs,
    run_timed,
    table,
)

GOAL = 1.05
PEER_GOAL = 1.0


class StepTimer:
    """Exclusive wall time per named step, over functions patched in place for the benchmark."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._stack: list[float] = []  # time spent in nested steps, per open step
        self._restore: list[tuple[Any, str, Any]] = []
        self.active = False

    def wrap(self, owner: Any, attribute: str, label: str | Callable[..., str]) -> None:
        original = getattr(owner, attribute)
        timer = self

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if not timer.active:
                return original(*args, **kwargs)
            timer._stack.append(0.0)
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - started
                nested = timer._stack.pop()
                name = label if isinstance(label, str) else label(*args, **kwargs)
                timer.seconds[name] += elapsed - nested
                timer.calls[name] += 1
                if timer._stack:
                    timer._stack[-1] += elapsed

        self._restore.append((owner, attribute, original))
        setattr(owner, attribute, timed)

    def reset(self) -> dict[str, float]:
        out = dict(self.seconds)
        self.seconds.clear()
        self.calls.clear()
        return out

    def undo(self) -> None:
        for owner, attribute, original in reversed(self._restore):
            setattr(owner, attribute, original)


def _figure_label(run: Any, figure: Any, artifact_file: str) -> str:
    if artifact_file.startswith("study/"):
        return "parent run: study plots (render PNG + upload)"
    return "trial figures: render PNG + upload"


def instrument() -> StepTimer:
    """Patch the tracking steps of a sweep with timers (inactive until ``timer.active``)."""
    import mlflow.models
    import mlflow.models.utils
    from mlflow import MlflowClient

    from mnist_sweep.display import plots
    from mnist_sweep.model import _build as models
    from mnist_sweep.tracking import _runs
    from mnist_sweep.tracking._runs import RunHandle, Tracker

    timer = StepTimer()
    timer.wrap(RunHandle, "log_model", "log_model: signature + requirements")
    timer.wrap(mlflow.models.Model, "log", "log_model: mlflow save + upload")
    timer.wrap(mlflow.models.utils, "_validate_serving_input", "log_model: serving-input check")
    timer.wrap(models, "probabilities", "confusion matrix: test-set predict")
    timer.wrap(plots, "learning_curves", "learning-curve figure: draw")
    timer.wrap(plots, "confusion_matrix", "confusion-matrix figure: draw")
    timer.wrap(RunHandle, "log_figure", _figure_label)
    for name in ("log_metrics", "log_params", "set_tags"):
        timer.wrap(RunHandle, name, "metric/param/tag batches")
    timer.wrap(MlflowClient, "create_run", "runs: create + terminate")
    timer.wrap(Tracker, "_end", "runs: create + terminate")
    timer.wrap(Tracker, "_get_or_create_experiment", "experiment lookup")
    timer.wrap(Tracker, "_system_metrics", "system metrics: start + finish monitor")
    timer.wrap(_runs, "_finish", "system metrics: start + finish monitor")
    timer.wrap(RunHandle, "log_inputs", "dataset inputs")
    timer.wrap(RunHandle, "log_model_metrics", "model metrics")
    timer.wrap(plots, "study_plots", "parent run: study plots (draw)")
    timer.wrap(RunHandle, "log_text", "parent run: config text + CSV")
    timer.wrap(RunHandle, "log_file", "parent run: config text + CSV")
    return timer


_PEER_LAST: dict[str, float] = {}


def run_peer(args: argparse.Namespace, root: Path, label: str, params: list[dict[str, Any]]) -> float:
    """The hand-written sweep (``_peer.py``) over ``params`` in a fresh MLflow store; its wall seconds."""
    from _peer import peer_sweep
    from mnist_sweep.model import load_dataset

    _, tracking_uri = fresh_stores(root, label)
    init_mlflow_store(tracking_uri)
    wall, cpu, best = peer_sweep(
        params,
        lambda: load_dataset("mnist", data_dir=args.data_dir, limit=args.limit),
        epochs=args.epochs,
        seed=args.seed,
        tracking_uri=tracking_uri,
        experiment="peer",
    )
    _PEER_LAST.update(cpu=cpu, best=best)
    return wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="on/off rounds (default 3)")
    parser.add_argument("--trials", type=int, default=5, help="trials per sweep (default 5)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per trial (default 2)")
    parser.add_argument("--limit", type=int, default=None, help="training images (default: all 50,000)")
    parser.add_argument("--seed", type=int, default=0, help="sampler and training seed (default 0)")
    parser.add_argument("--data-dir", default=default_data_dir(), help="folder holding mnist/ (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="tiny settings: 1 round, 2 trials, 1 epoch, limit 1000")
    parser.add_argument(
        "--system-metrics",
        action="store_true",
        help="compare tracking with system metrics ('on') against tracking without them ('off')",
    )
    parser.add_argument("--no-peer", action="store_true", help="leave out the hand-written Optuna + autolog sweep")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.trials, args.epochs, args.limit = 1, 2, 1, 1000
    if min(args.rounds, args.trials, args.epochs) < 1:
        parser.error("--rounds, --trials and --epochs must be at least 1")

    def space(study: str, *, n_trials: int, epochs: int, limit: int | None) -> Any:
        return make_space(
            study,
            space={
                "width": {"type": "categorical", "choices": [128, 256, 512]},
                "activation": {"type": "categorical", "choices": ["relu", "tanh"]},
                "learning_rate": {"type": "float", "low": 3.0e-4, "high": 3.0e-3, "log": True},
            },
            fixed={"architecture": "dense", "depth": 1, "optimizer": "rmsprop", "batch_size": 128, "epochs": epochs},
            n_trials=n_trials,
            limit=limit,
            seed=args.seed,
            sampler={"name": "tpe", "seed": args.seed},
        )

    quiet_logs()
    print(machine_line())
    data = "all 50,000 training images" if args.limit is None else f"limit {args.limit}"
    print(
        f"sweep: {args.trials} trials x {args.epochs} epochs, dense depth 1, width {{128,256,512}} x "
        f"activation {{relu,tanh}} x learning_rate log[3e-4, 3e-3], rmsprop, batch 128, {data}; "
        f"TPE seed {args.seed}; {args.rounds} rounds\n",
        flush=True,
    )
    timer = instrument()
    peer = not (args.no_peer or args.system_metrics)
    sides = {"on": True, "off": False, **({"peer": False} if peer else {})}
    # (tracking, system metrics) per side
    configs = (
        {"on": (True, True), "off": (True, False)}
        if args.system_metrics
        else {"on": (True, True), "off": (False, False)}
    )
    if args.system_metrics:
        print("comparing: on = tracking + system metrics in every trial run, off = tracking without them\n")
    with tempfile.TemporaryDirectory(prefix="bench-tracking-") as tmp:
        root = Path(tmp)
        warm = {}
        for name in configs:
            run, _ = run_timed(
                f"warmup-{name}",
                space("warmup", n_trials=1, epochs=1, limit=1000),
                root=root,
                data_dir=args.data_dir,
                tracking=configs[name][0],
                system_metrics=configs[name][1],
            )
            warm[name] = run.seconds
        if peer:
            warm_args = argparse.Namespace(**{**vars(args), "limit": 1000, "epochs": 1})
            warm["peer"] = run_peer(
                warm_args, root, "warmup-peer", [{"width": 128, "activation": "relu", "learning_rate": 1.0e-3}]
            )
        print(
            "warm-up (untimed; first use of TensorFlow, MLflow, plots, autolog): "
            + ", ".join(f"{name} {seconds_:.1f} s" for name, seconds_ in warm.items())
        )

        seconds: dict[str, list[float]] = {name: [] for name in sides}
        cpu_seconds: dict[str, list[float]] = {name: [] for name in sides}
        cpu_ratios: list[float] = []
        trial_seconds: dict[str, list[float]] = {name: [] for name in sides}
        ratios: list[float] = []
        trial_ratios: list[float] = []
        setups: list[float] = []
        steps: list[dict[str, float]] = []
        params_seen: dict[str, list[Any]] = {}
        peer_ratios: list[float] = []
        peer_cpu_ratios: list[float] = []
        peer_best: list[float] = []
        for round_number in range(1, args.rounds + 1):
            if peer:  # rotate, so that "peer" comes after an "on" side that drew the params
                shift = (round_number - 1) % 3
                order = list(sides)[shift:] + list(sides)[:shift]
            else:
                order = list(sides) if round_number % 2 else list(reversed(sides))
            runs: dict[str, SweepRun] = {}
            for name in order:
                if name == "peer":
                    seconds["peer"].append(
                        run_peer(args, root, f"r{round_number}-peer", next(iter(params_seen.values())))
                    )
                    cpu_seconds["peer"].append(_PEER_LAST["cpu"])
                    trial_seconds["peer"].append(float("nan"))
                    peer_best.append(_PEER_LAST["best"])
                    continue
                timer.active = sides[name]
                timer.reset()
                run, setup = run_timed(
                    f"r{round_number}-{name}",
                    space(f"overhead-r{round_number}", n_trials=args.trials, epochs=args.epochs, limit=args.limit),
                    root=root,
                    data_dir=args.data_dir,
                    tracking=configs[name][0],
                    system_metrics=configs[name][1],
                )
                timer.active = False
                if sides[name]:
                    steps.append(timer.reset())
                    setups.append(setup)
                runs[name] = run
                seconds[name].append(run.seconds)
                cpu_seconds[name].append(run.cpu_seconds)
                trial_seconds[name].append(run.trial_seconds)
                params_seen[f"{round_number}-{name}"] = [dict(t.params) for t in run.result.trials]
            ratios.append(runs["on"].seconds / runs["off"].seconds)
            trial_ratios.append(runs["on"].trial_seconds / runs["off"].trial_seconds)
            cpu_ratios.append(runs["on"].cpu_seconds / runs["off"].cpu_seconds)
            cells = " | ".join(
                f"{name} {runs[name].seconds:6.2f} s (CPU {runs[name].cpu_seconds:6.2f} s, "
                f"trials {runs[name].trial_seconds:6.2f} s, best {runs[name].best:.4f})"
                for name in order
                if name in runs
            )
            if peer:
                peer_ratios.append(runs["on"].seconds / seconds["peer"][-1])
                peer_cpu_ratios.append(runs["on"].cpu_seconds / cpu_seconds["peer"][-1])
                cells += (
                    f" | peer {seconds['peer'][-1]:6.2f} s (CPU {cpu_seconds['peer'][-1]:6.2f} s, "
                    f"best {peer_best[-1]:.4f}) | on/peer {peer_ratios[-1]:.3f}"
                )
            print(f"round {round_number} ({', '.join(order)}): {cells} | ratio on/off {ratios[-1]:.3f}", flush=True)
    timer.undo()

    params_seen = {k: v for k, v in params_seen.items() if not k.endswith("-peer")}
    same_params = len({repr(v) for v in params_seen.values()}) == 1
    print("\nsame trial parameters on both sides in every round:", "yes" if same_params else "NO")
    print(f"MLflow schema creation per fresh store (untimed, once per store): median {median(setups):.2f} s\n")

    rows = [
        [
            name,
            " ".join(f"{s:.2f}" for s in seconds[name]),
            f"{median(seconds[name]):.2f}",
            " ".join(f"{s:.2f}" for s in trial_seconds[name]) if name != "peer" else "-",
            f"{median(trial_seconds[name]):.2f}" if name != "peer" else "-",
            " ".join(f"{s:.2f}" for s in cpu_seconds[name]),
            f"{median(cpu_seconds[name]):.2f}",
        ]
        for name in sides
    ]
    print(
        table(
            ["tracking", "run_sweep s (raw)", "median", "sum of trial s (raw)", "median", "CPU s (raw)", "median"], rows
        )
    )
    print()
    extra = median(seconds["on"]) - median(seconds["off"])
    breakdown = []
    names = sorted({k for s in steps for k in s}, key=lambda k: -median([s.get(k, 0.0) for s in steps]))
    for name in names:
        per_round = median([s.get(name, 0.0) for s in steps])
        breakdown.append((name, per_round))
    accounted = sum(seconds_ for _, seconds_ in breakdown)
    breakdown.append(("(not covered by the timers; noise)", extra - accounted))
    breakdown.append(("total extra (median on - median off)", extra))
    off = median(seconds["off"])
    breakdown_rows = [[name, f"{s:.3f}", f"{s / args.trials:.3f}", f"{100 * s / off:.1f}%"] for name, s in breakdown]
    print("where the extra time of the 'on' side goes (median over rounds):")
    print(table(["step", "s per sweep", "s per trial", "% of off time"], breakdown_rows))
    print()
    median_ratio = median(ratios)
    verdict = "met" if median_ratio <= GOAL else "NOT met"
    summary = [
        ["run_sweep wall time", " ".join(f"{r:.3f}" for r in ratios), f"{median_ratio:.3f}", verdict],
        ["sum of trial durations", " ".join(f"{r:.3f}" for r in trial_ratios), f"{median(trial_ratios):.3f}", "-"],
        ["process CPU time", " ".join(f"{r:.3f}" for r in cpu_ratios), f"{median(cpu_ratios):.3f}", "-"],
        ["ratio of medians (wall)", "-", f"{median(seconds['on']) / median(seconds['off']):.3f}", "-"],
    ]
    if peer:
        peer_median = median(peer_ratios)
        summary += [
            [
                "on / peer, wall",
                " ".join(f"{r:.3f}" for r in peer_ratios),
                f"{peer_median:.3f}",
                f"<= {PEER_GOAL}: {'met' if peer_median <= PEER_GOAL else 'NOT met'}",
            ],
            [
                "on / peer, process CPU",
                " ".join(f"{r:.3f}" for r in peer_cpu_ratios),
                f"{median(peer_cpu_ratios):.3f}",
                "-",
            ],
        ]
    print(f"SUMMARY: tracking on / off, {args.trials} trials x {args.epochs} epochs, {data}")
    print(table(["measure", "per-round ratios", "median", f"goal <= {GOAL}"], summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
