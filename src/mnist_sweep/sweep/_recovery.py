"""What dead workers leave behind: trials failed and queued again, runs ended, heartbeats.

On PostgreSQL/MySQL every running trial sends heartbeats; one silent for the grace period is
failed by Optuna (``fail_stale_trials``) in whichever worker sees it first, queued again
(``RetryHeartbeatStaleTrialCallback``), and its MLflow run ended FAILED. Journal files and
SQLite have no heartbeats: there a trial whose worker process on this machine has died gets
the same treatment. A parent run whose owning invocation died is ended FAILED by the next
invocation (or a watchdog) that sees its process gone.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING

from mnist_sweep.contract import (
    ATTR_CHECKPOINT,
    ATTR_FAIL_REASON,
    ATTR_RETRY_HISTORY,
    ATTR_RUN_ID,
    ATTR_WORKER,
    ROLE_STUDY,
    STATE_FAIL,
    TAG_FAIL_REASON,
    TAG_OWNER,
    TAG_ROLE,
    TAG_STATE,
    TAG_STUDY,
)
from mnist_sweep.stores import MAX_RETRY, describe, local_worker_alive

if TYPE_CHECKING:
    import optuna

    from mnist_sweep.sweep._checkpoints import CheckpointStore
    from mnist_sweep.tracking import Tracker

log = logging.getLogger(__name__)


class TrialRecovery:
    """Fails trials whose worker is gone, queues them again, and ends their MLflow runs.

    Optuna calls it (as the storage's ``heartbeat_stale_trial_callback``) for each trial it
    fails for lack of heartbeats; :meth:`fail_dead_local_workers` does the same job where
    there are no heartbeats. Set ``tracker`` to end the lost trials' MLflow runs, and
    ``checkpoints`` to delete the checkpoint of a trial whose retries have run out (nobody will
    resume it).
    """

    def __init__(self, *, max_retry: int = MAX_RETRY) -> None:
        import optuna

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            self._requeue = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)
            # A trial with a checkpoint is continued, not restarted: its retry keeps the epochs reported so far.
            self._requeue_continued = optuna.storages.RetryHeartbeatStaleTrialCallback(
                max_retry=max_retry, inherit_intermediate_values=True
            )
        self.max_retry = max_retry
        self.tracker: Tracker | None = None
        self.checkpoints: CheckpointStore | None = None
        self.backend: optuna.storages.BaseStorage | None = None
        """The study's storage, to record a dead trial's reason before it is failed."""
        self.recovered: list[int] = []

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        worker = trial.user_attrs.get(ATTR_WORKER, "unknown")
        self.handle(
            study,
            trial,
            reason=f"no heartbeat from its worker {worker}: killed or lost (detected by heartbeat)",
            status="FAILED",
        )

    def handle(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, *, reason: str, status: str) -> None:
        """``trial`` is FAIL already: queue it again and end its MLflow run with ``status``."""
        self.recovered.append(trial.number)
        checkpoint = trial.user_attrs.get(ATTR_CHECKPOINT)
        try:
            (self._requeue_continued if checkpoint is not None else self._requeue)(study, trial)
        except Exception as exc:  # the trial is FAIL either way; the budget makes up for it
            log.warning("trial %d: could not queue it again: %s", trial.number, describe(exc))
        if self.retries_exhausted(trial):
            reason = f"{reason}; not queued again: its {self.max_retry} retries are used up"
            if checkpoint is not None and self.checkpoints is not None:
                self.checkpoints.remove(str(checkpoint))
        run_id = trial.user_attrs.get(ATTR_RUN_ID)
        if run_id and self.tracker is not None and self.tracker.enabled:
            from mnist_sweep.tracking import RunHandle

            try:
                handle = RunHandle(self.tracker.client, run_id, self.tracker.experiment_id)
                handle.set_tags({TAG_STATE: STATE_FAIL, TAG_FAIL_REASON: reason})
            except Exception as exc:
                log.warning("trial %d: could not tag MLflow run %s: %s", trial.number, run_id, describe(exc))
            self.tracker.end_run(run_id, status)
        again = "" if self.retries_exhausted(trial) else " and queued again"
        log.warning("trial %d: %s; marked FAIL%s", trial.number, reason, again)

    def retries_exhausted(self, trial: optuna.trial.FrozenTrial) -> bool:
        """Whether ``trial`` (FAIL) is one retry too many: Optuna's retry callback queues no other."""
        history = trial.system_attrs.get(ATTR_RETRY_HISTORY, [])
        return len(history) + 1 > self.max_retry

    def _record_reason(self, study: optuna.Study, number: int, reason: str) -> None:
        if self.backend is None:
            return
        try:
            study_id = self.backend.get_study_id_from_name(study.study_name)
            trial_id = self.backend.get_trial_id_from_study_id_trial_number(study_id, number)
            self.backend.set_trial_user_attr(trial_id, ATTR_FAIL_REASON, reason)
        except Exception as exc:  # finished meanwhile: the MLflow tag still says why
            log.debug("trial %d: could not record why it failed: %s", number, describe(exc))

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
            reason = f"its worker {worker} died (its process is gone on this machine)"
            self._record_reason(study, t.number, reason)
            frozen = study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
            if frozen.state == TrialState.FAIL:
                self.handle(study, frozen, reason=reason, status=status)
                failed.append(t.number)
        return failed


def end_dead_parents(tracker: Tracker, study_name: str) -> list[str]:
    """End FAILED the study's RUNNING parent runs whose owning process on this machine is gone.

    A ``kill -9`` (or a power cut) of ``mnist-sweep run`` leaves its parent run RUNNING; the
    run records its owner (``host:pid``), so whoever comes next can tell. Runs owned by a
    process on another host, or by one still alive, are left alone.
    """
    from mnist_sweep.tracking import RunHandle

    ended = []
    for run_id, tags in tracker.running_runs({TAG_ROLE: ROLE_STUDY, TAG_STUDY: study_name}):
        owner = tags.get(TAG_OWNER)
        if not owner or local_worker_alive(owner) is not False:
            continue
        reason = f"its invocation {owner} died without ending it (its process is gone on this machine)"
        try:
            RunHandle(tracker.client, run_id, tracker.experiment_id).set_tags({TAG_FAIL_REASON: reason})
        except Exception as exc:
            log.warning("parent run %s: could not tag it: %s", run_id, describe(exc))
        tracker.end_run(run_id, "FAILED")
        log.warning("parent run %s: %s; ended FAILED", run_id, reason)
        ended.append(run_id)
    return ended


class Watchdog:
    """While a worker runs: heartbeats for its trial, and a look for what other workers lost."""

    def __init__(self, *, interval: float, beat: Callable[[int], None], look: Callable[[], None]) -> None:
        self.interval = interval
        self.trial_id: int | None = None
        self._beat = beat
        self._look = look
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
                    self._beat(trial_id)
                except Exception as exc:  # the next beat may get through; the grace period allows some
                    log.warning("heartbeat of the running trial failed: %s", describe(exc))
            try:
                self._look()
            except Exception as exc:
                log.warning("looking for lost trials failed: %s", describe(exc))
