"""Create or resume a study: storage, sampler, pruner, and what the study records about itself.

TPE runs with ``constant_liar`` on shared storages unless the file says otherwise, so samplers
account for trials still running in other workers.
"""

from __future__ import annotations

import contextlib
import hashlib
import types
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from mnist_sweep.contract import ATTR_DATASET, ATTR_OBJECTIVE_METRIC, ATTR_QUESTION, ATTR_SPACE_FILE
from mnist_sweep.errors import ConfigError, MnistSweepError, StorageError, first_line
from mnist_sweep.stores import open_storage, redact_url, storage_kind, worker_id

if TYPE_CHECKING:
    import optuna

    from mnist_sweep.config import SearchSpace
    from mnist_sweep.stores import StudyMutex


def create_or_load_study(
    space: SearchSpace, storage: str, *, heartbeat: bool = False, mutex: StudyMutex | None = None
) -> optuna.Study:
    """Create the study ``space`` describes, or resume it; its direction must not change.

    ``mutex``: hold the study's lock meanwhile (workers starting together race to create it).
    """
    kind = storage_kind(storage)
    study, _ = open_study(space, storage, heartbeat=heartbeat, shared=kind != "sqlite", mutex=mutex)
    return study


def sampler_seed(seed: int | None, *, created: int, worker: str | None = None) -> int | None:
    """This invocation's sampler seed: the file's on a new study, else derived from the study's state.

    Every invocation used to seed its sampler with the file's ``seed``, so a resumed study
    replayed its random stream from the start and drew the trials it had already run. Mixing
    in how many trials the study holds makes a resume draw new points while the same commands
    on a fresh storage still give the same trials; a worker also mixes in its identity, so
    workers starting together draw different points. An unseeded file stays unseeded.
    """
    if seed is None:
        return None
    if created == 0 and worker is None:
        return seed
    digest = hashlib.sha256(f"{seed}:{created}:{worker or ''}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def make_sampler(
    space: SearchSpace, *, shared: bool, created: int = 0, worker: str | None = None
) -> optuna.samplers.BaseSampler:
    """The file's sampler, seeded for this invocation (:func:`sampler_seed`).

    TPE gets ``constant_liar`` on a shared storage unless the file says. QMC keeps the file's
    seed, because Optuna stores its position in the sequence per seed and continues it; only
    its independent sampler (categorical params) is reseeded. Grid keeps the file's seed in
    every process: its seed shuffles the grid, and the ``grid_id`` each trial stores means a
    point only in that order, so two workers with different shuffles drew the same point
    under different ids (and the grid then ended a point short). Its trials are distinct
    without a reseed: the first ones take the grid ids in trial-number order, later ones skip
    the ids other trials hold.
    """
    import optuna

    config = space.sampler
    options = dict(config.options)
    if shared and config.name == "tpe" and "constant_liar" not in options:
        options["constant_liar"] = True
    seed = sampler_seed(config.seed, created=created, worker=worker)
    if config.name == "qmc":
        if "independent_sampler" not in options:
            options["independent_sampler"] = optuna.samplers.RandomSampler(seed=seed)
        seed = config.seed
    elif config.name == "grid":
        seed = config.seed
    return replace(space, sampler=replace(config, seed=seed, options=types.MappingProxyType(options))).make_sampler()


def space_size(space: SearchSpace) -> int | None:
    """How many distinct param sets ``space`` can sample (an upper bound); None when unbounded."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    total = 1
    for param in space.params:
        d = param.distribution
        if isinstance(d, CategoricalDistribution):
            count = len(d.choices)
        elif isinstance(d, IntDistribution):
            count = (d.high - d.low) // d.step + 1
        elif isinstance(d, FloatDistribution) and d.step is not None:
            count = round((d.high - d.low) / d.step) + 1
        else:
            return None
        total *= count ** (64 if param.per_layer else 1)
    return total


def open_study(
    space: SearchSpace,
    storage: str,
    *,
    heartbeat: bool,
    shared: bool,
    worker: bool = False,
    on_lost_trial: Callable[[optuna.Study, optuna.trial.FrozenTrial], None] | None = None,
    mutex: StudyMutex | None = None,
) -> tuple[optuna.Study, optuna.storages.BaseStorage]:
    import optuna

    # Workers starting together would race to create the tables and the study.
    with mutex.hold() if mutex is not None else contextlib.nullcontext():
        backend = open_storage(storage, heartbeat=heartbeat, on_lost_trial=on_lost_trial)
        try:
            study = optuna.create_study(
                study_name=space.study_name,
                storage=backend,
                sampler=make_sampler(space, shared=shared),
                pruner=space.make_pruner(),
                direction=space.objective.direction,
                load_if_exists=True,
            )
        except MnistSweepError:
            raise
        except Exception as exc:
            raise StorageError(f"storage {redact_url(storage)}: {first_line(exc)}") from None
    created = len(study.get_trials(deepcopy=False))
    if created or worker:
        study.sampler = make_sampler(space, shared=shared, created=created, worker=worker_id() if worker else None)
    wanted = (
        optuna.study.StudyDirection.MAXIMIZE
        if space.objective.direction == "maximize"
        else (optuna.study.StudyDirection.MINIMIZE)
    )
    if study.direction != wanted:
        raise ConfigError(
            f"study {space.study_name!r} exists in {redact_url(storage)} with direction "
            f"{study.direction.name.lower()}, but the file asks to {space.objective.direction}",
            source=space.source,
            key="objective.direction",
        )
    attrs = study.user_attrs
    recorded = attrs.get(ATTR_DATASET)
    if recorded and recorded != space.dataset:
        raise ConfigError(
            f"study {space.study_name!r} was run on {recorded}; the file now says {space.dataset}",
            source=space.source,
            key="dataset",
        )
    for key, value in {
        ATTR_DATASET: space.dataset,
        ATTR_OBJECTIVE_METRIC: space.objective.metric,
        ATTR_QUESTION: space.question or "",
        ATTR_SPACE_FILE: str(space.source),
    }.items():
        if attrs.get(key) != value:
            study.set_user_attr(key, value)
    return study, backend


def tell(
    study: optuna.Study,
    trial: optuna.Trial,
    value: float | None = None,
    *,
    state: optuna.trial.TrialState | None = None,
) -> tuple[optuna.trial.FrozenTrial, bool]:
    """``study.tell`` (skipping a trial already finished); (the trial now, whether the grid is spent).

    GridSampler calls ``study.stop()`` from ``after_trial`` once every point is taken, which
    raises outside ``optimize()``; Optuna stores the trial's state before that, so the tell
    happened and the worker only learns that the grid has nothing left.
    """
    try:
        return study.tell(trial, value, state=state, skip_if_finished=True), False
    except RuntimeError as exc:
        if "Study.stop" not in str(exc):
            raise
        return study.get_trials(deepcopy=False)[trial.number], True
