"""The nightly job: keep searching, compare with the champion, promote; idempotent and safe.

``mnist-sweep nightly sweeps/nightly.yaml [--date YYYY-MM-DD]`` runs one *night*:

1. takes the job's lock in the shared Optuna storage (:class:`mnist_sweep.stores.JobLock`), so a second
   instance on any machine exits at once (:class:`~mnist_sweep.errors.AlreadyRunning`, exit 3);
2. for each search space, creates or resumes the night's own study ``<name>-<study>-<date>``;
   a new study first gets the champion's params and the previous night's top-k enqueued
   (warm start), then trials run until the night's budget is spent;
3. runs the promotion gate of :mod:`mnist_sweep.app._promote` on each night study, once per date:
   the decision is recorded on the study (``nightly_promotion``) and never taken again;
4. logs a report (Markdown and self-contained HTML, with PNGs: tonight's best against the
   champion, the night's learning curves, the best accuracy across nights) to a parent MLflow
   run ``nightly <date>`` tagged ``mnist_sweep.night=<date>``, reused when the date is re-run;
5. applies retention: night studies older than ``retention.nights`` are deleted from the
   storage, and trial runs (with their logged models) of nights older than
   ``retention.unregistered_models`` are deleted unless a registered model version comes from them.

Re-running a date resumes what is left of it (trials, then whichever of gate and report did not
happen) and changes nothing once the night is complete.

The file format and its checks are :mod:`mnist_sweep.config._nightly`'s.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from mnist_sweep.app._night_studies import (
    NIGHT_DATE,
    delete_old_studies,
    drop_earlier_checkpoints,
    load_existing,
    night_curves,
    seconds_spent,
    space_for_night,
    study_exists,
    summarize_night_study,
    warm_start,
)
from mnist_sweep.app._nightly_report import (
    REPORT_DIR,
    NightlyResult,
    NightStudy,
    describe_promotion,
    night_metrics,
    write_report,
)
from mnist_sweep.app._promote import promote
from mnist_sweep.config import NightlyConfig, PromotionPolicy, SearchSpace, night_study_name
from mnist_sweep.contract import (
    ATTR_NIGHTLY_DATE,
    ATTR_NIGHTLY_JOB,
    ATTR_NIGHTLY_PROMOTION,
    ATTR_NIGHTLY_WARM_START,
    ATTR_PARENT_RUN,
    NIGHT_DONE,
    NIGHT_PROMOTING,
    NIGHT_REPORTING,
    NIGHT_SWEEPING,
    ROLE_NIGHTLY,
    TAG_DATASET,
    TAG_NIGHT,
    TAG_NIGHT_PROMOTION,
    TAG_NIGHT_REPORTED,
    TAG_NIGHT_STATE,
    TAG_NIGHTLY_JOB,
    TAG_ROLE,
    TAG_STORAGE,
)
from mnist_sweep.errors import AlreadyRunning, ConfigError, DatasetMismatch, MnistSweepError, NightlyFailed, first_line
from mnist_sweep.tracking import delete_old_trial_runs

if TYPE_CHECKING:
    from mnist_sweep.display import Progress
    from mnist_sweep.stores import JobLock
    from mnist_sweep.tracking import NullRun, RunHandle, Tracker

log = logging.getLogger(__name__)
_T = TypeVar("_T")

__all__ = ["NightlyFailed", "NightlyOptions", "parse_date", "resolve_uris", "run_nightly"]


def parse_date(value: str | dt.date | None) -> dt.date:
    """``YYYY-MM-DD`` (or a date) as a date; None is today in local time."""
    if value is None:
        return dt.date.today()
    if isinstance(value, dt.date):
        return value
    if not NIGHT_DATE.match(value):
        raise ConfigError(f"must be a date like 2026-01-31, got {value!r}", key="--date")
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise ConfigError(f"{value!r} is not a calendar date: {exc}", key="--date") from None


@dataclass(frozen=True)
class NightlyOptions:
    """Where this invocation runs: the date, and overrides of the file's URIs."""

    date: str | dt.date | None = None
    storage: str | None = None
    tracking_uri: str | None = None
    data_dir: str | None = None
    quiet: bool = False


