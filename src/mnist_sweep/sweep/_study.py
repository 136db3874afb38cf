"""Create or resume a study: storage, sampler, pruner, and what the study records about itself.

TPE runs with ``constant_liar`` on shared storages unless the file says otherwise, so samplers
account for trials still running in other workers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from mnist_sweep.contract import ATTR_DATASET, ATTR_OBJECTIVE_METRIC, ATTR_QUESTION, ATTR_SPACE_FILE
from mnist_sweep.errors import ConfigError, MnistSweepError, StorageError, first_line
from mnist_sweep.stores import open_storage, redact_url, storage_kind

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


def _make_sampler(space: SearchSpace, *, shared: bool, worker: bool) -> optuna.samplers.BaseSampler:
    """The file's sampler; TPE with ``constant_liar`` on a shared storage unless the file says.

    Workers reseed it (as Optuna does for ``n_jobs > 1``): with one seed, every worker would
    draw the same sequence and train the same params.
    """
    import types
    from dataclasses import replace

    config = space.sampler
    if shared and config.name == "tpe" and "constant_liar" not in config.options:
        options = types.MappingProxyType({**config.options, "constant_liar": True})
        space = replace(space, sampler=replace(config, options=options))
    sampler = space.make_sampler()
    if worker:
        sampler.reseed_rng()
    return sampler


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
                sampler=_make_sampler(space, shared=shared, worker=worker),
                pruner=space.make_pruner(),
                direction=space.objective.direction,
                load_if_exists=True,
            )
        except MnistSweepError:
            raise
        except Exception as exc:
            raise StorageError(f"storage {redact_url(storage)}: {first_line(exc)}") from None
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
