"""What the sweep benchmarks share: data folder, search spaces built in code, one sweep per fresh store.

Not a benchmark itself; the scripts beside it import it.
"""

from __future__ import annotations

import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

if TYPE_CHECKING:
    import optuna

    from mnist_sweep.config._space import SearchSpace
    from mnist_sweep.sweep import SweepResult

REPO = Path(__file__).resolve().parents[1]


def default_data_dir() -> str:
    """``$MNIST_SWEEP_DATA_DIR``, else ``../shared/datasets`` beside the repository."""
    return os.environ.get("MNIST_SWEEP_DATA_DIR") or str(REPO.parent / "shared" / "datasets")


def quiet_logs() -> None:
    """MLflow's schema notes, TensorFlow's retracing warnings and Optuna's study notes would bury the tables."""
    import mlflow
    import optuna
    import tensorflow as tf

    del mlflow  # imported first: MLflow configures its logger on import
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    tf.get_logger().setLevel(logging.ERROR)
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def machine_line() -> str:
    """Library versions, device and load: the context every figure needs."""
    import keras
    import mlflow
    import optuna
    import tensorflow as tf

    from mnist_sweep.model import runtime

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{platform.node()}: {runtime.device_description()}, load average {load}; Python "
        f"{platform.python_version()}, TensorFlow {tf.__version__}, Keras {keras.__version__}, "
        f"Optuna {optuna.__version__}, MLflow {mlflow.__version__}"
    )


def make_space(
    study: str,
    *,
    space: Mapping[str, Any],
    fixed: Mapping[str, Any],
    n_trials: int,
    limit: int | None,
    seed: int = 0,
    sampler: Mapping[str, Any] | None = None,
    pruner: Mapping[str, Any] | None = None,
    train_limit: int | None = None,
) -> SearchSpace:
    """A validated :class:`SearchSpace`, built in code (``parse_space``) instead of a YAML file.

    ``train_limit`` (instead of ``limit``) cuts only the training split.
    """
    from mnist_sweep.config._space import parse_space

    data: dict[str, Any] = {
        "study": study,
        "dataset": "mnist",
        "seed": seed,
        "limit": limit,
        **({"train_limit": train_limit} if train_limit is not None else {}),
        "objective": {"metric": "val_accuracy", "direction": "maximize"},
        "sampler": dict(sampler or {"name": "tpe"}),
        "pruner": dict(pruner or {"name": "none"}),
        "budget": {"n_trials": n_trials},
        "fixed": dict(fixed),
        "space": dict(space),
    }
    return parse_space(data, source="bench")


@dataclass
class SweepRun:
    """One ``run_sweep`` call in a fresh study and fresh stores, timed."""

    label: str
    seconds: float
    result: SweepResult
    cpu_seconds: float = 0.0  # CPU time of the whole process (all threads): steadier than wall time on a busy machine

    @property
    def epochs(self) -> int:
        return sum(t.epochs for t in self.result.trials)

    @property
    def trial_seconds(self) -> float:
        return sum(t.seconds or 0.0 for t in self.result.trials)

    @property
    def best(self) -> float | None:
        best = self.result.best
        return None if best is None else best.value

    @property
    def best_test(self) -> float | None:
        """The test accuracy of the trial picked by validation: free of the pick's selection bias."""
        best = self.result.best
        return None if best is None else best.test_accuracy

    def states(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for t in self.result.trials:
            counts[t.state] = counts.get(t.state, 0) + 1
        return counts

    def trials_to_reach(self, target: float) -> int | None:
        """How many trials the sweep asked for until one COMPLETE trial reached ``target``."""
        for position, t in enumerate(sorted(self.result.trials, key=lambda t: t.number), start=1):
            if t.state == "COMPLETE" and t.value is not None and t.value >= target:
                return position
        return None


def fresh_stores(root: Path, label: str) -> tuple[str, str]:
    """(Optuna storage URL, MLflow tracking URI) in a new folder under ``root``."""
    folder = Path(tempfile.mkdtemp(prefix=f"{label}-", dir=root))
    return f"sqlite:///{folder}/optuna.db", f"sqlite:///{folder}/mlflow.db"


def init_mlflow_store(tracking_uri: str) -> float:
    """Create the MLflow schema of a new SQLite store now; return the seconds it took."""
    from mlflow import MlflowClient

    started = time.perf_counter()
    MlflowClient(tracking_uri=tracking_uri).search_experiments(max_results=1)
    return time.perf_counter() - started


def run_timed(
    label: str,
    space: SearchSpace,
    *,
    root: Path,
    data_dir: str,
    tracking: bool,
    init_store: bool = True,
    system_metrics: bool = True,
) -> tuple[SweepRun, float]:
    """Run ``space`` in fresh stores under ``root``; return the run and the untimed store set-up seconds.

    The MLflow schema of the fresh store is created before the clock starts (when ``init_store``),
    because that is a one-time cost of a new store, not of a sweep.
    """
    from mnist_sweep.sweep import SweepOptions, run_sweep

    storage, tracking_uri = fresh_stores(root, label)
    setup = init_mlflow_store(tracking_uri) if tracking and init_store else 0.0
    options = SweepOptions(
        storage=storage,
        tracking_uri=tracking_uri,
        data_dir=data_dir,
        tracking=tracking,
        quiet=True,
        system_metrics=system_metrics,
    )
    started, cpu_started = time.perf_counter(), time.process_time()
    result = run_sweep(space, options)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return SweepRun(label, elapsed, result, cpu_seconds=cpu), setup


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain, aligned text table (numbers right-aligned)."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]

    def line(values: Sequence[str], numeric: Sequence[bool]) -> str:
        return "  ".join(v.rjust(w) if n else v.ljust(w) for v, w, n in zip(values, widths, numeric, strict=True))

    numeric = [all(_is_number(row[i]) for row in rows) if rows else False for i in range(len(headers))]
    out = [line(list(headers), numeric), "  ".join("-" * w for w in widths)]
    out += [line(r, numeric) for r in cells]
    return "\n".join(out)


def _is_number(value: Any) -> bool:
    if value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
        return True
    try:
        float(str(value).split()[0].lstrip(">").rstrip("%x"))
    except (ValueError, IndexError):
        return False
    return True


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def run_command(args: Sequence[str], *, cwd: Path, what: str, env: Mapping[str, str] | None = None) -> float:
    """Run ``mnist-sweep ARGS`` as a user would (a fresh process); its wall seconds. Exits on failure."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "mnist_sweep.cli", *args], env=env, capture_output=True, text=True, check=False, cwd=cwd
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{what} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return wall


def trial_phase(trials: Sequence[optuna.trial.FrozenTrial]) -> float:
    """Seconds from the first trial's start to the last trial's end (nan without finished trials)."""
    starts = [t.datetime_start for t in trials if t.datetime_start]
    ends = [t.datetime_complete for t in trials if t.datetime_complete]
    return (max(ends) - min(starts)).total_seconds() if starts and ends else float("nan")
