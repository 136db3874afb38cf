"""One trial's lifecycle, in one place.

Ask (the engine, under the study lock) → params resolved once → the trial's MLflow run opens
with every resolved param → the value is reused from an identical COMPLETE trial, or the
model trains, reporting each epoch to the pruner → the trial's attributes are recorded →
Optuna is told (it refuses attributes after that) → the run ends with the status that matches.
A trial that diverges, runs out of memory or raises inside training ends FAIL with its reason
and the sweep goes on; a config or programming error propagates and stops the sweep.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import math
import statistics
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from mnist_sweep.contract import (
    ATTR_CHECKPOINT,
    ATTR_CONTINUES,
    ATTR_DUPLICATE_OF,
    ATTR_FAIL_REASON,
    ATTR_HISTORY,
    ATTR_LOGGED_SEED,
    ATTR_MODEL_URI,
    ATTR_PARAM_COUNT,
    ATTR_PARAMS,
    ATTR_PARAMS_KEY,
    ATTR_PAUSED_AT,
    ATTR_PROMOTION_OF,
    ATTR_RESUMED_FROM_EPOCH,
    ATTR_RETRY_HISTORY,
    ATTR_RUN_ID,
    ATTR_SAMPLED,
    ATTR_SEED_VALUES,
    ATTR_TEST_ACCURACY,
    ATTR_TEST_LOSS,
    ATTR_VALUE_CI_HIGH,
    ATTR_VALUE_CI_LOW,
    ATTR_VALUE_STD,
    ATTR_WARM_CHECKPOINT,
    METRIC_CI_HIGH_SUFFIX,
    METRIC_CI_LOW_SUFFIX,
    METRIC_STD_SUFFIX,
    SEED_METRIC,
    SPLIT_TEST,
    SPLIT_VALIDATION,
    STATE_COMPLETE,
    STATE_FAIL,
    STATE_PAUSED,
    STATE_PRUNED,
    STATE_RUNNING,
    TAG_BRACKET,
    TAG_CHECKPOINT_LOST,
    TAG_CONTINUES_TRIAL,
    TAG_DATASET,
    TAG_DUPLICATE_OF,
    TAG_DUPLICATE_OF_RUN,
    TAG_FAIL_REASON,
    TAG_LOGGED_SEED,
    TAG_PRUNED_AT_EPOCH,
    TAG_REPEATS,
    TAG_RESUMED_FROM_EPOCH,
    TAG_RUNG,
    TAG_SAMPLED,
    TAG_STATE,
    TAG_STUDY,
    TAG_TRIAL_NUMBER,
    TAG_WARM_CHECKPOINT,
    TAG_WORKER,
)
from mnist_sweep.errors import CheckpointUnusable, MnistSweepError, TrialFailed, first_line
from mnist_sweep.stores import describe
from mnist_sweep.sweep._asha import bracket_of
from mnist_sweep.sweep._calls import Calls, ResilientRun
from mnist_sweep.sweep._checkpoints import checkpoint_id
from mnist_sweep.sweep._study import tell

if TYPE_CHECKING:
    import optuna

    from mnist_sweep.config import SearchSpace
    from mnist_sweep.display import Progress, plots
    from mnist_sweep.model import Dataset, Params, TrainingState, TrainResult
    from mnist_sweep.sweep._asha import Rungs
    from mnist_sweep.sweep._checkpoints import CheckpointStore
    from mnist_sweep.sweep._options import RepeatTrainer, Trainer
    from mnist_sweep.tracking import Tracker

log = logging.getLogger(__name__)

DUPLICATE_WAIT_SECONDS = 3600.0
SEED_STRIDE = 10_007
"""Seed i (0-based) of a repeated trial trains with the trial's seed + i * SEED_STRIDE."""
REUSED_ATTRS = (
    ATTR_TEST_ACCURACY,
    ATTR_TEST_LOSS,
    ATTR_MODEL_URI,
    ATTR_HISTORY,
    ATTR_SEED_VALUES,
    ATTR_VALUE_STD,
    ATTR_VALUE_CI_LOW,
    ATTR_VALUE_CI_HIGH,
    ATTR_LOGGED_SEED,
)


