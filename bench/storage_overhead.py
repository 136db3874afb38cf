"""What does a trial cost in storage alone, on SQLite, a journal file and PostgreSQL?

200 trivial trials per storage: the objective returns a number at once, no training, no MLflow.
Two loops are timed on each storage, each on a fresh study:

* ``optuna``: plain ``study.optimize`` (ask, suggest 2 params, tell) - Optuna's own floor;
* ``mnist-sweep``: this project's worker loop (``mnist_sweep.study``) with training replaced by
  a constant: the study lock, the look for lost trials, the budget count, ask, heartbeat, the
  params and worker recorded as user attributes, tell.

Both use the random sampler, so the sampler's own cost does not grow with the trials.

    .venv/bin/python bench/storage_overhead.py [--trials 200] [--postgres postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SPACE = """\
study: {study}
dataset: mnist
seed: 0
limit: 300
objective: {{metric: val_accuracy, direction: maximize}}
sampler: {{name: random, seed: 0}}
pruner: {{name: none}}
budget: {{n_trials: {n_trials}}}
fixed: {{epochs: 1, batch_size: 64}}
space:
  width: {{type: int, low: 8, high: 512}}
  learning_rate: {{type: float, low: 1.0e-5, high: 1.0e-1, log: true}}
"""


@contextlib.contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    import psycopg

    name = f"mnist_sweep_bench_{uuid.uuid4().hex[:8]}"
    conn = psycopg.connect(admin_url, connect_timeout=5, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()


def plain_optuna(url: str, n_trials: int) -> float:
    import optuna

    from mnist_sweep.stores._storage import open_storage

    study = optuna.create_study(study_name="plain", storage=open_storage(url), sampler=optuna.samplers.RandomSampler(0))

    def objective(trial: optuna.Trial) -> float:
        return trial.suggest_int("width", 8, 512) * trial.suggest_float("learning_rate", 1e-5, 1e-1, log=True)

    started = time.perf_counter()
    study.optimize(objective, n_trials=n_trials)
    return (time.perf_counter() - started) / n_trials


def sweep_loop(url: str, n_trials: int, folder: Path) -> float:
    """This project's loop, training replaced through the public trainer seam; seconds per trial."""
    from mnist_sweep.config import load_space
    from mnist_sweep.model import TrainResult
    from mnist_sweep.sweep import SweepOptions, run_sweep

    space_file = folder / f"{uuid.uuid4().hex[:6]}.yaml"
    space_file.write_text(SPACE.format(study="sweep", n_trials=n_trials))
    space = load_space(space_file)

    def instant_trainer(params: Any, dataset: Any, *, seed: int, callbacks: Any, on_epoch: Any) -> TrainResult:
        record = {"val_accuracy": float(params["width"]) * float(params["learning_rate"])}
        on_epoch(0, record)
        return TrainResult(params=dict(params.given), history=[record])

    options = SweepOptions(storage=url, tracking=False, quiet=True)
    started = time.perf_counter()
    result = run_sweep(space, options, trainer=instant_trainer)
    seconds = time.perf_counter() - started
    if result.trials_run != n_trials:
        raise SystemExit(f"{url}: ran {result.trials_run} trials, expected {n_trials}")
    return seconds / n_trials


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument(
        "--postgres",
        default=os.environ.get("MNIST_SWEEP_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="an admin URL; a throwaway database is created beside it (use '' to skip PostgreSQL)",
    )
    args = parser.parse_args(argv)
    import logging

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("mnist_sweep").setLevel(logging.ERROR)
    print(f"{args.trials} trivial trials per storage and loop; {os.cpu_count()} cores; load {os.getloadavg()[0]:.2f}")
    print(f"  {'storage':<12} {'optuna ms/trial':>16} {'mnist-sweep ms/trial':>21}")
    with tempfile.TemporaryDirectory(prefix="mnist-sweep-storage-") as tmp:
        folder = Path(tmp)
        stores: list[tuple[str, Any]] = [
            ("sqlite", lambda tag: contextlib.nullcontext(f"sqlite:///{folder / f'{tag}.db'}")),
            ("journal", lambda tag: contextlib.nullcontext(f"journal://{folder / f'{tag}.log'}")),
        ]
        if args.postgres:
            stores.append(("postgresql", lambda tag: postgres_database(args.postgres)))
        for name, make in stores:
            with make("plain") as url:
                plain = plain_optuna(url, args.trials)
            with make("sweep") as url:
                ours = sweep_loop(url, args.trials, folder)
            print(f"  {name:<12} {plain * 1000:16.1f} {ours * 1000:21.1f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
