"""The engine loop: one :func:`run_sweep` call is one invocation of ``mnist-sweep run``, or one
worker of a study that many share.

It opens the study, loads the data once, opens (or joins) the parent MLflow run, and asks
Optuna for trials until the budget decision (:mod:`~mnist_sweep.sweep._budget`) says stop.
Each trial runs through one lifecycle (:mod:`~mnist_sweep.sweep._trial`). Many workers, one
study, is Optuna's own distributed mode: each worker runs this loop against one shared
storage. Counting and asking are one step under a study-wide lock
(:class:`~mnist_sweep.stores.StudyMutex`), so any number of workers end with exactly
``n_trials`` finished trials; a trial's params are drawn and recorded under the same lock.
What dead workers left behind is recovered at every ask (:mod:`~mnist_sweep.sweep._recovery`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import warnings
from dataclasses import replace
from typing import TYPE_CHECKING

from mnist_sweep.contract import (
    ATTR_BRACKET,
    ATTR_DEVICE,
    ATTR_ENQUEUED,
    ATTR_FAIL_REASON,
    ATTR_PARAMS_KEY,
    ATTR_PROMOTION_OF,
    ATTR_RESAMPLED,
    ATTR_RETRY_OF,
    ATTR_WORKER,
)
from mnist_sweep.display import Progress
from mnist_sweep.errors import ConfigError, StudyFailing
from mnist_sweep.stores import (
    StudyMutex,
    default_storage,
    describe,
    heartbeat_settings,
    local_worker_alive,
    redact_url,
    retry_seconds,
    storage_kind,
    with_retry,
    worker_id,
)
from mnist_sweep.sweep import _asha
from mnist_sweep.sweep._budget import Decision, decide, tally
from mnist_sweep.sweep._calls import RESUME_HINT, Calls
from mnist_sweep.sweep._checkpoints import CheckpointStore, choose_store
from mnist_sweep.sweep._options import RECYCLED, SweepOptions, Trainer, keras_trainer
from mnist_sweep.sweep._parent import Mode, ParentRun
from mnist_sweep.sweep._recovery import TrialRecovery, Watchdog, end_dead_parents
from mnist_sweep.sweep._results import SweepResult, finished_count, summarize
from mnist_sweep.sweep._study import open_study, space_size, tell
from mnist_sweep.sweep._trial import TrialContext, TrialLifecycle, record_params

if TYPE_CHECKING:
    import optuna

    from mnist_sweep.config import SearchSpace
    from mnist_sweep.model import Dataset, Params

log = logging.getLogger(__name__)

# How often a worker looks again while running trials of others would fill the budget.
WAIT_POLL_SECONDS = 1.0
# How often the sampler is asked again, per trial, when it proposes params already visited.
MAX_ASK_AGAIN = 20


class _Sweep:
    """One invocation's loop: asks under the lock, runs each trial's lifecycle, keeps workers honest."""

    def __init__(
        self,
        space: SearchSpace,
        options: SweepOptions,
        study: optuna.Study,
        dataset: Dataset,
        *,
        backend: optuna.storages.BaseStorage,
        mutex: StudyMutex,
        recovery: TrialRecovery,
        trainer: Trainer,
        checkpoints: CheckpointStore | None = None,
    ) -> None:
        from mnist_sweep.model import runtime
        from mnist_sweep.tracking import Tracker, lineage_tags

        self.space, self.options, self.study, self.mutex, self.recovery = space, options, study, mutex, recovery
        self.rungs = _asha.rungs_of(space)
        self.checkpoints = checkpoints
        self.storage_url = options.storage or ""
        self.kind = storage_kind(self.storage_url)
        self.tracker = Tracker(
            tracking_uri=options.tracking_uri,
            experiment=options.experiment or space.study_name,
            enabled=options.tracking,
        )
        recovery.tracker = self.tracker
        recovery.checkpoints = checkpoints
        recovery.backend = backend
        self.calls = Calls(storage_url=self.storage_url, tracking_uri=self.tracker.tracking_uri)
        self.device = runtime.device_description()
        self.worker = worker_id()
        self.progress = Progress(total=space.budget.n_trials, quiet=options.quiet)
        self.backend = backend
        interval = getattr(backend, "get_heartbeat_interval", lambda: None)()
        self.heartbeat_interval: int | None = interval if isinstance(interval, int) else None
        self.watchdog: Watchdog | None = None
        self._study_id: int | None = None
        lineage = lineage_tags(data_sha256=dataset.sha256, seed=space.seed, device=self.device)
        self.lineage = lineage
        self.trials = TrialLifecycle(
            TrialContext(
                study=study,
                space=space,
                dataset=dataset,
                tracker=self.tracker,
                calls=self.calls,
                progress=self.progress,
                trainer=trainer,
                lineage=lineage,
                worker=self.worker,
                log_models=options.log_models,
                system_metrics=options.system_metrics,
                on_told=self._trial_told,
                checkpoints=checkpoints,
                keep_checkpoints=options.keep_checkpoints,
                rungs=self.rungs,
            )
        )

    # --- the loop --------------------------------------------------------------------

    def loop(self, result: SweepResult) -> None:
        started = time.monotonic()
        counted, _, _ = self.calls.storage(lambda: finished_count(self.study))
        self.progress.done = counted
        self.progress.best = self._best_value()
        self._start_watchdog()
        try:
            while True:
                if self.trials.grid_exhausted:
                    result.stopped_reason = "every point of the grid has been tried"
                    return
                limit = self.options.max_trials
                if limit is not None and result.trials_run >= limit:
                    result.stopped_reason = f"{RECYCLED}: this process ran its {limit} trial(s)"
                    return
                got = self._next_trial(started)
                if isinstance(got, str):
                    result.stopped_reason = got
                    return
                trial, params = got
                result.trials_run += 1
                outcome = self.trials.run(trial, params)
                self.progress.trial_finished(
                    trial.number, outcome.state, outcome.value, self._best_value(), outcome.note
                )
        finally:
            if self.watchdog is not None:
                self.watchdog.stop()
                self.watchdog = None

    def _next_trial(self, started: float) -> tuple[optuna.Trial, Params] | str:
        """The next trial and its params, or why to stop. Waits while others' trials may fill the budget."""
        from mnist_sweep.model import Params

        pending: list[optuna.Trial] = []  # asked in an attempt that failed afterwards: reuse it
        waiting_said = False

        def attempt() -> tuple[str, object]:
            with self.mutex.hold():
                if not pending:
                    self.recover_lost_trials(lock=False)
                    if self._promote(started):  # asha: a paused trial's continuation first, asked under the same lock
                        pending.append(self._ask())
                if not pending:
                    decision = self._decide(started)
                    if decision.action == "fail":
                        raise StudyFailing(decision.reason or "too many trials failed")
                    if decision.action != "go":
                        return decision.action, decision.reason
                    pending.append(self._ask())
                trial = pending[0]
                if self.heartbeat_interval is not None:
                    trial_id = self._trial_id(trial.number)
                    self._beat(trial_id)  # before anything else: a trial without one never goes stale
                    if self.watchdog is not None:
                        self.watchdog.trial_id = trial_id
                trial.set_user_attr(ATTR_WORKER, self.worker)
                trial.set_user_attr(ATTR_DEVICE, self.device)
                self._assign_bracket(trial)
                sampled = self.space.suggest(trial)
                # A bad combination is a config error: fatal, not a failed trial.
                params = Params.resolve({**self.space.fixed, **sampled}, sampled=sampled)
                if len(asked_again) < MAX_ASK_AGAIN and self._ask_again(trial, params):
                    asked_again.append(trial.number)
                    pending.clear()
                    return "again", None
                record_params(trial, params)
                return "go", (trial, params)

        asked_again: list[int] = []
        while True:
            action, value = self.calls.storage(attempt)
            if action == "again":
                continue
            if asked_again:
                log.info("the sampler repeated visited params %d time(s); asked again", len(asked_again))
            if action == "go":
                return value  # type: ignore[return-value]
            if action == "stop":
                return str(value)
            if not waiting_said:
                self.progress.message(f"waiting: {value} (one may still fail and need a retry)")
                waiting_said = True
            time.sleep(WAIT_POLL_SECONDS)

    def _ask_again(self, trial: optuna.Trial, params: Params) -> bool:
        """Close ``trial`` and ask again when it repeats a visited point while unvisited ones remain.

        A repeat of a COMPLETE trial is reused (its value, no training) only once the space has
        nothing unvisited left; an enqueued trial (a retry, a warm start) is never asked again.
        """
        from optuna.trial import TrialState

        trials = self.study.get_trials(deepcopy=False)
        given = trials[trial.number].system_attrs
        if ATTR_ENQUEUED in given or ATTR_RETRY_OF in given:  # params given, not sampled
            return False
        # A point counts as visited once a trial trained it, whatever came of it: a failed point
        # asked again would fail again (a worker that died is retried through the queue instead).
        seen = {
            t.user_attrs.get(ATTR_PARAMS_KEY): t.number
            for t in trials
            if t.number != trial.number
            and ATTR_RESAMPLED not in t.user_attrs
            and t.state in (TrialState.COMPLETE, TrialState.RUNNING, TrialState.FAIL, TrialState.PRUNED)
        }
        seen.pop(None, None)
        if params.key not in seen:
            return False
        size = space_size(self.space)
        if size is not None and len(seen) >= size:
            return False
        trial.set_user_attr(ATTR_RESAMPLED, seen[params.key])
        tell(self.study, trial, state=TrialState.FAIL)  # the grid may say it is spent: others still run
        log.info("trial %d repeats trial %d's params: closed, asking the sampler again", trial.number, seen[params.key])
        return True

    def _decide(self, started: float) -> Decision:
        trials = self.study.get_trials(deepcopy=False)
        counted = trials if self.rungs is None else _asha.configurations(trials)
        counts = tally(counted, may_end=self._may_still_end)
        self.progress.done = counts.finished
        decision = decide(
            counts,
            budget=self.space.budget,
            elapsed=time.monotonic() - started,
            last_failure=self._last_failure(trials),
        )
        if self.rungs is None or decision.action != "stop":
            return decision
        running = tally(trials, may_end=self._may_still_end).running
        timed_out = self.space.budget.timeout is not None and time.monotonic() - started >= self.space.budget.timeout
        if running and not timed_out:  # a trial still training may earn a paused one its promotion
            return Decision("wait", f"{running} running trial(s) may promote paused ones")
        closed = _asha.close_paused(self.study, trials, tracker=self.tracker, checkpoints=self.checkpoints)
        if closed:
            log.info("closed %d paused trial(s) PRUNED at their rung: %s", len(closed), closed)
        return decision

    def _promote(self, started: float) -> bool:
        """Under the lock: queue the continuation of a promotable paused trial (asha only)."""
        if self.rungs is None or self.trials.ctx.checkpoints is None:
            return False
        trials = self.study.get_trials(deepcopy=False)
        maximize = self.space.objective.direction == "maximize"
        sampling_done = False
        if self.rungs.bootstrap_count:  # would the budget sample another configuration?
            counts = tally(_asha.configurations(trials), may_end=self._may_still_end)
            elapsed = time.monotonic() - started
            decision = decide(counts, budget=self.space.budget, elapsed=elapsed, last_failure="")
            sampling_done = decision.action != "go"
        chosen = _asha.promotable(
            trials, self.rungs, maximize=maximize, closed=_asha.closed_of(self.study), sampling_done=sampling_done
        )
        if chosen is None:
            return False
        _asha.promote(self.study, chosen)
        return True

    def _assign_bracket(self, trial: optuna.Trial) -> None:
        """Under the lock: a new configuration joins an asha bracket (``brackets`` > 1); a continuation keeps its."""
        if self.rungs is None or self.rungs.brackets == 1:
            return
        trials = self.study.get_trials(deepcopy=False)
        attrs = trials[trial.number].user_attrs
        if ATTR_BRACKET in attrs or ATTR_PROMOTION_OF in attrs:
            return
        trial.set_user_attr(ATTR_BRACKET, _asha.assign_bracket(trials, self.rungs, exclude=trial.number))

    def _may_still_end(self, trial: optuna.trial.FrozenTrial) -> bool:
        """Whether a RUNNING trial will finish, or be failed and retried, without anyone's help."""
        worker = trial.user_attrs.get(ATTR_WORKER)
        if worker is None:  # started by an older version or another program: no heartbeat promise
            return False
        if self.heartbeat_interval is not None:
            return True
        return local_worker_alive(worker) is not None  # dead local ones are recovered at the next look

    @staticmethod
    def _last_failure(trials: list[optuna.trial.FrozenTrial]) -> str:
        failed = [t for t in trials if t.state.name == "FAIL" and ATTR_RESAMPLED not in t.user_attrs]
        return str(failed[-1].user_attrs.get(ATTR_FAIL_REASON, "unknown")) if failed else "unknown"

    def _ask(self) -> optuna.Trial:
        with warnings.catch_warnings():
            # Optuna warns that heartbeats need optimize(); this loop records them itself.
            warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
            return self.study.ask()

    def _best_value(self) -> float | None:
        try:
            return float(self.study.best_value)
        except ValueError:
            return None
        except Exception as exc:  # only for the progress line: never stop a sweep over it
            log.debug("best value unavailable: %s", describe(exc))
            return None

    # --- heartbeats and what dead workers left ------------------------------------------

    def _trial_id(self, number: int) -> int:
        if self._study_id is None:  # fixed for the study's life: one lookup per invocation
            self._study_id = self.backend.get_study_id_from_name(self.study.study_name)
        return self.backend.get_trial_id_from_study_id_trial_number(self._study_id, number)

    def _beat(self, trial_id: int) -> None:
        if self.heartbeat_interval is not None:
            self.backend.record_heartbeat(trial_id)  # type: ignore[attr-defined]

    def _trial_told(self) -> None:
        if self.watchdog is not None:
            self.watchdog.trial_id = None

    def recover_lost_trials(self, *, lock: bool) -> None:
        """Fail (and queue again) trials whose worker is gone: by heartbeat, or by pid on this machine."""
        if self.heartbeat_interval is not None:
            import optuna

            optuna.storages.fail_stale_trials(self.study)
            return
        with self.mutex.hold() if lock else contextlib.nullcontext():
            self.recovery.fail_dead_local_workers(self.study)

    def _look_around(self) -> None:
        self.recover_lost_trials(lock=True)
        end_dead_parents(self.tracker, self.space.study_name)

    def _start_watchdog(self) -> None:
        if self.kind == "sqlite":  # one process: nobody else's trials to look after
            return
        interval = float(self.heartbeat_interval or heartbeat_settings()[0])
        self.watchdog = Watchdog(interval=interval, beat=self._beat, look=self._look_around)
        self.watchdog.start()


