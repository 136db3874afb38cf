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

import base64
import datetime as dt
import html
import json
import logging
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from mnist_sweep.app import _promote as registry
from mnist_sweep.config import NightlyConfig, PromotionPolicy, SearchSpace, can_sample, night_study_name
from mnist_sweep.contract import (
    ATTR_HISTORY,
    ATTR_NIGHTLY_DATE,
    ATTR_NIGHTLY_JOB,
    ATTR_NIGHTLY_PROMOTION,
    ATTR_NIGHTLY_WARM_START,
    ATTR_PARENT_RUN,
    ATTR_TEST_ACCURACY,
    ATTR_WARM_START_SOURCE,
    NIGHT_DONE,
    NIGHT_PROMOTING,
    NIGHT_REPORTING,
    NIGHT_SWEEPING,
    ROLE_NIGHTLY,
    TAG_DATASET,
    TAG_MODEL_URI,
    TAG_NIGHT,
    TAG_NIGHT_PROMOTION,
    TAG_NIGHT_REPORTED,
    TAG_NIGHT_STATE,
    TAG_NIGHTLY_JOB,
    TAG_ROLE,
    TAG_STORAGE,
    TAG_STUDY,
    TAG_TRIAL_NUMBER,
)
from mnist_sweep.errors import AlreadyRunning, ConfigError, MnistSweepError, first_line
from mnist_sweep.model import PER_LAYER_WIDTH

if TYPE_CHECKING:
    import optuna

    from mnist_sweep.display import Progress
    from mnist_sweep.stores import JobLock
    from mnist_sweep.tracking import NullRun, RunHandle, Tracker

log = logging.getLogger(__name__)
_T = TypeVar("_T")

__all__ = [
    "NightlyFailed",
    "NightlyOptions",
    "NightlyResult",
    "champion_params",
    "delete_old_studies",
    "delete_old_trial_runs",
    "format_result",
    "parse_date",
    "resolve_uris",
    "run_nightly",
    "sampled_params",
    "seconds_spent",
    "write_report",
]

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

REPORT_DIR = "report"


class NightlyFailed(MnistSweepError):
    """The night did not finish (storage, tracking, data or training trouble): retry later."""

    exit_code = 1


# --------------------------------------------------------------------------- configuration


def parse_date(value: str | dt.date | None) -> dt.date:
    """``YYYY-MM-DD`` (or a date) as a date; None is today in local time."""
    if value is None:
        return dt.date.today()
    if isinstance(value, dt.date):
        return value
    if not _DATE.match(value):
        raise ConfigError(f"must be a date like 2026-01-31, got {value!r}", key="--date")
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise ConfigError(f"{value!r} is not a calendar date: {exc}", key="--date") from None


# --------------------------------------------------------------------------- results


@dataclass
class NightStudy:
    """One space's study of the night and what this invocation did with it."""

    space: str
    study_name: str
    created: bool
    warm_start: list[dict[str, Any]] = field(default_factory=list)
    trials_run: int = 0
    trials: int = 0
    complete: int = 0
    best_value: float | None = None
    best_test_accuracy: float | None = None
    best_trial: int | None = None
    stopped_reason: str | None = None
    promotion: dict[str, Any] | None = None
    promotion_now: bool = False


