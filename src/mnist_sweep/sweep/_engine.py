"""Where Optuna, training and tracking meet: create or resume a study and run its trials.

One :func:`run_sweep` call is one invocation of ``mnist-sweep run``, or one worker of a study
that many share: it opens the study, loads the data once, opens (or joins) the parent MLflow
run, and asks Optuna for trials until the study's budget is spent. Each trial trains a real
model in a nested MLflow run. A trial that diverges, runs out of memory or raises inside
training ends FAIL (with its reason) and the sweep goes on; a config or programming error
stops everything at once.

Many workers, one study, is Optuna's own distributed mode: each worker runs this loop against
one shared storage (PostgreSQL across machines, a journal file on one machine). The rules:

* **Budget.** ``n_trials`` counts finished trials, COMPLETE and PRUNED. A FAIL trial uses no
  budget (a crashed trial is retried), nor does a WAITING one. Counting and asking are one step
  under a study-wide lock (:class:`~mnist_sweep.coordination.StudyMutex`), so any number of
  workers end with exactly ``n_trials`` finished trials. When the trials still RUNNING would
  fill the budget, a worker waits for them rather than leaving: one may yet fail and need a
  retry.
* **Lost trials.** On PostgreSQL/MySQL every running trial sends heartbeats; one silent for the
  grace period is failed by Optuna (``fail_stale_trials``) in whichever worker sees it first,
  queued again (``RetryHeartbeatStaleTrialCallback``), and its MLflow run ended FAILED. Journal
  files and SQLite have no heartbeats: there a trial whose worker process on this machine has
  died gets the same treatment.
* **Suggestions.** A trial's params are drawn and recorded under the same lock, so samplers see
  every running trial; TPE runs with ``constant_liar`` on shared storages unless the file says
  otherwise. A trial whose params equal an earlier one's waits for it and reuses its result.
* **Outages.** Storage and tracking calls are retried with backoff for
  ``$MNIST_SWEEP_RETRY_SECONDS`` (60 s); then the worker stops with one line. Metrics reach
  MLflow each epoch, and a trial's final ``tell`` is retried, so finished trials keep theirs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import threading
import time
import warnings
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from mnist_sweep.contract import (
    ATTR_DUPLICATE_OF,
    ATTR_EXPERIMENT,
    ATTR_FAIL_REASON,
    ATTR_HISTORY,
    ATTR_PARAMS,
    ATTR_PARAMS_KEY,
    ATTR_PARENT_RUN,
    ATTR_RUN_ID,
    ATTR_TRACKING_URI,
    ATTR_WORKER,
)
from mnist_sweep.display import Progress
from mnist_sweep.errors import ConfigError, MnistSweepError, StorageError, TrackingError, TrialFailed
from mnist_sweep.stores import (
    MAX_RETRY,
    StudyMutex,
    default_storage,
    describe,
    heartbeat_settings,
    is_transient,
    local_worker_alive,
    open_storage,
    redact_url,
    retry_seconds,
    storage_kind,
    with_retry,
    worker_id,
)

if TYPE_CHECKING:
    import keras
    import optuna

    from mnist_sweep.config import SearchSpace
    from mnist_sweep.model import Dataset, TrainResult
    from mnist_sweep.tracking import NullRun, RunHandle, Tracker

log = logging.getLogger(__name__)

T = TypeVar("T")
RunLike = Any  # RunHandle | NullRun | _ResilientRun: the same logging methods

DUPLICATE_WAIT_SECONDS = 3600.0
# How often a worker looks again while running trials of others would fill the budget.
WAIT_POLL_SECONDS = 1.0
RESUME_HINT = "finished trials are kept: run the same command again once it is back"


def create_or_load_study(
    space: SearchSpace, storage: str, *, heartbeat: bool = False, mutex: StudyMutex | None = None
) -> optuna.Study:
    """Create the study ``space`` describes, or resume it; its direction must not change.

    ``mutex``: hold the study's lock meanwhile (workers starting together race to create it).
    """
    kind = storage_kind(storage)
    study, _ = _open_study(space, storage, heartbeat=heartbeat, shared=kind != "sqlite", mutex=mutex)
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


def _open_study(
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
            raise StorageError(f"storage {redact_url(storage)}: {_first_line(exc)}") from None
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
    recorded = attrs.get("dataset")
    if recorded and recorded != space.dataset:
        raise ConfigError(
            f"study {space.study_name!r} was run on {recorded}; the file now says {space.dataset}",
            source=space.source,
            key="dataset",
        )
    for key, value in {
        "dataset": space.dataset,
        "objective_metric": space.objective.metric,
        "question": space.question or "",
        "space_file": str(space.source),
    }.items():
        if attrs.get(key) != value:
            study.set_user_attr(key, value)
    return study, backend


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class TrialSummary:
    """One trial as the final table shows it."""

    number: int
    state: str
    value: float | None
    params: Mapping[str, Any]
    run_id: str | None
    test_accuracy: float | None
    epochs: int
    seconds: float | None
    note: str = ""


@dataclass
class SweepResult:
    """What one invocation did, and where the study stands after it."""

    study_name: str
    storage: str
    direction: str
    metric: str
    parent_run_id: str | None
    experiment: str
    trials_run: int = 0
    trials: list[TrialSummary] = field(default_factory=list)
    stopped_reason: str | None = None

    @property
    def best(self) -> TrialSummary | None:
        done = [t for t in self.trials if t.state == "COMPLETE" and t.value is not None]
        if not done:
            return None
        pick = max if self.direction == "maximize" else min
        return pick(done, key=lambda t: t.value or 0.0)

    def top(self, k: int) -> list[TrialSummary]:
        done = [t for t in self.trials if t.state == "COMPLETE" and t.value is not None]
        done.sort(key=lambda t: t.value or 0.0, reverse=self.direction == "maximize")
        rest = [t for t in self.trials if t not in done]
        return (done + rest)[:k]


def summarize(study: optuna.Study) -> list[TrialSummary]:
    """Every trial of ``study`` as a :class:`TrialSummary`."""
    trials = study.get_trials(deepcopy=False)
    retried_as: dict[int, int] = {}
    for t in trials:
        history = t.system_attrs.get("retry_history") or []
        if history:
            retried_as[int(history[-1])] = t.number
    out = []
    for t in trials:
        attrs = t.user_attrs
        history = attrs.get(ATTR_HISTORY) or []
        seconds = t.duration.total_seconds() if t.duration else None
        note = attrs.get(ATTR_FAIL_REASON) or ""
        if attrs.get(ATTR_DUPLICATE_OF) is not None:
            note = f"duplicate of trial {attrs[ATTR_DUPLICATE_OF]}"
        if t.state.name == "FAIL" and not note:
            note = "its worker stopped mid-trial (killed or lost)"
            if t.number in retried_as:
                note += f"; retried as trial {retried_as[t.number]}"
        elif not note and t.system_attrs.get("retry_history"):
            note = f"retry of trial {t.system_attrs['retry_history'][-1]}"
        out.append(
            TrialSummary(
                number=t.number,
                state=t.state.name,
                value=t.value,
                params=attrs.get(ATTR_PARAMS) or t.params,
                run_id=attrs.get(ATTR_RUN_ID),
                test_accuracy=attrs.get("test_accuracy"),
                epochs=len(history) if history else len(t.intermediate_values),
                seconds=seconds,
                note=note,
            )
        )
    return out


# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class SweepOptions:
    """How to run a sweep: where things are stored and what to print.

    ``worker``: one of several processes sharing the study (joins the study's parent run,
    reseeds its sampler). ``parent_run_id`` with ``worker``: nest under that run without
    ending it (whoever created it ends it). Heartbeats need no option: they are always on for
    PostgreSQL/MySQL storages and impossible on the others.
    """

    storage: str | None = None
    tracking_uri: str | None = None
    experiment: str | None = None
    data_dir: str | None = None
    tracking: bool = True
    quiet: bool = False
    log_models: bool = True
    parent_run_id: str | None = None
    worker: bool = False


def finished_count(study: optuna.Study) -> tuple[int, int, int]:
    """(finished toward the budget: COMPLETE + PRUNED, FAIL, RUNNING) trials of ``study``."""
    from optuna.trial import TrialState

    counted = failed = running = 0
    for t in study.get_trials(deepcopy=False):
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED):
            counted += 1
        elif t.state == TrialState.FAIL:
            failed += 1
        elif t.state == TrialState.RUNNING:
            running += 1
    return counted, failed, running


def study_tags(space: SearchSpace, storage: str) -> dict[str, Any]:
    """The parent run's tags that describe the study (no TensorFlow needed to compute them)."""
    return {
        "mnist_sweep.study": space.study_name,
        "mnist_sweep.role": "study",
        "mnist_sweep.dataset": space.dataset,
        "mnist_sweep.storage": redact_url(storage),
        "mnist_sweep.sampler": space.sampler.name,
        "mnist_sweep.pruner": space.pruner.name,
        "mnist_sweep.objective": f"{space.objective.direction} {space.objective.metric}",
        "mnist_sweep.n_trials": space.budget.n_trials,
        "mnist_sweep.question": space.question,
    }


