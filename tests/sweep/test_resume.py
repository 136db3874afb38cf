"""A resumed study continues its search: it never replays the points it has already run."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from fakes import fake_trainer
from mnist_sweep.config import load_space
from mnist_sweep.contract import ATTR_RESAMPLED
from mnist_sweep.sweep import SweepOptions, run_sweep
from mnist_sweep.sweep._study import sampler_seed, space_size
from scaleout_support import cli_command, cli_env
from spaces import write_space

CONTINUOUS = """\
  learning_rate: {type: float, low: 1.0e-4, high: 1.0e-1, log: true}
  width: {type: int, low: 8, high: 64}
"""


def sweep_twice(folder: Path, sampler: str, space: str | None = None) -> list[Any]:
    """2 trials, then the same file resumed to 4; the study's trials."""
    import optuna

    folder.mkdir(exist_ok=True)
    path = write_space(folder, n_trials=2, sampler=sampler, **({"space": space} if space else {}))
    options = SweepOptions(
        storage=f"sqlite:///{folder / 'optuna.db'}", tracking_uri=f"sqlite:///{folder / 'mlflow.db'}", quiet=True
    )
    run_sweep(load_space(path), options, trainer=fake_trainer())
    run_sweep(load_space(path).with_overrides(n_trials=4), options, trainer=fake_trainer())
    return optuna.load_study(study_name="tiny", storage=options.storage).get_trials(deepcopy=False)


@pytest.mark.parametrize("sampler", ["tpe", "random", "qmc"])
def test_resume_draws_new_points_and_replays_the_same_on_a_fresh_storage(tmp_path: Path, sampler: str) -> None:
    trials = sweep_twice(tmp_path / "a", sampler, CONTINUOUS)
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert len(complete) == 4
    assert len({tuple(sorted(t.params.items())) for t in complete}) == 4, [t.params for t in complete]
    # The resumed sampler itself drew new points: nothing had to be asked again.
    assert not [t.number for t in trials if ATTR_RESAMPLED in t.user_attrs]
    again = sweep_twice(tmp_path / "b", sampler, CONTINUOUS)
    assert [t.params for t in again] == [t.params for t in trials], "same commands, same trials"


@pytest.mark.parametrize("sampler", ["tpe", "random", "qmc"])
def test_a_small_categorical_space_is_not_repeated_while_points_remain(tmp_path: Path, sampler: str) -> None:
    trials = sweep_twice(tmp_path, sampler)  # 4 widths x 2 activations
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert len(complete) == 4
    assert len({tuple(sorted(t.params.items())) for t in complete}) == 4
    assert all(t.state.name == "FAIL" for t in trials if ATTR_RESAMPLED in t.user_attrs)


def test_duplicates_count_once_the_space_is_exhausted(tmp_path: Path) -> None:
    import optuna

    space = "  activation: {type: categorical, choices: [relu, tanh]}\n"
    path = write_space(tmp_path, n_trials=4, sampler="random", space=space)
    options = SweepOptions(
        storage=f"sqlite:///{tmp_path / 'o.db'}", tracking_uri=f"sqlite:///{tmp_path / 'm.db'}", quiet=True
    )
    result = run_sweep(load_space(path), options, trainer=fake_trainer())
    assert [t.state for t in result.trials] == ["COMPLETE"] * 4
    notes = [t.note for t in result.trials]
    assert sum("duplicate of trial" in n for n in notes) == 2, notes
    trials = optuna.load_study(study_name="tiny", storage=options.storage).get_trials(deepcopy=False)
    assert len({tuple(t.params.items()) for t in trials if t.state.name == "COMPLETE"}) == 2


def test_sampler_seed_is_derived_from_the_study_state() -> None:
    assert sampler_seed(7, created=0) == 7
    assert sampler_seed(None, created=5) is None
    assert sampler_seed(7, created=2) == sampler_seed(7, created=2) != sampler_seed(7, created=3)
    assert sampler_seed(7, created=0, worker="h:1") != sampler_seed(7, created=0, worker="h:2")


def test_space_size() -> None:
    from spaces import DEFAULT_SPACE

    def size(text: str) -> int | None:
        path = Path("s.yaml")
        write_space(Path("."), space=text, name=str(path))
        return space_size(load_space(path))

    assert size(DEFAULT_SPACE) == 8
    assert size("  width: {type: int, low: 8, high: 64, step: 8}") == 8
    assert size(CONTINUOUS) is None


@pytest.mark.slow
def test_two_workers_started_together_draw_distinct_first_trials(tmp_path: Path) -> None:
    import optuna

    storage = f"journal:///{tmp_path / 'study.log'}"
    space = "  learning_rate: {type: float, low: 1.0e-4, high: 1.0e-1, log: true}\n"
    # Trials of a few seconds and a budget of 4: the worker that loads TensorFlow first cannot take
    # every trial before the other one asks for its first.
    path = write_space(tmp_path, n_trials=4, sampler="tpe", fixed="{epochs: 4, batch_size: 16, width: 16}", space=space)
    tracking = f"sqlite:///{tmp_path / 'm.db'}"
    from mlflow import MlflowClient

    # Two processes migrating one new MLflow SQLite file at once race in alembic: create it first.
    MlflowClient(tracking).search_experiments()
    args = cli_command("worker", str(path), "--storage", storage, "--tracking-uri", tracking)
    procs = [
        subprocess.Popen(args, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    errors = [p.communicate(timeout=600)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    trials = optuna.load_study(
        study_name="tiny",
        storage=optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / "study.log"))),
    ).get_trials(deepcopy=False)
    by_worker: dict[str, list[Any]] = {}
    for t in trials:
        by_worker.setdefault(t.user_attrs["worker"], []).append(t)
    firsts = [ts[0].params["learning_rate"] for ts in by_worker.values()]
    assert len(by_worker) == 2 and len(set(firsts)) == 2, firsts


def test_grid_workers_share_one_order_so_their_trials_cover_the_grid(tmp_path: Path) -> None:
    """Workers reseed their samplers, but not the grid: its seed orders the points its trials' ids mean."""
    import optuna

    from mnist_sweep.config import load_space
    from mnist_sweep.sweep._study import make_sampler, tell

    space = load_space(write_space(tmp_path, n_trials=8, sampler="grid"))  # 4 widths x 2 activations
    storage = optuna.storages.InMemoryStorage()
    workers = [
        optuna.create_study(
            study_name="grid",
            storage=storage,
            direction="maximize",
            sampler=make_sampler(space, shared=True, worker=worker),
            load_if_exists=True,
        )
        for worker in ("vm:101", "vm:202")
    ]
    drawn = []
    for _ in range(4):  # both ask, then both tell: the two workers' trials overlap in time
        asked = [(study, study.ask()) for study in workers]
        for study, trial in asked:
            drawn.append(tuple(sorted(space.suggest(trial).items())))
            tell(study, trial, 0.5)  # the grid's last point stops the study: tell survives that
    assert len(set(drawn)) == 8, drawn