# --------------------------------------------------------------------------- the night


def run_nightly(config: NightlyConfig, options: NightlyOptions | None = None) -> NightlyResult:
    """Run (or finish) one night of ``config``: sweep, promote once, report, apply retention.

    Raises :class:`AlreadyRunning` (exit 3) while another instance holds the job's lock,
    :class:`ConfigError` (exit 2) for a bad file or flag, and :class:`NightlyFailed` (exit 1)
    when anything else stops the night; re-running the same date resumes it.
    """
    from mnist_sweep.stores import JobLock, preflight_storage, redact_url
    from mnist_sweep.tracking import preflight_tracking

    options = options or NightlyOptions()
    night = parse_date(options.date)
    storage, tracking_uri = resolve_uris(config, storage=options.storage, tracking_uri=options.tracking_uri)
    try:
        # One short contact with each server first: a wrong host or port is one line in seconds;
        # the long retry window is for outages once the night is under way.
        preflight_storage(storage)
        preflight_tracking(tracking_uri)
    except MnistSweepError as exc:
        raise NightlyFailed(f"night {night}: {exc}") from exc
    lock = JobLock(storage, f"nightly/{config.name}", ttl=config.lock_ttl, label=f"nightly job {config.name!r}")
    try:
        lock.acquire()
    except _PASSED_THROUGH:
        raise
    except MnistSweepError as exc:
        raise NightlyFailed(f"night {night}: {exc}") from exc
    result = NightlyResult(name=config.name, night=night, storage=redact_url(storage), experiment=config.name)
    if lock.taken_over is not None:
        result.taken_over_from = lock.taken_over.describe()
    try:
        _Night(config, options, night, storage=storage, tracking_uri=tracking_uri, lock=lock, result=result).run()
    except _PASSED_THROUGH:
        raise
    except MnistSweepError as exc:
        raise NightlyFailed(f"night {night}: {exc}") from exc
    finally:
        lock.release()
    return result


# Errors that keep their own exit code: 2 (a bad file or flag; a champion trained on another
# dataset than the file's spaces), 3 (already running), and 1 (already a night failure).
_PASSED_THROUGH = (ConfigError, DatasetMismatch, AlreadyRunning, NightlyFailed)


def resolve_uris(
    config: NightlyConfig, *, storage: str | None = None, tracking_uri: str | None = None
) -> tuple[str, str]:
    """(storage, tracking URI): the flag, else the environment, else the file, else the defaults."""
    from mnist_sweep.stores import default_storage, storage_kind
    from mnist_sweep.tracking import check_tracking_uri

    tracking = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or config.tracking_uri
    tracking = check_tracking_uri(tracking or "sqlite:///mlflow.db")
    url = storage or os.environ.get("MNIST_SWEEP_STORAGE") or config.storage or default_storage(tracking)
    storage_kind(url)
    return url, tracking