def record_parent_run(study: optuna.Study, run_id: str, *, experiment: str, tracking_uri: str) -> None:
    """Note the study's parent MLflow run in the study, so later workers nest under it."""
    study.set_user_attr(ATTR_PARENT_RUN, run_id)
    study.set_user_attr(ATTR_EXPERIMENT, experiment)
    study.set_user_attr(ATTR_TRACKING_URI, redact_url(tracking_uri))


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
            "mnist_sweep.best_trial": best.number,
            "mnist_sweep.best_run_id": best.user_attrs.get(ATTR_RUN_ID, ""),
            "mnist_sweep.best_params": json.dumps(best.user_attrs.get(ATTR_PARAMS, best.params), default=str),
        }
    )


# --------------------------------------------------------------------------- lost trials


class TrialRecovery:
    """Fails trials whose worker is gone, queues them again, and ends their MLflow runs.

    Optuna calls it (as the storage's ``heartbeat_stale_trial_callback``) for each trial it
    fails for lack of heartbeats; :meth:`fail_dead_local_workers` does the same job where
    there are no heartbeats. Set ``tracker`` to end the lost trials' MLflow runs.
    """

    def __init__(self, *, max_retry: int = MAX_RETRY) -> None:
        import optuna

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            self._requeue = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)
        self.tracker: Tracker | None = None
        self.recovered: list[int] = []

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        worker = trial.user_attrs.get(ATTR_WORKER, "unknown")
        self.handle(study, trial, reason=f"no heartbeat from its worker {worker}: killed or lost", status="FAILED")

    def handle(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, *, reason: str, status: str) -> None:
        """``trial`` is FAIL already: queue it again and end its MLflow run with ``status``."""
        self.recovered.append(trial.number)
        try:
            self._requeue(study, trial)
        except Exception as exc:  # the trial is FAIL either way; the budget makes up for it
            log.warning("trial %d: could not queue it again: %s", trial.number, describe(exc))
        run_id = trial.user_attrs.get(ATTR_RUN_ID)
        if run_id and self.tracker is not None and self.tracker.enabled:
            from mnist_sweep.tracking import RunHandle

            try:
                handle = RunHandle(self.tracker.client, run_id, self.tracker.experiment_id)
                handle.set_tags({"mnist_sweep.state": "FAIL", "mnist_sweep.fail_reason": reason})
            except Exception as exc:
                log.warning("trial %d: could not tag MLflow run %s: %s", trial.number, run_id, describe(exc))
            self.tracker.end_run(run_id, status)
        log.warning("trial %d: %s; marked FAIL and queued again", trial.number, reason)

    def fail_dead_local_workers(
        self, study: optuna.Study, *, only: Collection[str] | None = None, status: str = "FAILED"
    ) -> list[int]:
        """RUNNING trials whose worker process on this machine is gone: FAIL, queued again, runs ended.

        ``only``: just the trials of these worker ids (known dead). Hold the study's mutex.
        """
        from optuna.trial import TrialState

        failed = []
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            worker = t.user_attrs.get(ATTR_WORKER)
            if only is not None:
                if worker not in only:
                    continue
            elif local_worker_alive(worker) is not False:
                continue
            frozen = study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
            if frozen.state == TrialState.FAIL:
                self.handle(study, frozen, reason=f"its worker {worker} died", status=status)
                failed.append(t.number)
        return failed


