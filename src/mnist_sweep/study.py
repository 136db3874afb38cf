"""Where Optuna, training and tracking meet: create or resume a study and run its trials.

One :func:`run_sweep` call is one invocation of ``mnist-sweep run``: it loads the data once,
opens a parent MLflow run, and asks Optuna for trials until the study's budget is spent.
Each trial trains a real model in a nested MLflow run. A trial that diverges, runs out of
memory or raises inside training ends FAIL (with its reason) and the sweep goes on; a config
or programming error stops everything at once.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mnist_sweep.errors import ConfigError, MnistSweepError, StorageError, TrialFailed
from mnist_sweep.progress import Progress

if TYPE_CHECKING:
    import keras
    import optuna

    from mnist_sweep.data import Dataset
    from mnist_sweep.space import SearchSpace
    from mnist_sweep.tracking import NullRun, RunHandle, Tracker
    from mnist_sweep.training import TrainResult

log = logging.getLogger(__name__)

DEFAULT_STORAGE_FILE = "optuna.db"
ATTR_PARAMS = "params"
ATTR_RUN_ID = "mlflow_run_id"
ATTR_PARENT_RUN = "mlflow_parent_run_id"
ATTR_EXPERIMENT = "mlflow_experiment"
ATTR_TRACKING_URI = "mlflow_tracking_uri"
ATTR_FAIL_REASON = "fail_reason"
ATTR_DUPLICATE_OF = "duplicate_of"
ATTR_HISTORY = "history"
DUPLICATE_WAIT_SECONDS = 3600.0


# --------------------------------------------------------------------------- storage


def default_storage(tracking_uri: str | None = None) -> str:
    """The embedded default: ``optuna.db`` (SQLite) beside the MLflow SQLite store."""
    from mnist_sweep.tracking import default_tracking_uri

    uri = tracking_uri or default_tracking_uri()
    if uri.startswith("sqlite:///"):
        db_path = Path(uri[len("sqlite:///") :])
        return f"sqlite:///{db_path.parent / DEFAULT_STORAGE_FILE}" if str(db_path.parent) != "." else (
            f"sqlite:///{DEFAULT_STORAGE_FILE}"
        )
    return f"sqlite:///{DEFAULT_STORAGE_FILE}"


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for tags, logs and messages)."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def storage_kind(url: str) -> str:
    """``sqlite``, ``postgresql``, ``mysql`` or ``journal``; a ConfigError for anything else."""
    if url.startswith("journal:") or url.endswith((".log", ".journal")):
        return "journal"
    scheme = url.split(":", 1)[0].split("+", 1)[0].lower() if "://" in url else ""
    if scheme in ("sqlite", "postgresql", "postgres", "mysql"):
        return "postgresql" if scheme == "postgres" else scheme
    raise ConfigError(
        f"storage {redact_url(url)!r}: unsupported; use sqlite:///file.db, postgresql://user@host/db, "
        "or journal:///path/file.log"
    )


def open_storage(url: str, *, heartbeat: bool = False) -> optuna.storages.BaseStorage:
    """An Optuna storage for ``url``; heartbeats (crash recovery) on RDB storages when asked."""
    import optuna

    kind = storage_kind(url)
    try:
        if kind == "journal":
            path = url.split("journal://", 1)[-1] if url.startswith("journal:") else url
            path = path.removeprefix("/") if path.startswith("//") else path
            from optuna.storages.journal import JournalFileBackend

            return optuna.storages.JournalStorage(JournalFileBackend(path))
        if kind == "postgresql":
            url = re.sub(r"^postgres(ql)?://", "postgresql+psycopg2://", url)
        kwargs: dict[str, Any] = {}
        if heartbeat and kind != "sqlite":
            kwargs.update(
                heartbeat_interval=10,
                grace_period=30,
                failed_trial_callback=optuna.storages.RetryFailedTrialCallback(max_retry=2),
            )
        engine_kwargs = {"connect_args": {"connect_timeout": 10}} if kind == "postgresql" else {}
        return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **kwargs)
    except MnistSweepError:
        raise
    except Exception as exc:
        raise StorageError(f"storage {redact_url(url)}: {_first_line(exc)}") from None


def load_study(name: str, storage: str) -> optuna.Study:
    """An existing study; StorageError lists the studies there when ``name`` is not one."""
    import optuna

    backend = open_storage(storage)
    try:
        return optuna.load_study(study_name=name, storage=backend)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(backend, include_best_trial=False)]
        known = ", ".join(names) if names else "none"
        raise StorageError(f"no study {name!r} in {redact_url(storage)} (studies there: {known})") from None


def create_or_load_study(space: SearchSpace, storage: str, *, heartbeat: bool = False) -> optuna.Study:
    """Create the study ``space`` describes, or resume it; its direction must not change."""
    import optuna

    backend = open_storage(storage, heartbeat=heartbeat)
    try:
        study = optuna.create_study(
            study_name=space.study_name,
            storage=backend,
            sampler=space.make_sampler(),
            pruner=space.make_pruner(),
            direction=space.objective.direction,
            load_if_exists=True,
        )
    except MnistSweepError:
        raise
    except Exception as exc:
        raise StorageError(f"storage {redact_url(storage)}: {_first_line(exc)}") from None
    wanted = optuna.study.StudyDirection.MAXIMIZE if space.objective.direction == "maximize" else (
        optuna.study.StudyDirection.MINIMIZE
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
    return study


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
    out = []
    for t in study.get_trials(deepcopy=False):
        attrs = t.user_attrs
        history = attrs.get(ATTR_HISTORY) or []
        seconds = t.duration.total_seconds() if t.duration else None
        note = attrs.get(ATTR_FAIL_REASON) or ""
        if attrs.get(ATTR_DUPLICATE_OF) is not None:
            note = f"duplicate of trial {attrs[ATTR_DUPLICATE_OF]}"
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
    """How to run a sweep: where things are stored and what to print."""

    storage: str | None = None
    tracking_uri: str | None = None
    experiment: str | None = None
    data_dir: str | None = None
    tracking: bool = True
    quiet: bool = False
    log_models: bool = True
    parent_run_id: str | None = None
    worker: bool = False
    heartbeat: bool = False


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


# --------------------------------------------------------------------------- the sweep


class _Sweep:
    """The state of one invocation: data, study, tracker, parent run, progress."""

    def __init__(self, space: SearchSpace, options: SweepOptions, study: optuna.Study, dataset: Dataset) -> None:
        from mnist_sweep import runtime
        from mnist_sweep.tracking import Tracker, lineage_tags

        self.space = space
        self.options = options
        self.study = study
        self.dataset = dataset
        self.tracker: Tracker = Tracker(
            tracking_uri=options.tracking_uri,
            experiment=options.experiment or space.study_name,
            enabled=options.tracking,
        )
        self.device = runtime.device_description()
        self.lineage = lineage_tags(data_sha256=dataset.sha256, seed=space.seed, device=self.device)
        self.progress = Progress(total=space.budget.n_trials, quiet=options.quiet)
        self.parent: RunHandle | NullRun | None = None

    # --- trials --------------------------------------------------------------

    def _duplicate_source(self, trial: optuna.Trial, key: str) -> optuna.trial.FrozenTrial | None:
        """A COMPLETE trial with the same complete params, waiting for an earlier RUNNING one."""
        from optuna.trial import TrialState

        deadline = time.monotonic() + DUPLICATE_WAIT_SECONDS
        while True:
            waiting_on = None
            for other in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING)):
                if other.number == trial.number or other.user_attrs.get(ATTR_PARAMS + "_key") != key:
                    continue
                if other.state == TrialState.COMPLETE:
                    return other
                if other.number < trial.number:
                    waiting_on = other
            if waiting_on is None or time.monotonic() > deadline:
                return None
            log.info("trial %d waits for trial %d, which has the same params", trial.number, waiting_on.number)
            time.sleep(2.0)

    def run_trial(self, trial: optuna.Trial) -> float:
        """Train one trial; return its objective value (raises TrialPruned / TrialFailed)."""
        from mnist_sweep.params import model_summary, resolve_params

        params = self.space.trial_params(trial)
        resolve_params(params)  # a bad combination is a config error: fatal, not a failed trial
        key = json.dumps(params, sort_keys=True, default=str)
        trial.set_user_attr(ATTR_PARAMS, params)
        trial.set_user_attr(ATTR_PARAMS + "_key", key)
        self.progress.trial_started(trial.number, model_summary(params))
        tags = {
            **self.lineage,
            "mnist_sweep.study": self.space.study_name,
            "mnist_sweep.trial_number": trial.number,
            "mnist_sweep.dataset": self.dataset.name,
            "mnist_sweep.state": "RUNNING",
        }
        parent_id = getattr(self.parent, "run_id", None) or None
        with self.tracker.run(name=f"trial-{trial.number}", tags=tags, parent_run_id=parent_id) as run:
            trial.set_user_attr(ATTR_RUN_ID, run.run_id)
            run.log_params({**params, "dataset": self.dataset.name, "limit": self.dataset.limit})
            source = self._duplicate_source(trial, key)
            if source is not None:
                return self._reuse(trial, source, run)
            return self._train(trial, params, run)

    def _reuse(self, trial: optuna.Trial, source: optuna.trial.FrozenTrial, run: RunHandle | NullRun) -> float:
        assert source.value is not None
        for name in ("test_accuracy", "test_loss", "model_uri", ATTR_HISTORY):
            if name in source.user_attrs:
                trial.set_user_attr(name, source.user_attrs[name])
        trial.set_user_attr(ATTR_DUPLICATE_OF, source.number)
        run.set_tags(
            {
                "mnist_sweep.duplicate_of": source.number,
                "mnist_sweep.duplicate_of_run": source.user_attrs.get(ATTR_RUN_ID, ""),
                "mnist_sweep.state": "COMPLETE",
            }
        )
        run.log_metrics({f"final_{self.space.objective.metric}": source.value})
        return float(source.value)

    def _train(self, trial: optuna.Trial, params: dict[str, Any], run: RunHandle | NullRun) -> float:
        import optuna

        from mnist_sweep.training import train

        metric = self.space.objective.metric
        epochs = int(params.get("epochs", 5))

        def on_epoch(epoch: int, record: dict[str, float]) -> None:
            run.log_metrics(record, step=epoch + 1)
            self.progress.epoch(trial.number, epoch + 1, epochs, record)

        timeout = _TrialTimeout(self.space.budget.trial_timeout)
        pruning = _PruningCallback(trial, metric)
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
            trial.set_user_attr(ATTR_HISTORY, history)
            run.set_tags({"mnist_sweep.state": "PRUNED", "mnist_sweep.pruned_at_epoch": len(history)})
            raise
        except MnistSweepError:
            raise
        except Exception as exc:
            reason = f"{type(exc).__name__}: {_first_line(exc)}"
            self._record_failure(trial, run, reason)
            raise TrialFailed(reason) from exc
        trial.set_user_attr(ATTR_HISTORY, result.history)
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

    def _record_failure(self, trial: optuna.Trial, run: RunHandle | NullRun, reason: str) -> None:
        trial.set_user_attr(ATTR_FAIL_REASON, reason)
        run.set_tags({"mnist_sweep.state": "FAIL", "mnist_sweep.fail_reason": reason[:5000]})

    def _log_completed(self, trial: optuna.Trial, run: RunHandle | NullRun, result: TrainResult, value: float) -> None:
        import numpy as np

        from mnist_sweep import plots
        from mnist_sweep.models import probabilities

        metric = self.space.objective.metric
        trial.set_user_attr("test_accuracy", result.test_accuracy)
        trial.set_user_attr("test_loss", result.test_loss)
        trial.set_user_attr("param_count", result.param_count)
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
        run.log_figure(plots.learning_curves(result.history, title=title), "plots/learning_curves.png")
        probs = probabilities(model, self.dataset.x_test)
        predicted = np.argmax(probs, axis=1)
        run.log_figure(
            plots.confusion_matrix(self.dataset.y_test, predicted, self.dataset.class_names, title=f"{title} (test)"),
            "plots/confusion_matrix.png",
        )
        if self.options.log_models:
            uri = run.log_model(model, example=self.dataset.x_test[:2])
            trial.set_user_attr("model_uri", uri)

    # --- the loop ------------------------------------------------------------

    def _budget_left(self, started: float) -> str | None:
        """Why to stop now, or None to ask for another trial."""
        budget = self.space.budget
        if budget.timeout is not None and time.monotonic() - started >= budget.timeout:
            return f"timeout of {budget.timeout:g} s reached"
        counted, failed, running = finished_count(self.study)
        if budget.n_trials is not None and counted + running >= budget.n_trials:
            return f"budget of {budget.n_trials} trials spent"
        rate = budget.max_failure_rate
        total = counted + failed
        if rate is not None and failed >= 3 and total and failed / total > rate:
            raise StudyFailing(
                f"stopped: {failed} of {total} trials failed, more than max_failure_rate {rate:g}"
                f" (last reason: {self._last_failure()})"
            )
        return None

    def _last_failure(self) -> str:
        from optuna.trial import TrialState

        failed = self.study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
        return failed[-1].user_attrs.get(ATTR_FAIL_REASON, "unknown") if failed else "unknown"

    def loop(self, result: SweepResult, should_stop: Callable[[], bool] = lambda: False) -> None:
        import optuna
        from optuna.trial import TrialState

        started = time.monotonic()
        counted, _, _ = finished_count(self.study)
        self.progress.done = counted
        self.progress.best = self._best_value()
        while not should_stop():
            reason = self._budget_left(started)
            if reason:
                result.stopped_reason = reason
                break
            trial = self.study.ask()
            result.trials_run += 1
            try:
                value = self.run_trial(trial)
            except optuna.TrialPruned as exc:
                self.study.tell(trial, state=TrialState.PRUNED)
                self.progress.trial_finished(trial.number, "PRUNED", None, self._best_value(), str(exc))
                continue
            except TrialFailed as exc:
                self.study.tell(trial, state=TrialState.FAIL)
                self.progress.trial_finished(trial.number, "FAIL", None, self._best_value(), str(exc))
                continue
            except BaseException as exc:
                reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}"
                trial.set_user_attr(ATTR_FAIL_REASON, _first_line_text(reason))
                self.study.tell(trial, state=TrialState.FAIL)
                raise
            self.study.tell(trial, value)
            note = ""
            if trial.user_attrs.get(ATTR_DUPLICATE_OF) is not None:
                note = f"same params as trial {trial.user_attrs[ATTR_DUPLICATE_OF]}: value reused"
            self.progress.trial_finished(trial.number, "COMPLETE", value, self._best_value(), note)

    def _best_value(self) -> float | None:
        try:
            return float(self.study.best_value)
        except ValueError:
            return None

    # --- the parent run ------------------------------------------------------

    def parent_tags(self) -> dict[str, Any]:
        space = self.space
        return {
            **self.lineage,
            "mnist_sweep.study": space.study_name,
            "mnist_sweep.role": "study",
            "mnist_sweep.dataset": space.dataset,
            "mnist_sweep.storage": redact_url(self.options.storage or ""),
            "mnist_sweep.sampler": space.sampler.name,
            "mnist_sweep.pruner": space.pruner.name,
            "mnist_sweep.objective": f"{space.objective.direction} {space.objective.metric}",
            "mnist_sweep.n_trials": space.budget.n_trials,
            "mnist_sweep.question": space.question,
        }

    def log_study_artifacts(self, run: RunHandle | NullRun) -> None:
        """Study plots, a CSV of all trials, the best trial: into the parent run."""
        if not self.options.tracking:
            return
        from mnist_sweep import plots
        from mnist_sweep.tracking import scratch_dir

        for name, figure in plots.study_plots(self.study).items():
            run.log_figure(figure, f"study/{name}.png")
        with scratch_dir() as tmp:
            csv_path = tmp / "trials.csv"
            trials_frame(self.study).to_csv(csv_path, index=False)
            run.log_file(csv_path, "study")
        try:
            best = self.study.best_trial
        except ValueError:
            return
        run.log_metrics({f"best_{self.space.objective.metric}": float(best.value or 0.0)})
        run.set_tags(
            {
                "mnist_sweep.best_trial": best.number,
                "mnist_sweep.best_run_id": best.user_attrs.get(ATTR_RUN_ID, ""),
                "mnist_sweep.best_params": json.dumps(best.user_attrs.get(ATTR_PARAMS, best.params), default=str),
            }
        )


class StudyFailing(MnistSweepError):
    """Too many trials failed (``max_failure_rate``): stop the sweep."""

    exit_code = 1


class _PruningCallback:
    """Reports the objective metric to Optuna each epoch and prunes when the pruner says so."""

    def __new__(cls, trial: optuna.Trial, metric: str) -> Any:
        import keras
        import optuna

        class PruningCallback(keras.callbacks.Callback):
            def __init__(self) -> None:
                super().__init__()
                self.history: list[dict[str, float]] = []

            def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
                logs = dict(logs or {})
                self.history.append({k: float(v) for k, v in logs.items() if isinstance(v, int | float)})
                value = logs.get(metric)
                if value is None or not math.isfinite(float(value)):
                    return
                trial.report(float(value), step=epoch + 1)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned at epoch {epoch + 1} ({metric} {float(value):.4f})")

        return PruningCallback()


class _TrialTimeout:
    """Stops training once a trial has run longer than ``seconds``."""

    def __new__(cls, seconds: float | None) -> Any:
        import keras

        class TrialTimeout(keras.callbacks.Callback):
            def __init__(self) -> None:
                super().__init__()
                self.seconds = seconds
                self.expired = False
                self._start = time.monotonic()

            def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
                self._start = time.monotonic()

            def on_train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
                if self.seconds is not None and time.monotonic() - self._start > self.seconds:
                    self.expired = True
                    self.model.stop_training = True

        return TrialTimeout()


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

    Raises :class:`MnistSweepError` subclasses for config, data, storage and tracking
    problems; ``KeyboardInterrupt`` propagates after the runs are marked KILLED.
    """
    from mnist_sweep import runtime
    from mnist_sweep.data import load_dataset

    options = options or SweepOptions()
    storage = options.storage or default_storage(options.tracking_uri)
    options = _replace(options, storage=storage)
    runtime.configure(threads=_threads_from_env())
    dataset = load_dataset(space.dataset, data_dir=options.data_dir, limit=space.limit)
    study = create_or_load_study(space, storage, heartbeat=options.heartbeat)
    sweep = _Sweep(space, options, study, dataset)
    sweep.tracker.check()
    result = SweepResult(
        study_name=space.study_name,
        storage=redact_url(storage),
        direction=space.objective.direction,
        metric=space.objective.metric,
        parent_run_id=None,
        experiment=sweep.tracker.experiment_name,
    )
    sweep.progress.message(
        f"study {space.study_name!r} ({redact_url(storage)}): {dataset.describe()}; device {sweep.device}"
    )
    with sweep.tracker.run(
        name=f"{space.study_name} {time.strftime('%Y-%m-%d %H:%M:%S')}",
        tags=sweep.parent_tags(),
        run_id=options.parent_run_id,
    ) as parent:
        sweep.parent = parent
        result.parent_run_id = parent.run_id or None
        if parent.run_id:
            study.set_user_attr(ATTR_PARENT_RUN, parent.run_id)
            study.set_user_attr(ATTR_EXPERIMENT, sweep.tracker.experiment_name)
            study.set_user_attr(ATTR_TRACKING_URI, redact_url(sweep.tracker.tracking_uri))
        if options.parent_run_id is None:
            parent.log_text(space.text, f"config/{Path(str(space.source)).name or 'space.yaml'}")
            parent.log_text(json.dumps(space.to_dict(), indent=2, default=str), "config/space.json")
        try:
            sweep.loop(result)
        finally:
            sweep.progress.close()
            result.trials = summarize(study)
            sweep.log_study_artifacts(parent)
    return result


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