class _Night:
    """One invocation's state: config, date, stores, the lock, the MLflow run, the result."""

    def __init__(
        self,
        config: NightlyConfig,
        options: NightlyOptions,
        night: dt.date,
        *,
        storage: str,
        tracking_uri: str,
        lock: JobLock,
        result: NightlyResult,
    ) -> None:
        from mnist_sweep.display import Progress
        from mnist_sweep.tracking import Tracker

        self.config = config
        self.options = options
        self.night = night
        self.storage = storage
        self.tracking_uri = tracking_uri
        self.lock = lock
        self.result = result
        self.tracker: Tracker = Tracker(tracking_uri=tracking_uri, experiment=config.name)
        self.progress: Progress = Progress(total=None, quiet=options.quiet)

    def say(self, text: str) -> None:
        log.info("%s", text)
        self.progress.message(f"nightly {self.night}: {text}")

    # --- the steps ---------------------------------------------------------------------

    def run(self) -> None:
        self.tracker.check()
        if self.result.taken_over_from:
            self.say(f"took over the expired lock of {self.result.taken_over_from}")
        run_id = self._find_night_run()
        tags = {
            TAG_NIGHT: self.night.isoformat(),
            TAG_NIGHTLY_JOB: self.config.name,
            TAG_ROLE: ROLE_NIGHTLY,
            TAG_DATASET: self.config.dataset,
            TAG_STORAGE: self.result.storage,
        }
        with self.tracker.run(name=f"nightly {self.night}", tags=tags, run_id=run_id) as night_run:
            self.result.run_id = night_run.run_id or None
            if run_id is None:
                night_run.log_text(self.config.text, f"config/{Path(self.config.source).name or 'nightly.yaml'}")
            night_run.set_tags({TAG_NIGHT_STATE: NIGHT_SWEEPING})
            for space in self.config.spaces:
                self.result.studies.append(self._sweep(space, night_run))
            self.lock.check()
            night_run.set_tags({TAG_NIGHT_STATE: NIGHT_PROMOTING})
            for entry in self.result.studies:
                self._promote(entry)
            self.lock.check()
            night_run.set_tags({TAG_NIGHT_STATE: NIGHT_REPORTING})
            self._report(night_run, reused=run_id is not None)
            self.lock.check()
            self._retention()
            night_run.set_tags({TAG_NIGHT_STATE: NIGHT_DONE})

    def _mlflow(self, what: str, call: Callable[[], _T]) -> _T:
        """``call()`` against the tracking store: retried while unreachable, errors in one line."""
        from mnist_sweep.errors import TrackingError
        from mnist_sweep.stores import redact_url, with_retry

        where = f"tracking store {redact_url(self.tracking_uri)}: {what}"
        try:
            return with_retry(call, what=where, error=TrackingError)
        except MnistSweepError:
            raise
        except Exception as exc:
            raise TrackingError(f"{where}: {first_line(exc)}") from None

    def _find_night_run(self) -> str | None:
        wanted = {TAG_NIGHT: self.night.isoformat(), TAG_ROLE: ROLE_NIGHTLY}
        found = self._mlflow("finding the night's run", lambda: self.tracker.find_runs(wanted, max_results=10))
        if not found:
            return None
        if len(found) > 1:
            log.warning("several nightly runs for %s; reusing the oldest", self.night)
        return str(min(found, key=lambda r: r.info.start_time).info.run_id)

    # --- sweep ---------------------------------------------------------------------------

    def _sweep(self, space: SearchSpace, night_run: RunHandle | NullRun) -> NightStudy:
        from mnist_sweep.sweep import ParentRun, SweepOptions, create_or_load_study, finished_count, run_sweep
        from mnist_sweep.sweep._calls import Calls

        name = night_study_name(self.config.name, space.study_name, self.night)
        night_space = space_for_night(space, config=self.config, night=self.night, name=name)
        existed = study_exists(self.storage, name)
        study = create_or_load_study(night_space, self.storage)
        entry = NightStudy(space=space.source, study_name=name, created=not existed)
        if study.user_attrs.get(ATTR_NIGHTLY_JOB) != self.config.name:
            study.set_user_attr(ATTR_NIGHTLY_JOB, self.config.name)
            study.set_user_attr(ATTR_NIGHTLY_DATE, self.night.isoformat())
        if ATTR_NIGHTLY_WARM_START not in study.user_attrs:
            entry.warm_start = warm_start(
                study, space, config=self.config, storage=self.storage, tracking_uri=self.tracking_uri, night=self.night
            )
            study.set_user_attr(ATTR_NIGHTLY_WARM_START, entry.warm_start)
            self.say(f"{name}: new study, {len(entry.warm_start)} warm-start trial(s) enqueued")
        study_run = study.user_attrs.get(ATTR_PARENT_RUN)
        if not study_run and night_run.run_id:
            # The study's parent run, nested under the night's run; run_sweep reopens it on
            # every resume instead of starting another one.
            parent = ParentRun(
                study=study,
                space=night_space,
                tracker=self.tracker,
                calls=Calls(storage_url=self.storage, tracking_uri=self.tracking_uri),
                storage_url=self.storage,
                lineage={},
                extra_tags={TAG_NIGHT: self.night.isoformat()},
            )
            with contextlib.ExitStack() as stack:
                study_run = parent.open(stack, mode="create", nested_under=night_run.run_id, name=name).run_id
        counted, _, _ = finished_count(study)
        budget = night_space.budget
        left = self._seconds_left()
        if budget.n_trials is not None and counted >= budget.n_trials:
            entry.stopped_reason = f"budget of {budget.n_trials} trials already spent"
        elif left is not None and left <= 0:
            entry.stopped_reason = f"the night's {self.config.budget.timeout:g} s are spent"
        else:
            if left is not None:
                night_space = night_space.with_overrides(timeout=left)
            self.say(f"{name}: running trials ({counted} finished so far)")
            swept = run_sweep(
                night_space,
                SweepOptions(
                    storage=self.storage,
                    tracking_uri=self.tracking_uri,
                    experiment=self.config.name,
                    data_dir=self.options.data_dir,
                    quiet=self.options.quiet,
                    parent_run_id=study_run or None,
                    # Tomorrow's warm start continues these instead of training them again.
                    keep_checkpoints=self.config.warm_start.previous_top_k,
                ),
            )
            entry.trials_run = swept.trials_run
            entry.stopped_reason = swept.stopped_reason
            self._drop_earlier_checkpoints(night_space, space)
        summarize_night_study(study, entry)
        return entry

    def _seconds_left(self) -> float | None:
        """The night's wall-clock budget minus the trial time its studies have used already."""
        timeout = self.config.budget.timeout
        return None if timeout is None else timeout - seconds_spent(self.storage, self.config, self.night)

    # --- promotion -------------------------------------------------------------------------

    def _promote(self, entry: NightStudy) -> None:
        study = load_existing(self.storage, entry.study_name)
        assert study is not None
        recorded = study.user_attrs.get(ATTR_NIGHTLY_PROMOTION)
        if recorded is not None:
            entry.promotion = dict(recorded)
            self.say(f"{entry.study_name}: promotion already decided: {describe_promotion(entry.promotion)}")
            return
        self.lock.check()  # never promote without the lock
        decision = _run_gate(
            study_name=entry.study_name,
            storage=self.storage,
            tracking_uri=self.tracking_uri,
            policy=self.config.promotion,
            data_dir=self.options.data_dir,
        )
        decision["decided_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        study.set_user_attr(ATTR_NIGHTLY_PROMOTION, decision)
        entry.promotion = decision
        entry.promotion_now = True
        self.say(f"{entry.study_name}: {describe_promotion(decision)}")

    # --- report ----------------------------------------------------------------------------

    def _report(self, night_run: RunHandle | NullRun, *, reused: bool) -> None:
        if not night_run.run_id:
            return
        changed = any(s.trials_run or s.promotion_now for s in self.result.studies)
        run_id = night_run.run_id
        run = self._mlflow("reading the night's run", lambda: self.tracker.client.get_run(run_id))
        if reused and not changed and run.data.tags.get(TAG_NIGHT_REPORTED) == "true":
            self.say("nothing new tonight since the last report; report kept")
            self.result.report_logged = False
            return
        metrics = night_metrics(self.result, self.config.spaces[0].objective)
        night_run.log_metrics(metrics)
        promotion_tag = "; ".join(
            f"{s.study_name}: {describe_promotion(s.promotion)}" for s in self.result.studies if s.promotion
        )
        night_run.set_tags({TAG_NIGHT_PROMOTION: promotion_tag[:5000] or "no decision"})
        from mnist_sweep.tracking import scratch_dir

        with scratch_dir() as tmp:
            files = write_report(
                tmp,
                result=self.result,
                policy=self.config.promotion,
                history=self._history(metrics),
                histories=night_curves(self.storage, self.result),
                metric=self.config.spaces[0].objective.metric,
            )
            for path in files:
                night_run.log_file(path, REPORT_DIR)
        night_run.set_tags({TAG_NIGHT_REPORTED: "true"})
        self.result.report_logged = True
        self.say(f"report logged to MLflow run {night_run.run_id} ({REPORT_DIR}/report.html)")

    def _history(self, tonight: Mapping[str, float]) -> list[dict[str, Any]]:
        """Every night's metrics of this job, oldest first, tonight's from ``tonight``."""
        wanted = {TAG_ROLE: ROLE_NIGHTLY, TAG_NIGHTLY_JOB: self.config.name}
        runs = self._mlflow("reading earlier nights", lambda: self.tracker.find_runs(wanted, max_results=5000))
        by_night: dict[str, dict[str, Any]] = {}
        for run in runs:
            night = run.data.tags.get(TAG_NIGHT)
            if night:
                by_night[night] = dict(run.data.metrics)
        by_night[self.night.isoformat()] = dict(tonight)
        keys = ("candidate_test_accuracy", "champion_test_accuracy")
        return [{"night": night, **{k: by_night[night].get(k) for k in keys}} for night in sorted(by_night)]

    def _drop_earlier_checkpoints(self, night_space: SearchSpace, space: SearchSpace) -> None:
        """Tonight has swept and kept its own top-k checkpoints: earlier nights' kept ones have served."""
        from mnist_sweep.sweep import SweepOptions
        from mnist_sweep.sweep._engine import open_checkpoints

        store = open_checkpoints(night_space, SweepOptions(storage=self.storage))
        if store is not None:
            drop_earlier_checkpoints(self.storage, self.config.name, space, self.night, store)

    # --- retention -------------------------------------------------------------------------

    def _retention(self) -> None:
        retention = self.config.retention
        if retention.nights is not None:
            self.result.deleted_studies = delete_old_studies(
                self.storage, job=self.config.name, night=self.night, keep=retention.nights
            )
            for name in self.result.deleted_studies:
                self.say(f"retention: deleted study {name}")
        if retention.unregistered_models is not None:
            keep = retention.unregistered_models
            self.result.deleted_runs = self._mlflow(
                "deleting old trial runs",
                lambda: delete_old_trial_runs(self.tracker, job=self.config.name, night=self.night, keep=keep),
            )
            if self.result.deleted_runs:
                self.say(f"retention: deleted {self.result.deleted_runs} unregistered trial run(s) and their models")


def _run_gate(
    *, study_name: str, storage: str, tracking_uri: str, policy: PromotionPolicy, data_dir: str | None
) -> dict[str, Any]:
    """The promotion gate on one study, as a JSON-able record of the decision."""
    from mnist_sweep.app._inspect import NoCompleteTrial

    try:
        outcome = promote(
            study_name,
            storage=storage,
            tracking_uri=tracking_uri,
            data_dir=data_dir,
            model_name=policy.model_name,
            alias=policy.alias,
            min_improvement=policy.margin,
            alpha=policy.alpha,
            metric=policy.metric,
            min_robust_accuracy=policy.min_robust_accuracy,
        )
    except NoCompleteTrial as exc:  # nothing to promote tonight: a decision, not a failure
        return {"decision": "no_candidate", "promoted": False, "reason": f"not promoted: {exc}"}
    return outcome.to_dict()