# --------------------------------------------------------------------------- resilient calls


class _ResilientRun:
    """A run handle whose calls are retried while the tracking server is unreachable."""

    def __init__(self, run: RunHandle | NullRun, retry: Callable[[Callable[[], Any]], Any]) -> None:
        self._run = run
        self._retry = retry

    @property
    def run_id(self) -> str:
        return self._run.run_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        self._retry(lambda: self._run.log_params(params))

    def log_metrics(self, metrics: Mapping[str, float], *, step: int = 0) -> None:
        self._retry(lambda: self._run.log_metrics(metrics, step=step))

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self._retry(lambda: self._run.set_tags(tags))

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        self._retry(lambda: self._run.log_figure(figure, artifact_file))

    def log_file(self, path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
        self._retry(lambda: self._run.log_file(path, artifact_path))

    def log_text(self, text: str, artifact_file: str) -> None:
        self._retry(lambda: self._run.log_text(text, artifact_file))

    def log_model(self, model: Any, *, example: Any) -> str:
        return str(self._retry(lambda: self._run.log_model(model, example=example)))


class _Watchdog:
    """While a worker runs: heartbeats for its trial, and a look for trials other workers lost."""

    def __init__(self, sweep: _Sweep, interval: float) -> None:
        self.sweep = sweep
        self.interval = interval
        self.trial_id: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mnist-sweep watchdog", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            trial_id = self.trial_id
            if trial_id is not None:
                try:
                    self.sweep.record_heartbeat(trial_id)
                except Exception as exc:  # the next beat may get through; the grace period allows some
                    log.warning("heartbeat of the running trial failed: %s", describe(exc))
            try:
                self.sweep.recover_lost_trials(lock=True)
            except Exception as exc:
                log.warning("looking for lost trials failed: %s", describe(exc))


# --------------------------------------------------------------------------- the sweep


class _Sweep:
    """The state of one invocation: data, study, tracker, parent run, progress."""

    def __init__(
        self,
        space: SearchSpace,
        options: SweepOptions,
        study: optuna.Study,
        dataset: Dataset,
        *,
        backend: optuna.storages.BaseStorage | None = None,
        mutex: StudyMutex | None = None,
        recovery: TrialRecovery | None = None,
    ) -> None:
        from mnist_sweep.model import runtime
        from mnist_sweep.tracking import Tracker, lineage_tags

        self.space = space
        self.options = options
        self.study = study
        self.dataset = dataset
        self.storage_url = options.storage or ""
        self.kind = storage_kind(self.storage_url) if self.storage_url else "sqlite"
        self.tracker: Tracker = Tracker(
            tracking_uri=options.tracking_uri,
            experiment=options.experiment or space.study_name,
            enabled=options.tracking,
        )
        self.device = runtime.device_description()
        self.lineage = lineage_tags(data_sha256=dataset.sha256, seed=space.seed, device=self.device)
        self.progress = Progress(total=space.budget.n_trials, quiet=options.quiet)
        self.parent: RunLike | None = None
        self.owns_parent = True
        self.backend = backend
        interval = getattr(backend, "get_heartbeat_interval", lambda: None)()
        self.heartbeat_interval: int | None = interval if isinstance(interval, int) else None
        self.mutex = mutex or StudyMutex(self.storage_url, space.study_name, kind=self.kind)
        self.recovery = recovery or TrialRecovery()
        if self.recovery.tracker is None:
            self.recovery.tracker = self.tracker
        self.worker = worker_id()
        self.watchdog: _Watchdog | None = None
        self.grid_exhausted = False
        self._study_id: int | None = None

    # --- resilient calls ------------------------------------------------------

    def storage_call(self, fn: Callable[[], T]) -> T:
        """``fn()`` retried while the storage is unreachable (then StorageError)."""
        return with_retry(fn, what=f"storage {redact_url(self.storage_url)}", hint=RESUME_HINT)

    def tracking_call(self, fn: Callable[[], T]) -> T:
        """``fn()`` retried while the tracking server is unreachable (then TrackingError)."""
        return with_retry(
            fn, what=f"tracking server {redact_url(self.tracker.tracking_uri)}", error=TrackingError, hint=RESUME_HINT
        )

    def _set_attr(self, trial: optuna.Trial, key: str, value: Any) -> None:
        self.storage_call(lambda: trial.set_user_attr(key, value))

    # --- lost trials and heartbeats ---------------------------------------------

    def _trial_id(self, number: int) -> int:
        assert self.backend is not None
        if self._study_id is None:
            self._study_id = self.backend.get_study_id_from_name(self.study.study_name)
        return self.backend.get_trial_id_from_study_id_trial_number(self._study_id, number)

    def record_heartbeat(self, trial_id: int) -> None:
        if self.heartbeat_interval is not None and self.backend is not None:
            self.backend.record_heartbeat(trial_id)  # type: ignore[attr-defined]

    def recover_lost_trials(self, *, lock: bool) -> None:
        """Fail (and queue again) trials whose worker is gone: by heartbeat, or by pid on this machine."""
        if self.heartbeat_interval is not None:
            import optuna

            optuna.storages.fail_stale_trials(self.study)
            return
        with self.mutex.hold() if lock else contextlib.nullcontext():
            self.recovery.fail_dead_local_workers(self.study)

    def _start_watchdog(self) -> None:
        if self.kind == "sqlite":  # one process: nobody else's trials to look after
            return
        interval = float(self.heartbeat_interval or heartbeat_settings()[0])
        self.watchdog = _Watchdog(self, interval)
        self.watchdog.start()

    def _stop_watchdog(self) -> None:
        if self.watchdog is not None:
            self.watchdog.stop()
            self.watchdog = None

    # --- asking ------------------------------------------------------------------

    def _decide(self, started: float) -> tuple[str, str | None]:
        """("go", None), ("stop", why) or ("wait", why): whether to ask for another trial."""
        from optuna.trial import TrialState

        budget = self.space.budget
        if budget.timeout is not None and time.monotonic() - started >= budget.timeout:
            return "stop", f"timeout of {budget.timeout:g} s reached"
        trials = self.study.get_trials(deepcopy=False)
        counted = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
        failed = sum(t.state == TrialState.FAIL for t in trials)
        running = [t for t in trials if t.state == TrialState.RUNNING]
        self.progress.done = counted
        rate = budget.max_failure_rate
        total = counted + failed
        if rate is not None and failed >= 3 and total and failed / total > rate:
            raise StudyFailing(
                f"stopped: {failed} of {total} trials failed, more than max_failure_rate {rate:g}"
                f" (last reason: {self._last_failure()})"
            )
        n = budget.n_trials
        # Failed trials use no budget (a crashed worker's trial is retried), so without a
        # max_failure_rate a sweep whose every trial fails would never end: stop it once as many
        # trials have failed as the budget holds (at least 3).
        if rate is None and n is not None and failed >= max(n, 3):
            raise StudyFailing(
                f"stopped: {failed} trials failed, as many as the budget of {n} (set budget.max_failure_rate"
                f" to choose the limit; last reason: {self._last_failure()})"
            )
        if n is None or counted + len(running) < n:
            return "go", None
        spent = f"budget of {n} trials spent"
        if counted >= n:
            return "stop", spent
        stuck = [t for t in running if not self._may_still_end(t)]
        if counted + len(stuck) >= n:
            return "stop", f"{spent} ({len(stuck)} RUNNING without a worker to finish or fail them)"
        return "wait", f"{len(running) - len(stuck)} running trial(s) would fill the budget of {n}"

    def _may_still_end(self, trial: optuna.trial.FrozenTrial) -> bool:
        """Whether a RUNNING trial will finish, or be failed and retried, without anyone's help."""
        worker = trial.user_attrs.get(ATTR_WORKER)
        if worker is None:  # started by an older version or another program: no heartbeat promise
            return False
        if self.heartbeat_interval is not None:
            return True
        return local_worker_alive(worker) is not None  # dead local ones are recovered at the next look

    def _ask(self) -> optuna.Trial:
        with warnings.catch_warnings():
            # Optuna warns that heartbeats need optimize(); this loop records them itself.
            warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
            return self.study.ask()

    def _prepare(self, trial: optuna.Trial) -> dict[str, Any]:
        """Draw the trial's params and record them (complete, and as a key for duplicates)."""
        from mnist_sweep.model import resolve_params

        params = self.space.trial_params(trial)
        resolve_params(params)  # a bad combination is a config error: fatal, not a failed trial
        trial.set_user_attr(ATTR_PARAMS, params)
        trial.set_user_attr(ATTR_PARAMS_KEY, _params_key(params))
        return params

    def _next_trial(self, started: float) -> tuple[optuna.Trial, dict[str, Any]] | str:
        """The next trial and its params, or why to stop. Waits while others' trials may fill the budget."""
        pending: list[optuna.Trial] = []  # asked in an attempt that failed afterwards: reuse it
        waiting_said = False

        def attempt() -> tuple[str, Any]:
            with self.mutex.hold():
                if not pending:
                    self.recover_lost_trials(lock=False)
                    action, reason = self._decide(started)
                    if action != "go":
                        return action, reason
                    pending.append(self._ask())
                trial = pending[0]
                if self.heartbeat_interval is not None:
                    trial_id = self._trial_id(trial.number)
                    self.record_heartbeat(trial_id)  # before anything else: a trial without one never goes stale
                    if self.watchdog is not None:
                        self.watchdog.trial_id = trial_id
                trial.set_user_attr(ATTR_WORKER, self.worker)
                return "go", (trial, self._prepare(trial))

        while True:
            action, value = self.storage_call(attempt)
            if action != "wait":
                return value
            if not waiting_said:
                self.progress.message(f"waiting: {value} (one may still fail and need a retry)")
                waiting_said = True
            time.sleep(WAIT_POLL_SECONDS)

    def _finish(
        self, trial: optuna.Trial, *, value: float | None = None, state: optuna.trial.TrialState | None = None
    ) -> str:
        """Tell Optuna how the trial ended (retried while the storage is down); the state it has now."""
        from optuna.trial import TrialState

        def tell() -> optuna.trial.FrozenTrial:
            try:
                return self.study.tell(trial, value, state=state, skip_if_finished=True)
            except RuntimeError as exc:
                # GridSampler calls study.stop() once every point is taken, which only works
                # inside optimize(); the trial's state is written regardless.
                if "Study.stop" not in str(exc):
                    raise
                self.grid_exhausted = True
                return self.study.get_trials(deepcopy=False)[trial.number]

        frozen = self.storage_call(tell)
        if self.watchdog is not None:
            self.watchdog.trial_id = None
        wanted = state or TrialState.COMPLETE
        if frozen.state != wanted:
            log.warning(
                "trial %d was marked %s by another worker while this one ran it (no heartbeat for longer than "
                "the grace period); its result stays in its MLflow run",
                trial.number,
                frozen.state.name,
            )
        return frozen.state.name

    def _abandon(self, trial: optuna.Trial, reason: str) -> None:
        """Best effort, no retries: mark the trial FAIL on the way out."""
        from optuna.trial import TrialState

        if self.watchdog is not None:
            self.watchdog.trial_id = None
        try:
            trial.set_user_attr(ATTR_FAIL_REASON, _first_line_text(reason))
            self.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        except Exception as exc:  # lost with the storage; heartbeats or the next run recover it
            log.warning("could not mark trial %d FAIL: %s", trial.number, describe(exc))

    # --- trials --------------------------------------------------------------

    def _duplicate_source(self, trial: optuna.Trial, key: str) -> optuna.trial.FrozenTrial | None:
        """A COMPLETE trial with the same complete params, waiting for an earlier RUNNING one."""
        from optuna.trial import TrialState

        deadline = time.monotonic() + DUPLICATE_WAIT_SECONDS
        while True:
            waiting_on = None
            others = self.storage_call(
                lambda: self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
            )
            for other in others:
                if other.number == trial.number or other.user_attrs.get(ATTR_PARAMS_KEY) != key:
                    continue
                if other.state == TrialState.COMPLETE:
                    return other
                if other.number < trial.number:
                    waiting_on = other
            if waiting_on is None or time.monotonic() > deadline:
                return None
            log.info("trial %d waits for trial %d, which has the same params", trial.number, waiting_on.number)
            time.sleep(2.0)

    def run_trial(self, trial: optuna.Trial, params: dict[str, Any] | None = None) -> float:
        """Train one trial; return its objective value (raises TrialPruned / TrialFailed)."""
        from mnist_sweep.model import model_summary

        if params is None:
            params = self.storage_call(lambda: self._prepare(trial))
        key = _params_key(params)
        self.progress.trial_started(trial.number, model_summary(params))
        tags = {
            **self.lineage,
            "mnist_sweep.study": self.space.study_name,
            "mnist_sweep.trial_number": trial.number,
            "mnist_sweep.dataset": self.dataset.name,
            "mnist_sweep.state": "RUNNING",
            "mnist_sweep.worker": self.worker,
        }
        parent_id = getattr(self.parent, "run_id", None) or None
        with contextlib.ExitStack() as stack:
            opened = self.tracking_call(
                lambda: stack.enter_context(
                    self.tracker.run(name=f"trial-{trial.number}", tags=tags, parent_run_id=parent_id)
                )
            )
            run = _ResilientRun(opened, self.tracking_call)
            self._set_attr(trial, ATTR_RUN_ID, run.run_id)
            run.log_params({**params, "dataset": self.dataset.name, "limit": self.dataset.limit})
            source = self._duplicate_source(trial, key)
            if source is not None:
                return self._reuse(trial, source, run)
            return self._train(trial, params, run)

    def _reuse(self, trial: optuna.Trial, source: optuna.trial.FrozenTrial, run: RunLike) -> float:
        assert source.value is not None
        for name in ("test_accuracy", "test_loss", "model_uri", ATTR_HISTORY):
            if name in source.user_attrs:
                self._set_attr(trial, name, source.user_attrs[name])
        self._set_attr(trial, ATTR_DUPLICATE_OF, source.number)
        run.set_tags(
            {
                "mnist_sweep.duplicate_of": source.number,
                "mnist_sweep.duplicate_of_run": source.user_attrs.get(ATTR_RUN_ID, ""),
                "mnist_sweep.state": "COMPLETE",
            }
        )
        run.log_metrics({f"final_{self.space.objective.metric}": source.value})
        return float(source.value)

    def _train(self, trial: optuna.Trial, params: dict[str, Any], run: RunLike) -> float:
        import optuna

        from mnist_sweep.model import PruningCallback, TrialTimeout, train

        metric = self.space.objective.metric
        epochs = int(params.get("epochs", 5))

        def on_epoch(epoch: int, record: dict[str, float]) -> None:
            run.log_metrics(record, step=epoch + 1)
            self.progress.epoch(trial.number, epoch + 1, epochs, record)

        timeout = TrialTimeout(self.space.budget.trial_timeout)
        pruning = PruningCallback(trial, metric, self.storage_call)
        try:
            result = train(
                params,
                self.dataset,
                seed=self.space.seed + trial.number,
                callbacks=[pruning, timeout],
                on_epoch=on_epoch,
            )
        except optuna.TrialPruned:
            history = pruning.history
            self._set_attr(trial, ATTR_HISTORY, history)
            run.set_tags({"mnist_sweep.state": "PRUNED", "mnist_sweep.pruned_at_epoch": len(history)})
            raise
        except MnistSweepError:
            raise
        except Exception as exc:
            reason = f"{type(exc).__name__}: {_first_line(exc)}"
            self._record_failure(trial, run, reason)
            raise TrialFailed(reason) from exc
        self._set_attr(trial, ATTR_HISTORY, result.history)
        if timeout.expired:
            reason = f"trial timeout: stopped after {timeout.seconds:g} s ({result.epochs_trained} epochs)"
            self._record_failure(trial, run, reason)
            raise TrialFailed(reason)
        if not result.ok:
            self._record_failure(trial, run, result.failure or "training failed")
            raise TrialFailed(result.failure or "training failed")
        value = result.final(metric)
        if value is None or not math.isfinite(value):
            self._record_failure(trial, run, f"no finite {metric}")
            raise TrialFailed(f"no finite {metric}")
        self._log_completed(trial, run, result, value)
        return value

    def _record_failure(self, trial: optuna.Trial, run: RunLike, reason: str) -> None:
        self._set_attr(trial, ATTR_FAIL_REASON, reason)
        run.set_tags({"mnist_sweep.state": "FAIL", "mnist_sweep.fail_reason": reason[:5000]})

    def _log_completed(self, trial: optuna.Trial, run: RunLike, result: TrainResult, value: float) -> None:
        import numpy as np

        from mnist_sweep.display import plots
        from mnist_sweep.model import probabilities

        metric = self.space.objective.metric
        self._set_attr(trial, "test_accuracy", result.test_accuracy)
        self._set_attr(trial, "test_loss", result.test_loss)
        self._set_attr(trial, "param_count", result.param_count)
        run.log_metrics(
            {
                "test_loss": result.test_loss,
                "test_accuracy": result.test_accuracy,
                f"final_{metric}": value,
                "param_count": result.param_count,
                "train_seconds": result.wall_seconds,
            }
        )
        run.set_tags({"mnist_sweep.state": "COMPLETE"})
        if not self.options.tracking or result.model is None:
            return
        model: keras.Model = result.model
        title = f"{self.space.study_name} trial {trial.number}"
        probs = result.test_probabilities
        if probs is None:  # train() always returns them with evaluate_test; keep working without
            probs = probabilities(model, self.dataset.x_test)
        predicted = np.argmax(probs, axis=1)
        run.log_figure(plots.learning_curves(result.history, title=title), "plots/learning_curves.png")
        run.log_figure(
            plots.confusion_matrix(self.dataset.y_test, predicted, self.dataset.class_names, title=f"{title} (test)"),
            "plots/confusion_matrix.png",
        )
        if self.options.log_models:
            uri = run.log_model(model, example=self.dataset.x_test[:2])
            self._set_attr(trial, "model_uri", uri)

    # --- the loop ------------------------------------------------------------

    def _last_failure(self) -> str:
        from optuna.trial import TrialState

        failed = self.study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
        return failed[-1].user_attrs.get(ATTR_FAIL_REASON, "unknown") if failed else "unknown"

    def loop(self, result: SweepResult, should_stop: Callable[[], bool] = lambda: False) -> None:
        import optuna
        from optuna.trial import TrialState

        started = time.monotonic()
        counted, _, _ = self.storage_call(lambda: finished_count(self.study))
        self.progress.done = counted
        self.progress.best = self._best_value()
        self._start_watchdog()
        try:
            while not should_stop():
                if self.grid_exhausted:
                    result.stopped_reason = "every point of the grid has been tried"
                    break
                got = self._next_trial(started)
                if isinstance(got, str):
                    result.stopped_reason = got
                    break
                trial, params = got
                result.trials_run += 1
                try:
                    value = self.run_trial(trial, params)
                except optuna.TrialPruned as exc:
                    state = self._finish(trial, state=TrialState.PRUNED)
                    self.progress.trial_finished(trial.number, state, None, self._best_value(), str(exc))
                    continue
                except TrialFailed as exc:
                    state = self._finish(trial, state=TrialState.FAIL)
                    self.progress.trial_finished(trial.number, state, None, self._best_value(), str(exc))
                    continue
                except BaseException as exc:
                    reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}"
                    self._abandon(trial, reason)
                    raise
                state = self._finish(trial, value=value)
                note = ""
                if trial.user_attrs.get(ATTR_DUPLICATE_OF) is not None:
                    note = f"same params as trial {trial.user_attrs[ATTR_DUPLICATE_OF]}: value reused"
                shown = value if state == "COMPLETE" else None
                self.progress.trial_finished(trial.number, state, shown, self._best_value(), note)
        finally:
            self._stop_watchdog()

    def _best_value(self) -> float | None:
        try:
            return float(self.study.best_value)
        except ValueError:
            return None
        except Exception as exc:  # only for the progress line: never stop a sweep over it
            log.debug("best value unavailable: %s", describe(exc))
            return None

    # --- the parent run ------------------------------------------------------

    def parent_tags(self) -> dict[str, Any]:
        return {**self.lineage, **study_tags(self.space, self.storage_url)}

    def open_parent(self, stack: contextlib.ExitStack) -> RunLike:
        """The study's parent run: created, reopened or joined, per the options (see SweepOptions)."""
        from mnist_sweep.tracking import NullRun, RunHandle

        options, tracker = self.options, self.tracker
        name = f"{self.space.study_name} {time.strftime('%Y-%m-%d %H:%M:%S')}"
        if options.worker and options.parent_run_id:
            self.owns_parent = False
            if not tracker.enabled:
                return NullRun()
            joined = _ResilientRun(
                RunHandle(tracker.client, options.parent_run_id, tracker.experiment_id), self.tracking_call
            )
            joined.set_tags(self.lineage)  # what the process that created it could not know
            return joined
        if options.worker:
            return self._join_study_parent(stack, name)
        opened = self.tracking_call(
            lambda: stack.enter_context(tracker.run(name=name, tags=self.parent_tags(), run_id=options.parent_run_id))
        )
        parent = _ResilientRun(opened, self.tracking_call)
        if parent.run_id:
            self.storage_call(lambda: self._record_parent(parent.run_id))
        if options.parent_run_id is None:
            log_space(parent, self.space)
        return parent

    def _join_study_parent(self, stack: contextlib.ExitStack, name: str) -> RunLike:
        """A worker without a parent run id: the study's parent run, made by the first worker to come."""
        tracker = self.tracker

        def join() -> tuple[Any, bool]:
            with self.mutex.hold():
                attrs = self.study.user_attrs
                same_store = attrs.get(ATTR_TRACKING_URI) == redact_url(tracker.tracking_uri) and (
                    attrs.get(ATTR_EXPERIMENT) == tracker.experiment_name
                )
                existing = attrs.get(ATTR_PARENT_RUN) if same_store and tracker.enabled else None
                try:
                    opened = stack.enter_context(tracker.run(name=name, tags=self.parent_tags(), run_id=existing))
                except TrackingError as exc:
                    if existing is None or is_transient(exc):
                        raise
                    log.warning("the study's parent run %s cannot be reopened (%s): starting a new one", existing, exc)
                    existing = None
                    opened = stack.enter_context(tracker.run(name=name, tags=self.parent_tags()))
                if existing is None and opened.run_id:
                    self._record_parent(opened.run_id)
                return opened, existing is None

        opened, created = with_retry(
            join,
            what=f"study {self.space.study_name!r} (storage {redact_url(self.storage_url)}, "
            f"tracking server {redact_url(tracker.tracking_uri)})",
            hint=RESUME_HINT,
        )
        parent = _ResilientRun(opened, self.tracking_call)
        if created:
            log_space(parent, self.space)
        return parent

    def _record_parent(self, run_id: str) -> None:
        record_parent_run(
            self.study, run_id, experiment=self.tracker.experiment_name, tracking_uri=self.tracker.tracking_uri
        )

    def log_study_artifacts(self, run: RunLike) -> None:
        """Study plots, a CSV of all trials, the best trial: into the parent run."""
        if self.options.tracking:
            log_study_artifacts(run, self.study, self.space)

    def finish(self, result: SweepResult, parent: RunLike, *, failing: bool) -> None:
        """The final summary, and the study artifacts when this worker owns the parent run.

        While an error is on its way out (``failing``) nothing here may hide it: no retries,
        and problems only logged.
        """
        try:
            result.trials = summarize(self.study) if failing else self.storage_call(lambda: summarize(self.study))
            if self.owns_parent:
                self.log_study_artifacts(parent._run if failing and isinstance(parent, _ResilientRun) else parent)
        except Exception as exc:
            if not failing:
                raise
            log.warning("could not log the study summary: %s", describe(exc))


