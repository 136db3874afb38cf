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
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mnist_sweep.contract import (
    ATTR_DUPLICATE_OF,
    ATTR_FAIL_REASON,
    ATTR_HISTORY,
    ATTR_MODEL_URI,
    ATTR_PARAM_COUNT,
    ATTR_PARAMS,
    ATTR_PARAMS_KEY,
    ATTR_RUN_ID,
    ATTR_SAMPLED,
    ATTR_TEST_ACCURACY,
    ATTR_TEST_LOSS,
    SPLIT_TEST,
    SPLIT_VALIDATION,
    STATE_COMPLETE,
    STATE_FAIL,
    STATE_PRUNED,
    STATE_RUNNING,
    TAG_DATASET,
    TAG_DUPLICATE_OF,
    TAG_DUPLICATE_OF_RUN,
    TAG_FAIL_REASON,
    TAG_PRUNED_AT_EPOCH,
    TAG_SAMPLED,
    TAG_STATE,
    TAG_STUDY,
    TAG_TRIAL_NUMBER,
    TAG_WORKER,
)
from mnist_sweep.errors import MnistSweepError, TrialFailed, first_line
from mnist_sweep.stores import describe
from mnist_sweep.sweep._calls import Calls, ResilientRun

if TYPE_CHECKING:
    import optuna

    from mnist_sweep.config import SearchSpace
    from mnist_sweep.display import Progress, plots
    from mnist_sweep.model import Dataset, Params, TrainResult
    from mnist_sweep.sweep._options import Trainer
    from mnist_sweep.tracking import Tracker

log = logging.getLogger(__name__)

DUPLICATE_WAIT_SECONDS = 3600.0


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
        self._figures: plots.TrialFigures | None = None  # made on first use: matplotlib is imported then

    def run(self, trial: optuna.Trial, params: Params) -> TrialOutcome:
        """Train (or reuse) ``trial`` and tell Optuna; KeyboardInterrupt and fatal errors propagate."""
        import optuna
        from optuna.trial import TrialState

        from mnist_sweep.model import model_summary

        self.ctx.progress.trial_started(trial.number, model_summary(params.given))
        told = STATE_FAIL
        try:
            with self._trial_run(trial, params) as run:
                try:
                    value, note = self._reuse_or_train(trial, params, run)
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
    def _trial_run(self, trial: optuna.Trial, params: Params) -> Iterator[ResilientRun]:
        ctx = self.ctx
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
                        system_metrics=ctx.system_metrics,
                    )
                )
            )
            run = ResilientRun(opened, ctx.calls.tracking)
            self._set_attr(trial, ATTR_RUN_ID, run.run_id)
            run.log_params({**params.logged(), "dataset": ctx.dataset.name, "limit": ctx.dataset.limit})
            run.log_inputs(ctx.dataset)
            yield run

    def _set_attr(self, trial: optuna.Trial, key: str, value: Any) -> None:
        self.ctx.calls.storage(lambda: trial.set_user_attr(key, value))

    # --- duplicates -----------------------------------------------------------------

    def _reuse_or_train(self, trial: optuna.Trial, params: Params, run: ResilientRun) -> tuple[float, str]:
        source = self._duplicate_source(trial, params.key)
        if source is None:
            return self._train(trial, params, run), ""
        assert source.value is not None
        for name in (ATTR_TEST_ACCURACY, ATTR_TEST_LOSS, ATTR_MODEL_URI, ATTR_HISTORY):
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
        """A COMPLETE trial with the same params, waiting for an earlier RUNNING one."""
        from optuna.trial import TrialState

        study = self.ctx.study
        deadline = time.monotonic() + DUPLICATE_WAIT_SECONDS
        while True:
            waiting_on = None
            others = self.ctx.calls.storage(
                lambda: study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
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

    # --- training ---------------------------------------------------------------------

    def _train(self, trial: optuna.Trial, params: Params, run: ResilientRun) -> float:
        import optuna

        from mnist_sweep.model import PruningCallback, TrialTimeout

        ctx = self.ctx
        metric = ctx.space.objective.metric
        epochs = int(params["epochs"])

        def on_epoch(epoch: int, record: Mapping[str, float]) -> None:
            run.log_metrics_async(record, step=epoch + 1)
            ctx.progress.epoch(trial.number, epoch + 1, epochs, dict(record))

        timeout = TrialTimeout(ctx.space.budget.trial_timeout)
        pruning = PruningCallback(trial, metric, ctx.calls.storage)
        try:
            try:
                result = ctx.trainer(
                    params,
                    ctx.dataset,
                    seed=ctx.space.seed + trial.number,
                    callbacks=[pruning, timeout],
                    on_epoch=on_epoch,
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
        self._log_completed(trial, run, result, value)
        return value

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

        def tell() -> optuna.trial.FrozenTrial:
            try:
                return study.tell(trial, value, state=state, skip_if_finished=True)
            except RuntimeError as exc:
                # GridSampler calls study.stop() once every point is taken, which only works
                # inside optimize(); the trial's state is written regardless.
                if "Study.stop" not in str(exc):
                    raise
                self.grid_exhausted = True
                return study.get_trials(deepcopy=False)[trial.number]

        frozen = self.ctx.calls.storage(tell)
        self.ctx.on_told()
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
            self.ctx.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        except Exception as exc:  # lost with the storage; heartbeats or the next run recover it
            log.warning("could not mark trial %d FAIL: %s", trial.number, describe(exc))