@dataclass(frozen=True)
class TrialOutcome:
    """How a trial ended: its Optuna state now, its value when COMPLETE, and a note for the table."""

    state: str
    value: float | None = None
    note: str = ""


@dataclass
class TrialContext:
    """What every trial of one invocation shares."""

    study: optuna.Study
    space: SearchSpace
    dataset: Dataset
    tracker: Tracker
    calls: Calls
    progress: Progress
    trainer: Trainer
    lineage: Mapping[str, str]
    worker: str
    log_models: bool = True
    system_metrics: bool = False
    parent_run_id: str | None = None
    on_told: Callable[[], None] = lambda: None
    repeat_trainer: RepeatTrainer | None = None
    """Trains the seeds of ``repeats: k`` > 1 in lockstep (default: :func:`mnist_sweep.model.train_seeds`)."""
    checkpoints: CheckpointStore | None = None
    keep_checkpoints: int = 0
    """The checkpoints of the best this many COMPLETE trials are kept (a later warm start continues them)."""
    rungs: Rungs | None = None
    """asha: where trials pause (:mod:`~mnist_sweep.sweep._asha`)."""


@dataclass(frozen=True)
class Resume:
    """A checkpoint this trial continues: a dead or paused trial's, in that trial's own MLflow run, or
    (``warm_from``) a kept one of an earlier study's trial with the same params, in a new run."""

    key: str
    state: TrainingState
    run_id: str | None
    continues: int | None
    warm_from: str | None = None


def accepts_checkpoints(trainer: Trainer) -> bool:
    """Whether ``trainer`` takes ``checkpoint=`` and ``resume=`` (the Keras one does; test fakes need not)."""
    try:
        parameters = inspect.signature(trainer).parameters
    except (TypeError, ValueError):
        return False
    return "checkpoint" in parameters and "resume" in parameters


def record_params(trial: optuna.Trial, params: Params) -> None:
    """The trial's params as given (the duplicate key too) and which were sampled: before training."""
    trial.set_user_attr(ATTR_PARAMS, dict(params.given))
    trial.set_user_attr(ATTR_PARAMS_KEY, params.key)
    trial.set_user_attr(ATTR_SAMPLED, sorted(params.sampled))