class StudyFailing(MnistSweepError):
    """Too many trials failed (``max_failure_rate``): stop the sweep."""

    exit_code = 1


def trials_frame(study: optuna.Study) -> Any:
    """All trials as a pandas DataFrame (params, value, state, test accuracy, run id)."""
    import pandas as pd

    rows = []
    for s in summarize(study):
        rows.append(
            {
                "number": s.number,
                "state": s.state,
                "value": s.value,
                "test_accuracy": s.test_accuracy,
                "epochs": s.epochs,
                "seconds": s.seconds,
                "mlflow_run_id": s.run_id,
                "note": s.note,
                **{f"params_{k}": v for k, v in s.params.items()},
            }
        )
    return pd.DataFrame(rows)


def run_sweep(space: SearchSpace, options: SweepOptions | None = None) -> SweepResult:
    """Create or resume ``space``'s study and run trials until its budget is spent.

    With ``options.worker`` this is one of many workers sharing the study (see the module
    docstring for the rules). Raises :class:`MnistSweepError` subclasses for config, data,
    storage and tracking problems; ``KeyboardInterrupt`` propagates after the runs are
    marked KILLED.
    """
    from mnist_sweep.model import load_dataset, runtime
    from mnist_sweep.tracking import check_tracking_uri, default_tracking_uri

    options = options or SweepOptions()
    storage = options.storage or default_storage(options.tracking_uri)
    kind = storage_kind(storage)
    heartbeat = kind in ("postgresql", "mysql")
    options = _replace(options, storage=storage)
    _ignore_known_warnings()
    retry_seconds()  # a bad $MNIST_SWEEP_RETRY_SECONDS is a config error before anything starts
    check_tracking_uri(options.tracking_uri or default_tracking_uri())
    # The data before the study: missing or corrupt files must not leave an empty study behind
    # (reading the IDX files needs numpy only, not TensorFlow).
    dataset = load_dataset(space.dataset, data_dir=options.data_dir, limit=space.limit)
    recovery = TrialRecovery()
    mutex = StudyMutex(storage, space.study_name, kind=kind)
    try:
        # The storage first: an unreachable database fails fast, before TensorFlow loads.
        study, backend = with_retry(
            lambda: _open_study(
                space,
                storage,
                heartbeat=heartbeat,
                shared=kind != "sqlite",
                worker=options.worker,
                on_lost_trial=recovery,
                mutex=mutex,
            ),
            what=f"storage {redact_url(storage)}",
            hint=RESUME_HINT,
        )
        runtime.configure(threads=_threads_from_env())
        sweep = _Sweep(space, options, study, dataset, backend=backend, mutex=mutex, recovery=recovery)
        sweep.tracking_call(sweep.tracker.check)
        result = SweepResult(
            study_name=space.study_name,
            storage=redact_url(storage),
            direction=space.objective.direction,
            metric=space.objective.metric,
            parent_run_id=None,
            experiment=sweep.tracker.experiment_name,
        )
        role = f"worker {sweep.worker}, " if options.worker else ""
        sweep.progress.message(
            f"study {space.study_name!r} ({redact_url(storage)}): {role}{dataset.describe()}; device {sweep.device}"
        )
        with contextlib.ExitStack() as stack:
            parent = sweep.open_parent(stack)
            sweep.parent = parent
            result.parent_run_id = parent.run_id or None
            try:
                sweep.loop(result)
            except BaseException:
                sweep.progress.close()
                sweep.finish(result, parent, failing=True)
                raise
            sweep.progress.close()
            sweep.finish(result, parent, failing=False)
        return result
    finally:
        mutex.close()


def _ignore_known_warnings() -> None:
    import optuna

    # Experimental-API notices for the heartbeat machinery this module uses on purpose.
    warnings.filterwarnings(
        "ignore", message=r".*fail_stale_trials is experimental", category=optuna.exceptions.ExperimentalWarning
    )


def _params_key(params: Mapping[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, default=str)


def _threads_from_env() -> int | None:
    value = os.environ.get("MNIST_SWEEP_THREADS")
    return int(value) if value and value.isdigit() and int(value) > 0 else None


def _replace(options: SweepOptions, **changes: Any) -> SweepOptions:
    from dataclasses import replace

    return replace(options, **changes)


def _first_line(exc: BaseException) -> str:
    return _first_line_text(str(exc)) or type(exc).__name__


def _first_line_text(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0][:500] if lines else ""
