"""One parent-run lifecycle for ``run``, ``worker``, ``run --workers N`` and ``nightly``.

Each invocation of ``mnist-sweep run`` has one parent MLflow run; the trials it runs nest
under it, and the workers of one invocation join it. The parent run is recorded in the study
(so later workers find it) together with its owner, ``host:pid``: when the owner dies without
ending it, the next invocation ends it FAILED (:func:`mnist_sweep.sweep._recovery.end_dead_parents`).
At the end, the owner logs the study plots, a CSV of every trial and the best trial.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from mnist_sweep.contract import (
    ATTR_EXPERIMENT,
    ATTR_PARAMS,
    ATTR_PARENT_OWNER,
    ATTR_PARENT_RUN,
    ATTR_RUN_ID,
    ATTR_TRACKING_URI,
    ROLE_STUDY,
    TAG_BEST_PARAMS,
    TAG_BEST_RUN_ID,
    TAG_BEST_TRIAL,
    TAG_DATASET,
    TAG_N_TRIALS,
    TAG_OBJECTIVE,
    TAG_OWNER,
    TAG_PRUNER,
    TAG_QUESTION,
    TAG_ROLE,
    TAG_SAMPLER,
    TAG_STORAGE,
    TAG_STUDY,
)
from mnist_sweep.errors import TrackingError
from mnist_sweep.stores import describe, is_transient, redact_url, worker_id
from mnist_sweep.sweep._calls import Calls, ResilientRun
from mnist_sweep.sweep._results import trials_frame

if TYPE_CHECKING:
    import optuna

    from mnist_sweep.config import SearchSpace
    from mnist_sweep.stores import StudyMutex
    from mnist_sweep.tracking import NullRun, RunHandle, Tracker

log = logging.getLogger(__name__)

Mode = Literal["create", "reopen", "join", "join_study"]
RunLike = Any  # RunHandle | NullRun | ResilientRun: the same logging methods


def study_tags(space: SearchSpace, storage: str) -> dict[str, Any]:
    """The parent run's tags that describe the study and its source (no TensorFlow needed to compute them)."""
    from mnist_sweep.tracking import source_tags

    return {
        **source_tags(),
        TAG_STUDY: space.study_name,
        TAG_ROLE: ROLE_STUDY,
        TAG_DATASET: space.dataset,
        TAG_STORAGE: redact_url(storage),
        TAG_SAMPLER: space.sampler.name,
        TAG_PRUNER: space.pruner.name,
        TAG_OBJECTIVE: f"{space.objective.direction} {space.objective.metric}",
        TAG_N_TRIALS: space.budget.n_trials,
        TAG_QUESTION: space.question,
    }


def record_parent_run(
    study: optuna.Study, run_id: str, *, experiment: str, tracking_uri: str, owner: str | None = None
) -> None:
    """Note the study's parent MLflow run (and who owns it) in the study, so later workers nest under it."""
    study.set_user_attr(ATTR_PARENT_RUN, run_id)
    study.set_user_attr(ATTR_EXPERIMENT, experiment)
    study.set_user_attr(ATTR_TRACKING_URI, redact_url(tracking_uri))
    study.set_user_attr(ATTR_PARENT_OWNER, owner or "")


def log_space(run: RunLike, space: SearchSpace) -> None:
    """The search-space file and its parsed form, into the parent run."""
    run.log_text(space.text, f"config/{Path(str(space.source)).name or 'space.yaml'}")
    run.log_text(json.dumps(space.to_dict(), indent=2, default=str), "config/space.json")


def log_study_artifacts(run: RunLike, study: optuna.Study, space: SearchSpace) -> None:
    """Study plots, a CSV of all trials, the best trial: into the parent run."""
    from mnist_sweep.display import plots
    from mnist_sweep.tracking import scratch_dir

    for name, figure in plots.study_plots(study).items():
        run.log_figure(figure, f"study/{name}.png")
    with scratch_dir() as tmp:
        csv_path = tmp / "trials.csv"
        trials_frame(study).to_csv(csv_path, index=False)
        run.log_file(csv_path, "study")
    try:
        best = study.best_trial
    except ValueError:
        return
    run.log_metrics({f"best_{space.objective.metric}": float(best.value or 0.0)})
    run.set_tags(
        {
            TAG_BEST_TRIAL: best.number,
            TAG_BEST_RUN_ID: best.user_attrs.get(ATTR_RUN_ID, ""),
            TAG_BEST_PARAMS: json.dumps(best.user_attrs.get(ATTR_PARAMS, best.params), default=str),
        }
    )