@dataclass
class NightlyResult:
    """What one ``mnist-sweep nightly`` invocation did."""

    name: str
    night: dt.date
    storage: str
    experiment: str
    run_id: str | None = None
    studies: list[NightStudy] = field(default_factory=list)
    report_logged: bool = False
    deleted_studies: list[str] = field(default_factory=list)
    deleted_runs: int = 0
    taken_over_from: str | None = None

    @property
    def promoted(self) -> bool:
        return any(s.promotion and s.promotion.get("promoted") for s in self.studies)


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
    from mnist_sweep.stores import JobLock, redact_url

    options = options or NightlyOptions()
    night = parse_date(options.date)
    storage, tracking_uri = resolve_uris(config, storage=options.storage, tracking_uri=options.tracking_uri)
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
_PASSED_THROUGH = (ConfigError, registry.DatasetMismatch, AlreadyRunning, NightlyFailed)


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
        client = self.tracker.client
        found = self._mlflow(
            "finding the night's run",
            lambda: client.search_runs(
                [self.tracker.experiment_id],
                filter_string=(
                    f"tags.`{TAG_NIGHT}` = '{self.night.isoformat()}' and tags.`{TAG_ROLE}` = '{ROLE_NIGHTLY}'"
                ),
                max_results=10,
            ),
        )
        if not found:
            return None
        if len(found) > 1:
            log.warning("several nightly runs for %s; reusing the oldest", self.night)
        return str(min(found, key=lambda r: r.info.start_time).info.run_id)

    # --- sweep ---------------------------------------------------------------------------

    def _sweep(self, space: SearchSpace, night_run: RunHandle | NullRun) -> NightStudy:
        from mnist_sweep.sweep import (
            SweepOptions,
            create_or_load_study,
            finished_count,
            log_space,
            record_parent_run,
            run_sweep,
            study_tags,
        )

        name = night_study_name(self.config.name, space.study_name, self.night)
        night_space = self._night_space(space, name)
        existed = _study_exists(self.storage, name)
        study = create_or_load_study(night_space, self.storage)
        entry = NightStudy(space=space.source, study_name=name, created=not existed)
        if study.user_attrs.get(ATTR_NIGHTLY_JOB) != self.config.name:
            study.set_user_attr(ATTR_NIGHTLY_JOB, self.config.name)
            study.set_user_attr(ATTR_NIGHTLY_DATE, self.night.isoformat())
        if ATTR_NIGHTLY_WARM_START not in study.user_attrs:
            entry.warm_start = self._warm_start(study, space)
            study.set_user_attr(ATTR_NIGHTLY_WARM_START, entry.warm_start)
            self.say(f"{name}: new study, {len(entry.warm_start)} warm-start trial(s) enqueued")
        study_run = study.user_attrs.get(ATTR_PARENT_RUN)
        if not study_run and night_run.run_id:
            # The study's parent run, nested under the night's run; run_sweep reopens it on
            # every resume instead of starting another one.
            tags = {**study_tags(night_space, self.storage), TAG_NIGHT: self.night.isoformat()}
            with self.tracker.run(name=name, tags=tags, parent_run_id=night_run.run_id) as run:
                study_run = run.run_id
                log_space(run, night_space)
            record_parent_run(study, study_run, experiment=self.config.name, tracking_uri=self.tracking_uri)
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
                ),
            )
            entry.trials_run = swept.trials_run
            entry.stopped_reason = swept.stopped_reason
        self._summarize(study, entry)
        return entry

    def _night_space(self, space: SearchSpace, name: str) -> SearchSpace:
        """The space as tonight runs it: the night's study and trial budget, a per-night seed.

        Reseeding with the date's day number makes nights explore different points (a fixed
        seed would replay the same startup trials every night) while a re-run of a date draws
        the same ones.
        """
        seed = (space.seed + self.night.toordinal()) % 2**32
        night_space = space.with_overrides(study_name=name, n_trials=self.config.budget.n_trials, seed=seed)
        if space.sampler.seed is None:  # an unseeded sampler stays unseeded
            night_space = replace(night_space, sampler=replace(night_space.sampler, seed=None))
        return night_space

    def _seconds_left(self) -> float | None:
        """The night's wall-clock budget minus the trial time its studies have used already."""
        timeout = self.config.budget.timeout
        return None if timeout is None else timeout - seconds_spent(self.storage, self.config, self.night)

    def _warm_start(self, study: optuna.Study, space: SearchSpace) -> list[dict[str, Any]]:
        """Enqueue the champion's params and the previous night's top-k of ``space`` into ``study``.

        Returns what was enqueued. Only new night studies get here, and ``skip_if_exists``
        keeps a resumed one from running the same params twice.
        """
        candidates: list[tuple[str, Mapping[str, Any]]] = []
        if self.config.warm_start.champion:
            champion = champion_params(self.tracking_uri, self.config.promotion, dataset=space.dataset)
            if champion is not None:
                version, params = champion
                candidates.append(
                    (f"{self.config.promotion.model_name} version {version} (@{self.config.promotion.alias})", params)
                )
        k = self.config.warm_start.previous_top_k
        if k:
            previous = self._previous_night_study(space)
            if previous is not None:
                for rank, trial in enumerate(_top_trials(previous, k), start=1):
                    candidates.append((f"{previous.study_name} #{rank} (trial {trial.number})", trial.params))
        enqueued: list[dict[str, Any]] = []
        seen: list[dict[str, Any]] = []
        for source, wanted in candidates:
            sampled = sampled_params(space, wanted)
            if not sampled or sampled in seen:
                continue
            seen.append(sampled)
            study.enqueue_trial(sampled, user_attrs={ATTR_WARM_START_SOURCE: source}, skip_if_exists=True)
            enqueued.append({"source": source, "params": sampled})
        return enqueued

    def _previous_night_study(self, space: SearchSpace) -> optuna.Study | None:
        earlier = [d for d in _night_dates(self.storage, self.config.name, space.study_name) if d < self.night]
        if not earlier:
            return None
        return _load_existing(self.storage, night_study_name(self.config.name, space.study_name, max(earlier)))

    def _summarize(self, study: optuna.Study, entry: NightStudy) -> None:
        from optuna.trial import TrialState

        trials = study.get_trials(deepcopy=False)
        entry.trials = len(trials)
        entry.complete = sum(t.state == TrialState.COMPLETE for t in trials)
        best = _top_trials(study, 1)
        if best:
            entry.best_trial = best[0].number
            entry.best_value = best[0].value
            entry.best_test_accuracy = best[0].user_attrs.get(ATTR_TEST_ACCURACY)
        if not entry.warm_start:
            entry.warm_start = list(study.user_attrs.get(ATTR_NIGHTLY_WARM_START) or [])

    # --- promotion -------------------------------------------------------------------------

    def _promote(self, entry: NightStudy) -> None:
        study = _load_existing(self.storage, entry.study_name)
        assert study is not None
        recorded = study.user_attrs.get(ATTR_NIGHTLY_PROMOTION)
        if recorded is not None:
            entry.promotion = dict(recorded)
            self.say(f"{entry.study_name}: promotion already decided: {_describe_promotion(entry.promotion)}")
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
        self.say(f"{entry.study_name}: {_describe_promotion(decision)}")

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
        metrics = self._night_metrics()
        night_run.log_metrics(metrics)
        promotion_tag = "; ".join(
            f"{s.study_name}: {_describe_promotion(s.promotion)}" for s in self.result.studies if s.promotion
        )
        night_run.set_tags({TAG_NIGHT_PROMOTION: promotion_tag[:5000] or "no decision"})
        from mnist_sweep.tracking import scratch_dir

        with scratch_dir() as tmp:
            files = write_report(
                tmp,
                result=self.result,
                policy=self.config.promotion,
                history=self._history(metrics),
                histories=self._histories(),
                metric=self.config.spaces[0].objective.metric,
            )
            for path in files:
                night_run.log_file(path, REPORT_DIR)
        night_run.set_tags({TAG_NIGHT_REPORTED: "true"})
        self.result.report_logged = True
        self.say(f"report logged to MLflow run {night_run.run_id} ({REPORT_DIR}/report.html)")

    def _night_metrics(self) -> dict[str, float]:
        """The night in numbers, logged on the nightly run (the across-nights chart reads them)."""
        objective = self.config.spaces[0].objective
        studies = self.result.studies
        metrics: dict[str, float] = {
            "promoted": float(self.result.promoted),
            "night_trials": float(sum(s.trials for s in studies)),
        }
        values = [s.best_value for s in studies if s.best_value is not None]
        if values:
            pick = max if objective.direction == "maximize" else min
            metrics[f"night_best_{objective.metric}"] = float(pick(values))
        candidates = [_score(s.promotion, "candidate") for s in studies]
        scored = [c for c in candidates if c is not None]
        if scored:
            metrics["candidate_test_accuracy"] = max(scored)
        champion = _champion_after(studies)
        if champion is not None:
            metrics["champion_test_accuracy"] = champion
        return metrics

    def _history(self, tonight: Mapping[str, float]) -> list[dict[str, Any]]:
        """Every night's metrics of this job, oldest first, tonight's from ``tonight``."""
        runs = self._mlflow(
            "reading earlier nights",
            lambda: self.tracker.client.search_runs(
                [self.tracker.experiment_id],
                filter_string=(
                    f"tags.`{TAG_ROLE}` = '{ROLE_NIGHTLY}' and tags.`{TAG_NIGHTLY_JOB}` = '{self.config.name}'"
                ),
                max_results=5000,
            ),
        )
        by_night: dict[str, dict[str, Any]] = {}
        for run in runs:
            night = run.data.tags.get(TAG_NIGHT)
            if night:
                by_night[night] = dict(run.data.metrics)
        by_night[self.night.isoformat()] = dict(tonight)
        keys = ("candidate_test_accuracy", "champion_test_accuracy")
        return [{"night": night, **{k: by_night[night].get(k) for k in keys}} for night in sorted(by_night)]

    def _histories(self) -> dict[str, list[dict[str, float]]]:
        curves: dict[str, list[dict[str, float]]] = {}
        several = len(self.result.studies) > 1
        for entry in self.result.studies:
            study = _load_existing(self.storage, entry.study_name)
            if study is None:
                continue
            space = entry.study_name.removesuffix(f"-{self.night.isoformat()}").removeprefix(f"{self.config.name}-")
            for trial in study.get_trials(deepcopy=False):
                history = trial.user_attrs.get(ATTR_HISTORY)
                if history:
                    label = f"{space} #{trial.number}" if several else f"trial {trial.number}"
                    if trial.user_attrs.get(ATTR_WARM_START_SOURCE):
                        label += " (warm start)"
                    curves[label] = list(history)
        return curves

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