def parent_mode(options: SweepOptions) -> Mode:
    """How this invocation comes by its parent run (see :class:`~mnist_sweep.sweep._parent.ParentRun`)."""
    if options.worker:
        return "join" if options.parent_run_id else "join_study"
    return "reopen" if options.parent_run_id else "create"


def run_sweep(
    space: SearchSpace, options: SweepOptions | None = None, *, trainer: Trainer | None = None
) -> SweepResult:
    """Create or resume ``space``'s study and run trials until its budget is spent.

    With ``options.worker`` this is one of many workers sharing the study. ``trainer``
    replaces Keras training (tests, benchmarks). Raises :class:`MnistSweepError` subclasses for
    config, data, storage and tracking problems; ``KeyboardInterrupt`` propagates after the runs
    are marked KILLED.
    """
    from mnist_sweep.model import load_dataset, runtime
    from mnist_sweep.tracking import check_tracking_uri, default_tracking_uri

    options = options or SweepOptions()
    storage = options.storage or default_storage(options.tracking_uri)
    kind = storage_kind(storage)
    options = replace(options, storage=storage)
    _ignore_known_warnings()
    retry_seconds()  # a bad $MNIST_SWEEP_RETRY_SECONDS is a config error before anything starts
    check_tracking_uri(options.tracking_uri or default_tracking_uri())
    # The data before the study: missing or corrupt files must not leave an empty study behind
    # (reading the IDX files needs numpy only, not TensorFlow).
    dataset = load_dataset(space.dataset, data_dir=options.data_dir, limit=space.limit, train_limit=space.train_limit)
    checkpoints = open_checkpoints(space, options)
    recovery = TrialRecovery()
    mutex = StudyMutex(storage, space.study_name, kind=kind)
    try:
        # The storage first: an unreachable database fails fast, before TensorFlow loads.
        study, backend = with_retry(
            lambda: open_study(
                space,
                storage,
                heartbeat=kind in ("postgresql", "mysql"),
                shared=kind != "sqlite",
                worker=options.worker,
                on_lost_trial=recovery,
                mutex=mutex,
            ),
            what=f"storage {redact_url(storage)}",
            hint=RESUME_HINT,
        )
        runtime.configure(threads=_threads_from_env())
        sweep = _Sweep(
            space,
            options,
            study,
            dataset,
            backend=backend,
            mutex=mutex,
            recovery=recovery,
            trainer=trainer or keras_trainer(),
            checkpoints=checkpoints,
        )
        return _run(sweep, dataset)
    finally:
        mutex.close()