class ParentRun:
    """The invocation's parent run: opened, recorded in the study, closed with the study's artifacts.

    Modes: ``create`` a new run (``run``, ``run --workers N``, ``nightly``); ``reopen`` a
    given run and own it (``nightly`` resuming a night's study); ``join`` a given run
    without ending it (the workers of one invocation); ``join_study``: the study's recorded
    parent run when it lives in the same store, else a new one (``mnist-sweep worker``).
    """

    def __init__(
        self,
        *,
        study: optuna.Study,
        space: SearchSpace,
        tracker: Tracker,
        calls: Calls,
        storage_url: str,
        lineage: Mapping[str, Any],
        extra_tags: Mapping[str, Any] | None = None,
        mutex: StudyMutex | None = None,
    ) -> None:
        self.study = study
        self.space = space
        self.tracker = tracker
        self.calls = calls
        self.lineage = dict(lineage)
        self.tags = {**lineage, **(extra_tags or {}), **study_tags(space, storage_url)}
        self.mutex = mutex
        self.owner = worker_id()
        self.owns = False
        self.run: RunLike = None

    def open(
        self,
        stack: contextlib.ExitStack,
        *,
        mode: Mode,
        run_id: str | None = None,
        nested_under: str | None = None,
        name: str | None = None,
    ) -> RunLike:
        """Open the parent run for ``mode``; it ends (with the status that matches) when ``stack`` closes."""
        from mnist_sweep.tracking import NullRun, RunHandle

        tracker = self.tracker
        name = name or f"{self.space.study_name} {time.strftime('%Y-%m-%d %H:%M:%S')}"
        if mode == "join":
            if not tracker.enabled or not run_id:
                self.run = NullRun()
                return self.run
            self.run = ResilientRun(RunHandle(tracker.client, run_id, tracker.experiment_id), self.calls.tracking)
            self.run.set_tags(self.lineage)  # what the process that created it could not know
            return self.run
        created = mode == "create"
        if mode == "join_study":
            opened, created = self.calls.storage(lambda: self._join_study(stack, name))
        else:
            owned_tags = {**self.tags, TAG_OWNER: self.owner}
            opened = self.calls.tracking(
                lambda: stack.enter_context(
                    tracker.run(name=name, tags=owned_tags, run_id=run_id, parent_run_id=nested_under)
                )
            )
            if run_id is not None:
                opened.set_tags({TAG_OWNER: self.owner})
            if opened.run_id:
                self.calls.storage(lambda: self._record(opened.run_id))
        self.owns = True
        self.run = ResilientRun(opened, self.calls.tracking)
        if created:
            log_space(self.run, self.space)
        return self.run

    def _join_study(self, stack: contextlib.ExitStack, name: str) -> tuple[RunHandle | NullRun, bool]:
        tracker = self.tracker
        owned_tags = {**self.tags, TAG_OWNER: self.owner}
        with self.mutex.hold() if self.mutex is not None else contextlib.nullcontext():
            attrs = self.study.user_attrs
            same_store = attrs.get(ATTR_TRACKING_URI) == redact_url(tracker.tracking_uri) and (
                attrs.get(ATTR_EXPERIMENT) == tracker.experiment_name
            )
            existing = attrs.get(ATTR_PARENT_RUN) if same_store and tracker.enabled else None
            try:
                opened = stack.enter_context(tracker.run(name=name, tags=owned_tags, run_id=existing))
            except TrackingError as exc:
                if existing is None or is_transient(exc):
                    raise
                log.warning("the study's parent run %s cannot be reopened (%s): starting a new one", existing, exc)
                existing = None
                opened = stack.enter_context(tracker.run(name=name, tags=owned_tags))
            if existing is not None:
                opened.set_tags({TAG_OWNER: self.owner})
            if opened.run_id:
                self._record(opened.run_id)
            return opened, existing is None

    def _record(self, run_id: str) -> None:
        record_parent_run(
            self.study,
            run_id,
            experiment=self.tracker.experiment_name,
            tracking_uri=self.tracker.tracking_uri,
            owner=self.owner,
        )

    def close(self, *, failing: bool) -> None:
        """The study's plots, CSV and best trial, when this invocation owns the parent run.

        While an error is on its way out (``failing``) nothing here may hide it: no retries,
        and problems only logged.
        """
        if not self.owns or self.run is None or not self.tracker.enabled:
            return
        run = self.run.raw if failing and isinstance(self.run, ResilientRun) else self.run
        try:
            log_study_artifacts(run, self.study, self.space)
        except Exception as exc:
            if not failing:
                raise
            log.warning("could not log the study summary: %s", describe(exc))