# --------------------------------------------------------------------------- warm start


def seconds_spent(storage: str, config: NightlyConfig, night: dt.date) -> float:
    """Trial seconds the night's studies have used so far (start to end of each finished trial).

    Read from the storage, so a re-run of the date, even after a crash, knows what is left of
    ``budget.timeout``; the time between trials (data loading, logging) is not counted.
    """
    spent = 0.0
    for space in config.spaces:
        study = _load_existing(storage, night_study_name(config.name, space.study_name, night))
        if study is None:
            continue
        for trial in study.get_trials(deepcopy=False):
            if trial.datetime_start is not None and trial.datetime_complete is not None:
                spent += (trial.datetime_complete - trial.datetime_start).total_seconds()
    return spent


def sampled_params(space: SearchSpace, params: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``params`` that ``space`` samples, with values its distributions can draw.

    Fixed parameters come from tonight's space; a value outside tonight's range is left for the
    sampler (Optuna would otherwise warn and use it anyway).
    """
    by_name = {p.name: p for p in space.params}
    out: dict[str, Any] = {}
    for key, value in params.items():
        param = by_name.get("width") if PER_LAYER_WIDTH.match(key) else by_name.get(key)
        if param is None or (param.per_layer != bool(PER_LAYER_WIDTH.match(key))):
            continue
        if can_sample(param.distribution, value):
            out[key] = value
    return out


def _top_trials(study: optuna.Study, k: int) -> list[optuna.trial.FrozenTrial]:
    from optuna.study import StudyDirection
    from optuna.trial import TrialState

    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None]
    sign = -1.0 if study.direction == StudyDirection.MAXIMIZE else 1.0
    done.sort(key=lambda t: (sign * float(t.value or 0.0), t.number))
    return done[:k]


# --------------------------------------------------------------------------- storage helpers


def _study_exists(storage: str, name: str) -> bool:
    return _load_existing(storage, name) is not None


def _load_existing(storage: str, name: str) -> optuna.Study | None:
    import optuna

    from mnist_sweep.stores import open_storage

    try:
        return optuna.load_study(study_name=name, storage=open_storage(storage))
    except KeyError:
        return None


def _night_studies(storage: str, job: str) -> list[tuple[str, dt.date]]:
    """(study name, night) of every night study this job made, read from the study attributes."""
    import optuna

    from mnist_sweep.stores import open_storage

    out = []
    for summary in optuna.get_all_study_summaries(open_storage(storage), include_best_trial=False):
        if summary.user_attrs.get(ATTR_NIGHTLY_JOB) != job:
            continue
        night = summary.user_attrs.get(ATTR_NIGHTLY_DATE)
        if isinstance(night, str) and _DATE.match(night) and summary.study_name.endswith(f"-{night}"):
            out.append((summary.study_name, dt.date.fromisoformat(night)))
    return out


def _night_dates(storage: str, job: str, study: str) -> list[dt.date]:
    return [night for name, night in _night_studies(storage, job) if name == night_study_name(job, study, night)]


def delete_old_studies(storage: str, *, job: str, night: dt.date, keep: int) -> list[str]:
    """Delete ``job``'s night studies more than ``keep - 1`` days before ``night``; return their names.

    Only studies this job created (user attribute ``nightly_job``) are candidates; nights after
    ``night`` are never touched (re-running an old date does not delete newer nights).
    """
    import optuna

    from mnist_sweep.stores import open_storage

    doomed = sorted(name for name, date in _night_studies(storage, job) if (night - date).days >= keep)
    backend = open_storage(storage)
    for name in doomed:
        optuna.delete_study(study_name=name, storage=backend)
    return doomed


def delete_old_trial_runs(tracker: Tracker, *, job: str, night: dt.date, keep: int) -> int:
    """Delete the trial runs (and their logged models) of nights ``keep`` or more days old.

    A run whose model is a registered model version (any registered model), or that is the
    source run of one, is kept; so are the nightly and study runs that hold the reports.
    """
    client = tracker.client
    registered_runs, registered_models = _registered_sources(tracker)
    pattern = re.compile(rf"^{re.escape(job)}-.+-(\d{{4}}-\d{{2}}-\d{{2}})$")
    runs = _every_page(
        lambda token: client.search_runs(
            [tracker.experiment_id],
            filter_string=f"tags.`{TAG_TRIAL_NUMBER}` != ''",
            max_results=1000,
            page_token=token,
        )
    )
    deleted = 0
    for run in runs:
        tags = run.data.tags
        match = pattern.match(tags.get(TAG_STUDY, ""))
        if match is None or (night - dt.date.fromisoformat(match.group(1))).days < keep:
            continue
        model_uri = tags.get(TAG_MODEL_URI, "")
        model_id = model_uri.removeprefix("models:/") if model_uri.startswith("models:/m-") else None
        if run.info.run_id in registered_runs or (model_id is not None and model_id in registered_models):
            continue
        if model_id is not None:
            try:
                client.delete_logged_model(model_id)
            except Exception as exc:  # already gone, or a store without logged models
                log.debug("could not delete logged model %s: %s", model_id, exc)
        client.delete_run(run.info.run_id)
        deleted += 1
    return deleted


def _registered_sources(tracker: Tracker) -> tuple[set[str], set[str]]:
    """Run ids and logged-model ids behind every registered model version of the store."""
    runs: set[str] = set()
    models: set[str] = set()
    client = tracker.client
    for version in _every_page(lambda token: client.search_model_versions(max_results=1000, page_token=token)):
        if version.run_id:
            runs.add(version.run_id)
        model_id = getattr(version, "model_id", None)
        if model_id:
            models.add(model_id)
        source = version.source or ""
        if source.startswith("models:/m-"):
            models.add(source.removeprefix("models:/").split("/", 1)[0])
    return runs, models


def _every_page(search: Callable[[str | None], Any]) -> list[Any]:
    """All results of a paged MLflow search (``search(page_token)`` returns a PagedList)."""
    items: list[Any] = []
    token: str | None = None
    while True:
        page = search(token)
        items.extend(page)
        token = getattr(page, "token", None)
        if not token:
            return items


# --------------------------------------------------------------------------- the registry


def champion_params(tracking_uri: str, policy: PromotionPolicy, *, dataset: str) -> tuple[str, dict[str, Any]] | None:
    """(version, params) of the model holding ``policy.alias``; None when there is none to start from.

    The params are those the promotion gate recorded on the version. A champion of another
    dataset is skipped here; the gate refuses it later.
    """
    champion = registry.current_champion(policy.model_name, policy.alias, tracking_uri=tracking_uri)
    if champion is None:
        return None
    if champion.dataset and champion.dataset != dataset:
        log.warning("%s@%s is a %s model; no warm start from it", policy.model_name, policy.alias, champion.dataset)
        return None
    if not champion.params:
        log.warning("%s version %s records no params; no warm start from it", policy.model_name, champion.version)
        return None
    return champion.version, dict(champion.params)


def _run_gate(
    *, study_name: str, storage: str, tracking_uri: str, policy: PromotionPolicy, data_dir: str | None
) -> dict[str, Any]:
    """registry.py's promotion gate on one study, as a JSON-able record of the decision."""
    from mnist_sweep.app._inspect import NoCompleteTrial

    try:
        outcome = registry.promote(
            study_name,
            storage=storage,
            tracking_uri=tracking_uri,
            data_dir=data_dir,
            model_name=policy.model_name,
            alias=policy.alias,
            min_improvement=policy.margin,
        )
    except NoCompleteTrial as exc:  # nothing to promote tonight: a decision, not a failure
        return {"decision": "no_candidate", "promoted": False, "reason": f"not promoted: {exc}"}
    return outcome.to_dict()


def _describe_promotion(decision: Mapping[str, Any] | None) -> str:
    if not decision:
        return "no decision"
    return str(decision.get("reason") or decision.get("decision") or "no decision")


def _score(decision: Mapping[str, Any] | None, who: str) -> float | None:
    """The gate's test accuracy of the ``candidate`` or the ``champion`` in a recorded decision."""
    value = (decision or {}).get(f"{who}_score")
    return None if value is None else float(value)


def _champion_after(studies: Sequence[NightStudy]) -> float | None:
    """The alias holder's test accuracy after tonight's gates (the last decision that knows it)."""
    score = None
    for entry in studies:
        decision = entry.promotion or {}
        if decision.get("promoted"):
            score = _score(decision, "candidate")
        elif _score(decision, "champion") is not None:
            score = _score(decision, "champion")
    return score


# --------------------------------------------------------------------------- the report


def write_report(
    folder: Path,
    *,
    result: NightlyResult,
    policy: PromotionPolicy,
    history: Sequence[Mapping[str, Any]],
    histories: Mapping[str, Sequence[Mapping[str, float]]],
    metric: str,
) -> list[Path]:
    """The night's PNGs, ``report.md`` and a self-contained ``report.html`` in ``folder``."""
    from mnist_sweep.display import plots

    folder.mkdir(parents=True, exist_ok=True)
    night = result.night.isoformat()
    labels: list[str] = []
    values: list[float] = []
    before = next((s.promotion for s in result.studies if _score(s.promotion, "champion") is not None), None)
    if before is not None:
        labels.append(f"@{policy.alias} (version {before.get('champion_version')})")
        values.append(float(before["champion_score"]))
    several = len(result.studies) > 1
    for entry in result.studies:
        score = _score(entry.promotion, "candidate")
        if score is not None:
            trial = (entry.promotion or {}).get("trial")
            space = entry.study_name.removeprefix(f"{result.name}-").removesuffix(f"-{night}")
            labels.append(f"{space + ' ' if several else ''}tonight's best (trial {trial})")
            values.append(score)
    pngs = {
        "tonight_vs_champion.png": plots.bar_comparison(
            labels,
            values,
            ylabel=f"{policy.metric} (held-out test set)",
            title=f"Tonight's best vs the champion, {night}",
        ),
        "learning_curves.png": plots.curves_overlay(
            histories, metric=metric, title=f"The night's learning curves ({metric}), {night}"
        ),
        "best_over_time.png": plots.best_over_time(
            [row["night"] for row in history],
            {
                "the night's best": [row.get("candidate_test_accuracy") for row in history],
                f"@{policy.alias} after the night": [row.get("champion_test_accuracy") for row in history],
            },
            ylabel=policy.metric,
            title=f"Best {policy.metric.replace('_', ' ')} across nights ({result.name})",
        ),
    }
    files = [plots.save(figure, folder / name) for name, figure in pngs.items()]
    markdown = report_markdown(result, policy=policy, metric=metric, images=list(pngs))
    md_path = folder / "report.md"
    md_path.write_text(markdown, encoding="utf-8")
    html_path = folder / "report.html"
    html_path.write_text(_markdown_page_as_html(result, markdown, folder, list(pngs)), encoding="utf-8")
    return [md_path, html_path, *files]


def report_markdown(result: NightlyResult, *, policy: PromotionPolicy, metric: str, images: Sequence[str]) -> str:
    """The night in Markdown: the studies, the promotion decisions, the warm start, the images."""
    lines = [
        f"# Nightly sweep {result.night.isoformat()} ({result.name})",
        "",
        f"Storage `{result.storage}`, MLflow experiment `{result.experiment}`, run `{result.run_id}`.",
        f"Promotion gate: {policy.metric} on the held-out test set, better by at least {policy.margin:g}, "
        f"into `{policy.model_name}@{policy.alias}`.",
        "",
        f"| study | trials (complete) | run now | warm start | best {metric} | best trial | its test accuracy |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in result.studies:
        lines.append(
            f"| `{s.study_name}` | {s.trials} ({s.complete}) | {s.trials_run} | {len(s.warm_start)} | "
            f"{_fmt(s.best_value)} | {'-' if s.best_trial is None else s.best_trial} | {_fmt(s.best_test_accuracy)} |"
        )
    lines += ["", "## Promotion", ""]
    lines += [f"- `{s.study_name}`: {_describe_promotion(s.promotion)}" for s in result.studies]
    warm = [(s, item) for s in result.studies for item in s.warm_start]
    if warm:
        lines += ["", "## Warm start", ""]
        lines += [f"- `{s.study_name}`: {item['source']}: `{json.dumps(item['params'])}`" for s, item in warm]
    lines.append("")
    for name in images:
        lines += [f"![{name.removesuffix('.png').replace('_', ' ')}]({name})", ""]
    return "\n".join(lines)


def _markdown_page_as_html(result: NightlyResult, markdown: str, folder: Path, images: Sequence[str]) -> str:
    """A self-contained HTML page (images inlined), so MLflow's artifact viewer shows it whole."""
    body: list[str] = []
    table: list[list[str]] = []
    for line in markdown.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if not all(set(c) <= {"-"} for c in cells):
                table.append(cells)
            continue
        if table:
            head, *rows = table
            body.append(
                "<table><tr>"
                + "".join(f"<th>{html.escape(c)}</th>" for c in head)
                + "</tr>"
                + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
                + "</table>"
            )
            table = []
        if line.startswith("# "):
            body.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.startswith("## "):
            body.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.startswith("!["):
            name = line[line.index("(") + 1 : -1]
            if name in images:
                data = base64.b64encode((folder / name).read_bytes()).decode("ascii")
                body.append(f'<p><img alt="{html.escape(name)}" src="data:image/png;base64,{data}"></p>')
        elif line.startswith("- "):
            body.append(f"<li>{html.escape(line[2:])}</li>")
        elif line:
            body.append(f"<p>{html.escape(line)}</p>")
    style = (
        "body{font-family:sans-serif;max-width:1000px;margin:2em auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px}img{max-width:100%}"
    )
    title = html.escape(f"Nightly sweep {result.night.isoformat()} ({result.name})")
    return f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title><style>{style}</style></head>" + (
        "<body>" + "\n".join(body) + "</body></html>\n"
    )


def format_result(result: NightlyResult) -> str:
    """The summary ``mnist-sweep nightly`` prints."""
    lines = [f"night {result.night.isoformat()} of {result.name!r} (storage {result.storage})"]
    if result.taken_over_from:
        lines.append(f"  took over an expired lock: {result.taken_over_from}")
    for s in result.studies:
        lines.append(
            f"  {s.study_name}: {s.trials} trials ({s.complete} complete, {s.trials_run} run now), "
            f"best {_fmt(s.best_value)} (trial {'-' if s.best_trial is None else s.best_trial}), "
            f"warm start {len(s.warm_start)}" + (f"; stopped: {s.stopped_reason}" if s.stopped_reason else "")
        )
        lines.append(f"    promotion: {_describe_promotion(s.promotion)}")
    if result.run_id:
        lines.append(
            f"  report: MLflow run {result.run_id} (experiment {result.experiment!r}), {REPORT_DIR}/report.html"
            + ("" if result.report_logged else " (unchanged)")
        )
    if result.deleted_studies or result.deleted_runs:
        lines.append(f"  retention: deleted {len(result.deleted_studies)} studies, {result.deleted_runs} trial runs")
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.4f}"