def open_checkpoints(space: SearchSpace, options: SweepOptions) -> CheckpointStore | None:
    """This invocation's checkpoint store, refused (one line) before anything trains if it cannot be written."""
    choice = choose_store(flag=options.checkpoint_store, space=space, storage_url=options.storage or "")
    if choice.location is None:
        if space.pruner.name == "asha":
            raise ConfigError(
                "the asha pruner pauses trials in their checkpoints: it needs a checkpoint store, not none",
                source=space.source,
                key="pruner.name",
            )
        return None
    store = CheckpointStore(choice)
    store.check_writable()
    return store


def _run(sweep: _Sweep, dataset: Dataset) -> SweepResult:
    space, options, calls, tracker = sweep.space, sweep.options, sweep.calls, sweep.tracker
    calls.tracking(tracker.check)
    calls.tracking(lambda: end_dead_parents(tracker, space.study_name))
    result = SweepResult(
        study_name=space.study_name,
        storage=redact_url(sweep.storage_url),
        direction=space.objective.direction,
        metric=space.objective.metric,
        parent_run_id=None,
        experiment=tracker.experiment_name,
    )
    role = f"worker {sweep.worker}, " if options.worker else ""
    sweep.progress.message(
        f"study {space.study_name!r} ({result.storage}): {role}{dataset.describe()}; device {sweep.device}"
    )
    parent = ParentRun(
        study=sweep.study,
        space=space,
        tracker=tracker,
        calls=calls,
        storage_url=sweep.storage_url,
        lineage=sweep.lineage,
        mutex=sweep.mutex,
    )
    with contextlib.ExitStack() as stack:
        run = parent.open(stack, mode=parent_mode(options), run_id=options.parent_run_id)
        result.parent_run_id = sweep.trials.ctx.parent_run_id = run.run_id or None
        try:
            sweep.loop(result)
        except BaseException:
            sweep.progress.close()
            with contextlib.suppress(Exception):
                result.trials = summarize(sweep.study)
            parent.close(failing=True)
            raise
        sweep.progress.close()
        result.trials = calls.storage(lambda: summarize(sweep.study))
        parent.close(failing=False)
    return result


def _ignore_known_warnings() -> None:
    import optuna

    # Experimental-API notices for the heartbeat machinery this module uses on purpose.
    warnings.filterwarnings(
        "ignore", message=r".*fail_stale_trials is experimental", category=optuna.exceptions.ExperimentalWarning
    )


def _threads_from_env() -> int | None:
    value = os.environ.get("MNIST_SWEEP_THREADS")
    return int(value) if value and value.isdigit() and int(value) > 0 else None