class TrialLifecycle:
    """Runs asked trials to their end; see the module docstring for the order of things."""

    def __init__(self, ctx: TrialContext) -> None:
        self.ctx = ctx
        self.grid_exhausted = False
        self._checkpointing = ctx.checkpoints is not None and accepts_checkpoints(ctx.trainer)
        self._checkpoint_key: str | None = None
        self._ended_here = False
        self._figures: plots.TrialFigures | None = None  # made on first use: matplotlib is imported then
        self._paused_at: int | None = None

    def run(self, trial: optuna.Trial, params: Params) -> TrialOutcome:
        """Train (or reuse) ``trial`` and tell Optuna; KeyboardInterrupt and fatal errors propagate."""
        from mnist_sweep.model import model_summary

        self.ctx.progress.trial_started(trial.number, model_summary(params.given))
        self._checkpoint_key, self._ended_here, self._paused_at = None, False, None
        outcome: TrialOutcome | None = None
        try:
            outcome = self._run(trial, params)
            return outcome
        finally:
            done = self._ended_here and self._paused_at is None  # a paused trial keeps its checkpoint
            if self._checkpoint_key is not None and done and self.ctx.checkpoints is not None:
                if outcome is not None and outcome.state == STATE_COMPLETE and self.ctx.keep_checkpoints > 0:
                    self._keep_best_checkpoints()
                else:
                    self.ctx.checkpoints.remove(self._checkpoint_key)  # finished here: nobody resumes it

    def _keep_best_checkpoints(self) -> None:
        """Delete the checkpoints of the COMPLETE trials outside the best ``keep_checkpoints`` (this one included)."""
        from optuna.trial import TrialState

        ctx = self.ctx
        assert ctx.checkpoints is not None
        complete = ctx.calls.storage(lambda: ctx.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
        kept = [t for t in complete if t.value is not None and isinstance(t.user_attrs.get(ATTR_CHECKPOINT), str)]
        kept.sort(key=lambda t: float(t.value or 0.0), reverse=ctx.space.objective.direction == "maximize")
        best = {str(t.user_attrs[ATTR_CHECKPOINT]) for t in kept[: ctx.keep_checkpoints]}
        for t in kept[ctx.keep_checkpoints :]:
            if str(t.user_attrs[ATTR_CHECKPOINT]) not in best:
                ctx.checkpoints.remove(str(t.user_attrs[ATTR_CHECKPOINT]))

    def _run(self, trial: optuna.Trial, params: Params) -> TrialOutcome:
        import optuna
        from optuna.trial import TrialState

        resume = self._resumable(trial, params)
        told = STATE_FAIL
        try:
            with self._trial_run(trial, params, resume) as run:
                try:
                    if resume is not None:
                        self._continue(trial, run, resume)
                    value, note = self._reuse_or_train(trial, params, run, resume)
                    if self._paused_at is not None:
                        told = self._tell(trial, state=TrialState.PRUNED)
                        return TrialOutcome(told, None, f"paused at epoch {self._paused_at} ({note or 'asha'})")
                except optuna.TrialPruned:
                    told = self._tell(trial, state=TrialState.PRUNED)
                    raise
                except TrialFailed:
                    told = self._tell(trial, state=TrialState.FAIL)
                    raise
                except BaseException as exc:
                    self._abandon(
                        trial, "interrupted" if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}"
                    )
                    raise
                told = self._tell(trial, value=value)
                return TrialOutcome(told, value if told == STATE_COMPLETE else None, note)
        except (optuna.TrialPruned, TrialFailed) as exc:
            return TrialOutcome(told, None, str(exc))

    # --- the MLflow run -------------------------------------------------------------

    @contextlib.contextmanager
    def _trial_run(self, trial: optuna.Trial, params: Params, resume: Resume | None) -> Iterator[ResilientRun]:
        ctx = self.ctx
        reopen = resume.run_id if resume is not None and ctx.tracker.enabled else None
        tags = {
            **ctx.lineage,
            TAG_STUDY: ctx.space.study_name,
            TAG_TRIAL_NUMBER: trial.number,
            TAG_DATASET: ctx.dataset.name,
            TAG_STATE: STATE_RUNNING,
            TAG_WORKER: ctx.worker,
            TAG_SAMPLED: ",".join(sorted(params.sampled)),
        }
        with contextlib.ExitStack() as stack:
            opened = ctx.calls.tracking(
                lambda: stack.enter_context(
                    ctx.tracker.run(
                        name=f"trial-{trial.number}",
                        tags=tags,
                        parent_run_id=ctx.parent_run_id,
                        run_id=reopen,
                        system_metrics=ctx.system_metrics,
                    )
                )
            )
            run = ResilientRun(opened, ctx.calls.tracking)
            self._set_attr(trial, ATTR_RUN_ID, run.run_id)
            if reopen is not None and resume is not None:  # params and inputs are in the run already
                resumed = {TAG_RESUMED_FROM_EPOCH: resume.state.epochs_done, TAG_CONTINUES_TRIAL: resume.continues}
                run.set_tags({**tags, **resumed})
                run.delete_tags([TAG_FAIL_REASON])
            else:
                run.log_params({**params.logged(), "dataset": ctx.dataset.name, "limit": ctx.dataset.limit})
                run.log_inputs(ctx.dataset)
            yield run

    def _set_attr(self, trial: optuna.Trial, key: str, value: Any) -> None:
        from optuna.exceptions import UpdateFinishedTrialError

        try:
            self.ctx.calls.storage(lambda: trial.set_user_attr(key, value))
        except UpdateFinishedTrialError:
            # Another worker's heartbeat check closed this trial as lost while this one ran it
            # (its retry runs there): let it go; ``_tell`` says so once and the sweep goes on.
            log.debug("trial %d is closed already: %s not recorded", trial.number, key)

    # --- resuming a dead trial from its checkpoint -------------------------------------

    def _resumable(self, trial: optuna.Trial, params: Params) -> Resume | None:
        """The checkpoint this trial inherited from a dead one (a retry copies its attributes), if usable.

        A missing or corrupt one means training from epoch 0 in a new run: the dead run (ended
        FAILED when its worker was found dead) is tagged with the reason.
        """
        ctx = self.ctx
        inherited = trial.user_attrs
        key = inherited.get(ATTR_CHECKPOINT)
        warm = inherited.get(ATTR_WARM_CHECKPOINT)
        if not self._checkpointing or ctx.checkpoints is None:
            return None
        if not isinstance(key, str) and isinstance(warm, str):
            return self._warm_resume(trial, params, warm)
        if not isinstance(key, str):
            return None
        dead_run = inherited.get(ATTR_RUN_ID)
        frozen = ctx.calls.storage(lambda: ctx.study.get_trials(deepcopy=False)[trial.number])
        history = frozen.system_attrs.get(ATTR_RETRY_HISTORY) or []
        promoted = inherited.get(ATTR_PROMOTION_OF)
        continues = int(history[-1]) if history else (int(promoted) if promoted is not None else None)
        try:
            state = ctx.checkpoints.load(key, params_key=self._fit_key(params))
        except CheckpointUnusable as exc:
            reason = f"{exc}: trial {trial.number} restarts from epoch 0 in a new run"
            log.warning("trial %d: %s", trial.number, reason)
            if dead_run and ctx.tracker.enabled:
                from mnist_sweep.tracking import RunHandle

                handle = RunHandle(ctx.tracker.client, str(dead_run), ctx.tracker.experiment_id)
                with contextlib.suppress(Exception):  # only a note on a run that is over
                    ctx.calls.tracking(lambda: handle.set_tags({TAG_CHECKPOINT_LOST: reason[:5000]}))
            return None
        return Resume(key=key, state=state, run_id=str(dead_run) if dead_run else None, continues=continues)

    def _fit_key(self, params: Params) -> str:
        """What a checkpoint's model was trained on, checked before it is continued: the params and the data."""
        data = self.ctx.dataset
        return f"{params.key} on {data.name} {data.sha256} limit={data.limit} train_limit={data.train_limit}"

    def _warm_resume(self, trial: optuna.Trial, params: Params, warm: str) -> Resume | None:
        """A warm start's kept checkpoint of an earlier study, continued into this trial's own; None: train anew."""
        ctx = self.ctx
        assert ctx.checkpoints is not None
        try:
            state = ctx.checkpoints.load(warm, params_key=self._fit_key(params))
        except CheckpointUnusable as exc:
            log.warning("trial %d: warm start from checkpoint %s: %s; it trains from epoch 0", trial.number, warm, exc)
            return None
        own = checkpoint_id(ctx.space.study_name, trial.number)
        return Resume(key=own, state=state, run_id=None, continues=None, warm_from=warm)

    def _continue(self, trial: optuna.Trial, run: ResilientRun, resume: Resume) -> None:
        """Carry the checkpoint's epochs over: each logged and reported exactly once."""
        ctx = self.ctx
        metric = ctx.space.objective.metric
        done = resume.state.epochs_done
        self._set_attr(trial, ATTR_RESUMED_FROM_EPOCH, done)
        if resume.continues is not None:
            self._set_attr(trial, ATTR_CONTINUES, resume.continues)
        # The dead worker saved the checkpoint first: its last epoch may never have been logged.
        logged = run.metric_steps(metric) if resume.run_id is not None else set()
        frozen = ctx.calls.storage(lambda: ctx.study.get_trials(deepcopy=False)[trial.number])
        for step, record in enumerate(resume.state.history, start=1):
            if step not in logged:
                run.log_metrics(record, step=step)
            value = record.get(metric)
            if step not in frozen.intermediate_values and value is not None and math.isfinite(value):
                ctx.calls.storage(lambda v=value, s=step: trial.report(v, step=s))  # type: ignore[misc]
        note = f" of trial {resume.continues}" if resume.continues is not None else ""
        if resume.warm_from is not None:
            note = f" {resume.warm_from} (warm start)"
            run.set_tags({TAG_WARM_CHECKPOINT: resume.warm_from, TAG_RESUMED_FROM_EPOCH: done})
        ctx.progress.message(f"trial {trial.number} continues the checkpoint{note} after epoch {done}")

    # --- duplicates -----------------------------------------------------------------

    def _reuse_or_train(
        self, trial: optuna.Trial, params: Params, run: ResilientRun, resume: Resume | None = None
    ) -> tuple[float, str]:
        if resume is not None:  # a configuration in mid-training is continued, never replaced
            return self._train(trial, params, run, resume), f"resumed after epoch {resume.state.epochs_done}"
        source = self._duplicate_source(trial, params.key)
        if source is None:
            return self._train(trial, params, run), ""
        if ATTR_PAUSED_AT in source.user_attrs:
            self._reuse_paused(trial, run, source)  # raises TrialPruned: nothing trains
        assert source.value is not None
        for name in REUSED_ATTRS:
            if name in source.user_attrs:
                self._set_attr(trial, name, source.user_attrs[name])
        self._set_attr(trial, ATTR_DUPLICATE_OF, source.number)
        run.set_tags(
            {
                TAG_DUPLICATE_OF: source.number,
                TAG_DUPLICATE_OF_RUN: source.user_attrs.get(ATTR_RUN_ID, ""),
                TAG_STATE: STATE_COMPLETE,
            }
        )
        run.log_metrics({f"final_{self.ctx.space.objective.metric}": source.value})
        return float(source.value), f"same params as trial {source.number}: value reused"

    def _duplicate_source(self, trial: optuna.Trial, key: str) -> optuna.trial.FrozenTrial | None:
        """An earlier trial with the same params whose result stands in for training, waiting for a RUNNING one.

        A COMPLETE one first; else (asha) the furthest rung a configuration with these params was
        stopped at, paused or closed there: the sampler repeats a point only once the space has no
        unvisited one left, and the repeat would otherwise train to the first rung again.
        """
        from optuna.trial import TrialState

        study, asha = self.ctx.study, self.ctx.rungs is not None
        deadline = time.monotonic() + DUPLICATE_WAIT_SECONDS
        while True:
            waiting_on, stopped = None, []
            others = self.ctx.calls.storage(
                lambda: study.get_trials(
                    deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING, TrialState.PRUNED)
                )
            )
            for other in others:
                if other.number == trial.number or other.user_attrs.get(ATTR_PARAMS_KEY) != key:
                    continue
                if other.state == TrialState.COMPLETE:
                    return other
                if other.state == TrialState.PRUNED:
                    if asha and ATTR_PAUSED_AT in other.user_attrs:
                        stopped.append(other)
                elif other.number < trial.number:
                    waiting_on = other
            if waiting_on is None or time.monotonic() > deadline:
                return max(stopped, key=lambda t: int(t.user_attrs[ATTR_PAUSED_AT]), default=None)
            log.info("trial %d waits for trial %d, which has the same params", trial.number, waiting_on.number)
            time.sleep(2.0)

    def _reuse_paused(self, trial: optuna.Trial, run: ResilientRun, source: optuna.trial.FrozenTrial) -> None:
        """Close ``trial`` PRUNED as a duplicate of the stopped configuration ``source``, with its curve.

        The sampler sees the configuration's values (a PRUNED trial without any would rank as the
        worst); the duplicate has no rung of its own, so it is never promoted: ``source`` is.
        """
        import optuna

        def report() -> None:
            for step, value in sorted(source.intermediate_values.items()):
                trial.report(value, step=step)

        self.ctx.calls.storage(report)
        rung = int(source.user_attrs[ATTR_PAUSED_AT])
        self._set_attr(trial, ATTR_DUPLICATE_OF, source.number)
        run.set_tags(
            {
                TAG_DUPLICATE_OF: source.number,
                TAG_DUPLICATE_OF_RUN: source.user_attrs.get(ATTR_RUN_ID, ""),
                TAG_STATE: STATE_PRUNED,
                TAG_PRUNED_AT_EPOCH: rung,
            }
        )
        raise optuna.TrialPruned(f"same params as trial {source.number}, stopped by asha at epoch {rung}: not trained")

    # --- training ---------------------------------------------------------------------

    def _train(self, trial: optuna.Trial, params: Params, run: ResilientRun, resume: Resume | None = None) -> float:
        import optuna

        from mnist_sweep.model import PruningCallback, StopAtEpoch, TrialTimeout

        ctx = self.ctx
        if ctx.space.repeats > 1:
            return self._train_repeated(trial, params, run)
        metric = ctx.space.objective.metric
        epochs = int(params["epochs"])
        seed = ctx.space.seed + trial.number if resume is None else resume.state.seed
        frozen = ctx.calls.storage(lambda: ctx.study.get_trials(deepcopy=False)[trial.number])
        rungs = ctx.rungs if self._checkpointing else None  # no pause without a checkpoint to resume
        if rungs is not None and rungs.brackets > 1:  # asynchronous Hyperband: the rungs of the configuration's bracket
            bracket = bracket_of(frozen)
            rungs = rungs.bracket(bracket)
            run.set_tags({TAG_BRACKET: bracket})
        stop = rungs.next_stop(resume.state.epochs_done if resume is not None else 0) if rungs is not None else None
        extra_callbacks = [StopAtEpoch(stop)] if stop is not None and stop < epochs else []

        def on_epoch(epoch: int, record: Mapping[str, float]) -> None:
            run.log_metrics_async(record, step=epoch + 1)
            ctx.progress.epoch(trial.number, epoch + 1, epochs, dict(record))

        timeout = TrialTimeout(ctx.space.budget.trial_timeout)
        pruning = PruningCallback(trial, metric, ctx.calls.storage)
        extra = self._checkpoint_arguments(trial, params, seed=seed, resume=resume)
        if resume is not None:
            pruning.history.extend(dict(h) for h in resume.state.history)
        pruning.reported = set(frozen.intermediate_values)  # a retry's inherited curve is not reported again
        try:
            try:
                result = ctx.trainer(
                    params,
                    ctx.dataset,
                    seed=seed,
                    callbacks=[pruning, timeout, *extra_callbacks],
                    on_epoch=on_epoch,
                    **extra,
                )
            finally:
                run.flush()  # every epoch stored in MLflow before the trial records its history or state
        except optuna.TrialPruned:
            self._set_attr(trial, ATTR_HISTORY, pruning.history)
            run.set_tags({TAG_STATE: STATE_PRUNED, TAG_PRUNED_AT_EPOCH: len(pruning.history)})
            raise
        except MnistSweepError:
            raise
        except Exception as exc:
            raise self._failed(trial, run, f"{type(exc).__name__}: {first_line(exc)}") from exc
        self._set_attr(trial, ATTR_HISTORY, result.history)
        if result.levers is not None:  # the speed levers as training chose them ("auto" resolved)
            run.log_params(result.levers.as_params())
        if timeout.expired:
            reason = f"trial timeout: stopped after {timeout.seconds:g} s ({result.epochs_trained} epochs)"
            raise self._failed(trial, run, reason)
        if not result.ok:
            raise self._failed(trial, run, result.failure or "training failed")
        value = result.final(metric)
        if value is None or not math.isfinite(value):
            raise self._failed(trial, run, f"no finite {metric}")
        if rungs is not None and stop is not None and stop < rungs.max_resource and result.epochs_trained == stop:
            self._paused_at = stop  # asha: wait at this rung for a promotion, checkpoint kept
            self._set_attr(trial, ATTR_PAUSED_AT, stop)
            run.set_tags({TAG_STATE: STATE_PAUSED, TAG_RUNG: stop})
            return value
        self._log_completed(trial, run, result, value)
        return value

    def _train_repeated(self, trial: optuna.Trial, params: Params, run: ResilientRun) -> float:
        """``repeats: k`` seeds in lockstep; the pruner and the objective see their mean.

        Each epoch the mean over the seeds goes under the plain metric names and each seed's
        own value under ``seed<i>/<name>``. The logged model is the median seed's (by the
        objective), so the model served is not the luckiest draw.
        """
        import optuna

        from mnist_sweep import stats
        from mnist_sweep.model import TrialTimeout
        from mnist_sweep.sweep._options import keras_repeat_trainer

        ctx = self.ctx
        metric = ctx.space.objective.metric
        k = ctx.space.repeats
        epochs = int(params["epochs"])
        base = ctx.space.seed + trial.number
        seeds = [(base + SEED_STRIDE * i) % 2**32 for i in range(k)]
        history: list[dict[str, float]] = []
        run.set_tags({TAG_REPEATS: k})

        def on_epoch(epoch: int, records: list[dict[str, float]]) -> None:
            keys = [key for key in records[0] if all(key in r for r in records)]
            mean = {key: statistics.fmean(r[key] for r in records) for key in keys}
            per_seed = {
                SEED_METRIC.format(index=i + 1, name=key): value
                for i, record in enumerate(records)
                for key, value in record.items()
            }
            history.append(mean)
            run.log_metrics({**mean, **per_seed}, step=epoch + 1)
            ctx.progress.epoch(trial.number, epoch + 1, epochs, dict(mean))
            value = mean.get(metric)
            if value is None or not math.isfinite(value):
                return
            ctx.calls.storage(lambda: trial.report(value, step=epoch + 1))
            if ctx.calls.storage(trial.should_prune):
                raise optuna.TrialPruned(f"pruned at epoch {epoch + 1} (mean {metric} {value:.4f} over {k} seeds)")

        timeout = TrialTimeout(ctx.space.budget.trial_timeout)
        trainer = ctx.repeat_trainer or keras_repeat_trainer()
        try:
            results = trainer(params, ctx.dataset, seeds=seeds, callbacks=[timeout], on_epoch=on_epoch)
        except optuna.TrialPruned:
            self._set_attr(trial, ATTR_HISTORY, history)
            run.set_tags({TAG_STATE: STATE_PRUNED, TAG_PRUNED_AT_EPOCH: len(history)})
            raise
        except MnistSweepError:
            raise
        except Exception as exc:
            raise self._failed(trial, run, f"{type(exc).__name__}: {first_line(exc)}") from exc
        self._set_attr(trial, ATTR_HISTORY, history)
        if results and results[0].levers is not None:
            run.log_params(results[0].levers.as_params())
        if timeout.expired:
            reason = f"trial timeout: stopped after {timeout.seconds:g} s ({len(history)} epochs of {k} seeds)"
            raise self._failed(trial, run, reason)
        for i, result in enumerate(results):
            if not result.ok:
                raise self._failed(trial, run, f"seed {i + 1} of {k}: {result.failure or 'training failed'}")
        values = [result.final(metric) for result in results]
        finite = [float(v) for v in values if v is not None and math.isfinite(v)]
        if len(finite) != len(results):
            raise self._failed(trial, run, f"no finite {metric} for every seed")
        summary = stats.mean_interval(finite)
        maximize = ctx.space.objective.direction == "maximize"
        worst_first = sorted(range(k), key=lambda i: finite[i] if maximize else -finite[i])
        chosen = worst_first[(k - 1) // 2]  # the median; of two middle seeds, the worse one
        for name, attr in (
            (ATTR_SEED_VALUES, list(finite)),
            (ATTR_VALUE_STD, summary.std),
            (ATTR_VALUE_CI_LOW, summary.ci_low),
            (ATTR_VALUE_CI_HIGH, summary.ci_high),
            (ATTR_LOGGED_SEED, chosen + 1),
        ):
            self._set_attr(trial, name, attr)
        run.set_tags({TAG_LOGGED_SEED: chosen + 1})
        seed_tests = {
            SEED_METRIC.format(index=i + 1, name=name): getattr(result, name)
            for i, result in enumerate(results)
            for name in ("test_accuracy", "test_loss")
        }
        run.log_metrics(
            {
                f"{metric}{METRIC_STD_SUFFIX}": summary.std,
                f"{metric}{METRIC_CI_LOW_SUFFIX}": summary.ci_low,
                f"{metric}{METRIC_CI_HIGH_SUFFIX}": summary.ci_high,
                **seed_tests,
            }
        )
        logged = replace(results[chosen], history=history, wall_seconds=sum(result.wall_seconds for result in results))
        self._log_completed(trial, run, logged, summary.mean)
        return summary.mean

    def _checkpoint_arguments(
        self, trial: optuna.Trial, params: Params, *, seed: int, resume: Resume | None
    ) -> dict[str, Any]:
        """``checkpoint=`` (save after every epoch) and ``resume=`` for the trainer; none when off."""
        store = self.ctx.checkpoints
        if not self._checkpointing or store is None:
            return {}
        key = resume.key if resume is not None else checkpoint_id(self.ctx.space.study_name, trial.number)
        self._checkpoint_key = key
        self._set_attr(trial, ATTR_CHECKPOINT, key)  # before the first save: a retry must find it
        warned: list[str] = []

        def save(epochs_done: int, model: Any, history: list[dict[str, float]]) -> None:
            from mnist_sweep.model import capture_state

            try:
                state = capture_state(model, epochs_done=epochs_done, history=history, seed=seed)
                store.save(key, state, params_key=self._fit_key(params))
            except Exception as exc:  # a lost checkpoint costs a resume, never the trial
                if not warned:
                    warned.append(key)
                    log.warning("trial %d: checkpoint not saved (%s); training goes on", trial.number, describe(exc))

        return {"checkpoint": save, "resume": resume.state if resume is not None else None}

    def _failed(self, trial: optuna.Trial, run: ResilientRun, reason: str) -> TrialFailed:
        self._set_attr(trial, ATTR_FAIL_REASON, reason)
        run.set_tags({TAG_STATE: STATE_FAIL, TAG_FAIL_REASON: reason[:5000]})
        return TrialFailed(reason)

    def _log_completed(self, trial: optuna.Trial, run: ResilientRun, result: TrainResult, value: float) -> None:
        import numpy as np

        from mnist_sweep.display import plots
        from mnist_sweep.model import probabilities

        ctx = self.ctx
        metric = ctx.space.objective.metric
        self._set_attr(trial, ATTR_TEST_ACCURACY, result.test_accuracy)
        self._set_attr(trial, ATTR_TEST_LOSS, result.test_loss)
        self._set_attr(trial, ATTR_PARAM_COUNT, result.param_count)
        last = result.history[-1] if result.history else {}
        test = {"test_loss": result.test_loss, "test_accuracy": result.test_accuracy}
        validation = {f"final_{key}": v for key, v in last.items() if key.startswith("val_")}
        validation[f"final_{metric}"] = value
        # With a logged model, the final metrics go out once, linked to it and to their split's dataset
        # (MLflow adds them to the run too; logging them twice would put two points in each history).
        linked = ctx.tracker.enabled and result.model is not None and ctx.log_models
        finals = {} if linked else {**test, f"final_{metric}": value}
        run.log_metrics({**finals, "param_count": result.param_count, "train_seconds": result.wall_seconds})
        run.set_tags({TAG_STATE: STATE_COMPLETE})
        if not ctx.tracker.enabled or result.model is None:
            return
        model = result.model
        title = f"{ctx.space.study_name} trial {trial.number}"
        probs = result.test_probabilities
        if probs is None:
            probs = probabilities(model, ctx.dataset.x_test)
        predicted = np.argmax(probs, axis=1)
        if self._figures is None:
            self._figures = plots.TrialFigures()
        figures = self._figures
        run.log_figure(figures.learning_curves(result.history, title=title), "plots/learning_curves.png")
        run.log_figure(
            figures.confusion_matrix(ctx.dataset.y_test, predicted, ctx.dataset.class_names, title=f"{title} (test)"),
            "plots/confusion_matrix.png",
        )
        if linked:
            model_uri = run.log_model(model, example=ctx.dataset.x_test[:2])
            self._set_attr(trial, ATTR_MODEL_URI, model_uri)
            run.log_model_metrics(model_uri, {SPLIT_VALIDATION: validation, SPLIT_TEST: test}, dataset=ctx.dataset)

    # --- telling Optuna ------------------------------------------------------------------

    def _tell(
        self, trial: optuna.Trial, *, value: float | None = None, state: optuna.trial.TrialState | None = None
    ) -> str:
        """Tell Optuna how the trial ended (retried while the storage is down); the state it has now."""
        from optuna.trial import TrialState

        study = self.ctx.study

        def told() -> optuna.trial.FrozenTrial:
            frozen, exhausted = tell(study, trial, value, state=state)
            self.grid_exhausted = self.grid_exhausted or exhausted
            return frozen

        frozen = self.ctx.calls.storage(told)
        self.ctx.on_told()
        self._ended_here = frozen.state == (state or TrialState.COMPLETE)
        if frozen.state != (state or TrialState.COMPLETE):
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

        self.ctx.on_told()
        try:
            trial.set_user_attr(ATTR_FAIL_REASON, first_line(reason))
            frozen = self.ctx.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            self._ended_here = frozen.state == TrialState.FAIL
        except Exception as exc:  # lost with the storage; heartbeats or the next run recover it
            log.warning("could not mark trial %d FAIL: %s", trial.number, describe(exc))
