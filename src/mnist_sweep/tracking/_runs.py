"""Every MLflow call of the project: experiments, parent and trial runs, metrics, artifacts.

A study invocation is a *parent* run; each trial is a *child* run nested under it (the
``mlflow.parentRunId`` tag the MLflow UI nests by). Runs are opened in ``with`` blocks, so
their status always matches reality: FINISHED, FAILED on an exception, KILLED on Ctrl-C.
Per-epoch metrics go out in one ``log_batch`` call per epoch, not one call per number.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mnist_sweep import __version__
from mnist_sweep.contract import (
    MLFLOW_SOURCE_GIT_COMMIT,
    MLFLOW_SOURCE_NAME,
    MLFLOW_SOURCE_TYPE,
    TAG_DATA_SHA256,
    TAG_DEVICE,
    TAG_GIT_COMMIT,
    TAG_GIT_DIRTY,
    TAG_HOST,
    TAG_MODEL_URI,
    TAG_SEED,
    TAG_VERSION,
)
from mnist_sweep.errors import ConfigError, TrackingError, first_line
from mnist_sweep.tracking._inputs import split_inputs

if TYPE_CHECKING:
    import numpy as np
    from matplotlib.figure import Figure
    from mlflow import MlflowClient
    from mlflow.entities import Run

    from mnist_sweep.model import Dataset

log = logging.getLogger(__name__)

PARENT_TAG = "mlflow.parentRunId"
RUN_NAME_TAG = "mlflow.runName"
MODEL_ARTIFACT = "model"
# Explicit requirements: inferring them costs ~5 s per logged model (see PITFALLS.md).
MODEL_REQUIREMENTS = ("tensorflow", "keras", "numpy")
SOURCE_NAME = "mnist-sweep"
SOURCE_TYPE = "LOCAL"  # MLflow's SourceType for a command run on this machine
SYSTEM_METRICS_INTERVAL = 1.0
"""Seconds between system-metric samples: MLflow's default 10 s publishes nothing for a 5-s trial."""


def default_tracking_uri() -> str:
    """``$MLFLOW_TRACKING_URI`` if set, else MLflow's own default (``sqlite:///mlflow.db``)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"


def check_tracking_uri(uri: str) -> str:
    """Reject tracking URIs MLflow would misread or that are known not to work here."""
    scheme = uri.split(":", 1)[0].lower().split("+", 1)[0] if ":" in uri else ""
    allowed = ("sqlite", "postgresql", "mysql", "mssql", "http", "https", "databricks", "file")
    if scheme not in allowed:
        raise ConfigError(
            f"tracking URI {uri!r}: unsupported scheme {scheme or '(none)'!r}; "
            "use sqlite:///path.db, postgresql://..., or http(s)://host:port"
        )
    if scheme == "file" and os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() != "true":
        raise ConfigError(f"tracking URI {uri!r}: MLflow 3 no longer supports the file store; use sqlite:///mlflow.db")
    if scheme == "postgresql":
        from mnist_sweep.stores import sqlalchemy_url

        uri = sqlalchemy_url(uri)  # a bare postgresql:// is psycopg 3, the driver shipped here
    if scheme in ("http", "https") and "//" not in uri:
        raise ConfigError(f"tracking URI {uri!r}: expected {scheme}://host:port")
    return uri


# A command's first call to a tracking server: one try, a short timeout, instead of MLflow's
# own retries (minutes) nested inside ours.
PREFLIGHT_SECONDS = 5.0
PREFLIGHT_HTTP_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "3"}


@contextlib.contextmanager
def _environ(values: Mapping[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def preflight_tracking(uri: str) -> None:
    """Ask an HTTP tracking server one cheap question, so an unreachable one is one line within 10 s.

    The long retry window is for outages once a sweep has reached the server; a typo'd host
    or port at start-up should not take minutes to report. Local stores need no check.
    """
    if not uri.lower().startswith(("http://", "https://")):
        return
    from mlflow import MlflowClient

    from mnist_sweep.stores import retry_seconds, with_retry

    with _environ(PREFLIGHT_HTTP_ENV):
        with_retry(
            lambda: MlflowClient(tracking_uri=uri).search_experiments(max_results=1),
            what=f"tracking server {uri}",
            error=TrackingError,
            seconds=min(retry_seconds(), PREFLIGHT_SECONDS),
        )


def _git(*args: str) -> str | None:
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_commit() -> str | None:
    """The project checkout's commit, when it runs from a git checkout."""
    return _git("rev-parse", "HEAD") or None


def git_dirty() -> bool | None:
    """Whether that checkout has uncommitted changes to tracked files (None outside a checkout)."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    return None if status is None else bool(status)


def source_tags() -> dict[str, str]:
    """MLflow's own ``mlflow.source.*`` tags (the UI's Source column), plus whether the checkout was dirty.

    The UI's Source column shows ``mlflow.source.name`` only, so the name carries the short
    commit (``mnist-sweep@1a2b3c4``); the full one is in ``mlflow.source.git.commit``.
    """
    tags = {MLFLOW_SOURCE_NAME: SOURCE_NAME, MLFLOW_SOURCE_TYPE: SOURCE_TYPE}
    commit = git_commit()
    if commit:
        tags[MLFLOW_SOURCE_NAME] = f"{SOURCE_NAME}@{commit[:7]}"
        tags[MLFLOW_SOURCE_GIT_COMMIT] = commit
        tags[TAG_GIT_DIRTY] = str(bool(git_dirty())).lower()
    return tags


def lineage_tags(*, data_sha256: str, seed: int, device: str) -> dict[str, str]:
    """Tags that say exactly what produced a run: code, data, seed, library versions, device."""
    import keras
    import mlflow
    import optuna
    import tensorflow as tf

    tags = {
        TAG_VERSION: __version__,
        TAG_DATA_SHA256: data_sha256,
        TAG_SEED: str(seed),
        TAG_DEVICE: device,
        TAG_HOST: platform.node(),
        "versions.tensorflow": tf.__version__,
        "versions.keras": keras.__version__,
        "versions.optuna": optuna.__version__,
        "versions.mlflow": mlflow.__version__,
        "versions.python": platform.python_version(),
    }
    tags.update(source_tags())
    if MLFLOW_SOURCE_GIT_COMMIT in tags:
        tags[TAG_GIT_COMMIT] = tags[MLFLOW_SOURCE_GIT_COMMIT]  # what the registry gate and nightly read
    return tags


@contextlib.contextmanager
def process_tracking_uri(uri: str) -> Iterator[None]:
    """Point MLflow's process-wide tracking URI at ``uri`` for a call that only reads that one.

    Some MLflow 3.17 calls resolve ``models:/m-...`` through the global URI even when made on an
    explicit client (``Model.log`` with a model id; the registry's ``create_model_version``).
    """
    import mlflow

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)


def _finish(monitor: Any) -> None:
    if monitor is not None:
        try:
            monitor.finish()
        except Exception as exc:  # losing a few samples must not change how the run ends
            log.warning("system metrics: %s", first_line(exc))


_writer: tuple[int, ThreadPoolExecutor] | None = None  # (the process that owns it, the executor)
_writer_lock = threading.Lock()


def _metric_writer() -> ThreadPoolExecutor:
    """The process's one background writer of per-epoch metric batches (created on first use).

    Made anew in a forked child, whose copy of the parent's executor has no thread behind it.
    """
    global _writer
    with _writer_lock:
        if _writer is None or _writer[0] != os.getpid():
            _writer = (os.getpid(), ThreadPoolExecutor(max_workers=1, thread_name_prefix="mnist-sweep-metrics"))
        return _writer[1]


def _flush_quietly(handle: RunHandle) -> None:
    try:
        handle.flush()
    except Exception as exc:  # the run is ending on an error already; do not replace it
        log.warning("MLflow run %s: metrics not stored: %s", handle.run_id, first_line(exc))


def _status_for(exc: BaseException | None) -> str:
    import optuna

    if exc is None or isinstance(exc, optuna.TrialPruned):  # pruning is a normal end of a trial
        return "FINISHED"
    if isinstance(exc, KeyboardInterrupt | SystemExit):
        return "KILLED"
    return "FAILED"


@dataclass
class RunHandle:
    """A live MLflow run: log metrics, params, tags, figures and files into it."""

    client: MlflowClient
    run_id: str
    experiment_id: str
    _pending_tags: dict[str, str] = field(default_factory=dict)
    _in_flight: list[tuple[list[Any], Future[Any] | None]] = field(default_factory=list)  # (metrics, its write)

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(str(k), _param_text(v)) for k, v in sorted(params.items())]
        for start in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[start : start + 100])

    def log_metrics(self, metrics: Mapping[str, float | None], *, step: int = 0) -> None:
        """All of ``metrics`` at ``step`` in one call."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items() if v is not None]
        if batch:
            self.client.log_batch(self.run_id, metrics=batch)

    def log_metrics_async(self, metrics: Mapping[str, float | None], *, step: int = 0) -> None:
        """:meth:`log_metrics` on a background thread: returns before the store has them.

        For the per-epoch batches, so training does not wait on the store's commit. :meth:`flush`
        waits until every batch sent so far is stored (or stores it itself): call it before
        recording anything that claims those epochs (the trial's history, its state, ``tell``).
        One writer thread per process keeps the batches in order. Not MLflow's own asynchronous
        logging: ending a run shuts its queue down, and its thread notices only at its next
        1-second poll, which cost about 0.5 s per trial (BENCHMARKS.md, tracking overhead).
        """
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items() if v is not None]
        if batch:
            self._in_flight.append((batch, _metric_writer().submit(self.client.log_batch, self.run_id, metrics=batch)))

    def flush(self) -> None:
        """Every metric batch sent with :meth:`log_metrics_async` is in the store when this returns.

        A batch whose background write failed is written again, synchronously; if that fails
        too, it stays queued for the next call (the caller retries while the store is down).
        """
        while self._in_flight:
            batch, pending = self._in_flight[0]
            if pending is not None:
                try:
                    pending.result()
                except Exception as exc:
                    log.debug("background metric batch failed, writing it again: %s", first_line(exc))
                    self._in_flight[0] = (batch, None)
                    pending = None
            if pending is None:
                self.client.log_batch(self.run_id, metrics=batch)
            self._in_flight.pop(0)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        batch = [RunTag(str(k), str(v)) for k, v in tags.items() if v is not None]
        if batch:
            self.client.log_batch(self.run_id, tags=batch)

    def delete_tags(self, keys: Sequence[str]) -> None:
        """Remove tags that no longer hold (a reopened run's old fail reason); absent ones are skipped."""
        tags = self.client.get_run(self.run_id).data.tags
        for key in keys:
            if key in tags:
                self.client.delete_tag(self.run_id, key)

    def metric_steps(self, key: str) -> set[int]:
        """The steps at which ``key`` has been logged in this run."""
        return {m.step for m in self.client.get_metric_history(self.run_id, key)}

    def log_figure(self, figure: Figure, artifact_file: str) -> None:
        self.client.log_figure(self.run_id, figure, artifact_file)

    def log_file(self, path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)

    def log_model(self, model: Any, *, example: np.ndarray) -> str:
        """Log a Keras model with a signature and an input example; return its model URI.

        MLflow 3.17's ``mlflow.keras.log_model`` cannot save an input example (it writes the
        example before creating the model folder: FileNotFoundError), so the model goes
        through ``mlflow.tensorflow.log_model``, which saves the Keras model itself and
        serves through pyfunc the same way.
        """
        import numpy as np
        from mlflow.models import Model, infer_signature

        example = example[:2]
        # Zeros shaped like the output give the signature predict() would, without tracing Keras's
        # predict function for one more batch shape: 0.1-0.2 s per trial (bench/tracking_overhead.py).
        output = np.zeros((len(example), *model.output_shape[1:]), dtype=str(model.outputs[0].dtype))
        signature = infer_signature(example, output)
        # Create the logged model in this run's experiment ourselves: left to MLflow 3.17, a model
        # logged by run id (no fluent active run) lands in experiment 0 ("Default").
        logged = self.client.create_logged_model(
            experiment_id=self.experiment_id, name=MODEL_ARTIFACT, source_run_id=self.run_id
        )
        with _keras_progress_bars_off(), process_tracking_uri(self.client.tracking_uri):
            # What mlflow.tensorflow.log_model does (Model.log with the tensorflow flavor), minus
            # MLflow's serving-input check: it reloads the saved model and predicts the example,
            # 0.15-0.5 s per trial, to prove what holds by construction here (the example is two
            # rows of the data the model was just trained and tested on; the signature comes from it).
            info = Model.log(
                artifact_path=None,  # deprecated in favour of name, yet still a required argument
                name=MODEL_ARTIFACT,
                flavor=_TENSORFLOW_UNCHECKED,
                model=model,
                model_id=logged.model_id,
                signature=signature,
                input_example=example,
                pip_requirements=list(_pinned_requirements()),
                run_id=self.run_id,  # no fluent active run needed
                validate_serving_input=False,
            )
        self.set_tags({TAG_MODEL_URI: info.model_uri})
        return str(info.model_uri)

    def log_inputs(self, dataset: Dataset) -> None:
        """The training, validation and test splits as MLflow datasets (the UI's Dataset column).

        MLflow creates an experiment's dataset row on first use without a lock: workers logging
        the same splits at once race to insert it (a UNIQUE constraint failure for the loser).
        The row exists by then, so the loser's second try links to it.
        """
        datasets = [split.entity for split in split_inputs(dataset).values()]
        for attempt in range(3):
            try:
                self.client.log_inputs(self.run_id, datasets=datasets)
                return
            except Exception as exc:
                text = str(exc).lower()
                if attempt == 2 or not ("unique" in text or "duplicate key" in text or "integrity" in text):
                    raise
                log.debug("dataset rows created meanwhile by another worker: linking again (%s)", first_line(exc))
                time.sleep(0.2 * (attempt + 1))

    def log_model_metrics(
        self, model_uri: str, metrics: Mapping[str, Mapping[str, float | None]], *, dataset: Dataset
    ) -> None:
        """``{split: {name: value}}`` against logged model ``model_uri``, each linked to its split's dataset.

        The experiment's Models view and ``mlflow.search_logged_models(order_by=...)`` rank by these.
        """
        from mlflow.entities import Metric

        model_id = model_uri.removeprefix("models:/")
        inputs = split_inputs(dataset)
        now = int(time.time() * 1000)
        batch = [
            Metric(
                key,
                float(value),
                now,
                0,
                model_id=model_id,
                dataset_name=inputs[split].name,
                dataset_digest=inputs[split].digest,
            )
            for split, values in metrics.items()
            for key, value in values.items()
            if value is not None
        ]
        if batch:
            self.client.log_batch(self.run_id, metrics=batch)

    @property
    def artifact_uri(self) -> str:
        return str(self.client.get_run(self.run_id).info.artifact_uri)


class _TensorflowUnchecked:
    """``mlflow.tensorflow`` as the flavor of ``Model.log``, taking ``validate_serving_input``.

    ``Model.log(..., validate_serving_input=False)`` is how MLflow 3 skips the serving-input
    check (the transformers flavor passes it so), but ``Model.log`` hands its extra keywords on
    to the flavor's ``save_model``, and ``mlflow.tensorflow.save_model`` takes no such keyword.
    This flavor drops it and saves with ``mlflow.tensorflow.save_model``: the same files, the
    same MLmodel (``tensorflow`` and ``python_function`` flavors), loaded by ``mlflow.tensorflow``.
    """

    __name__ = "mlflow.tensorflow"

    @staticmethod
    def save_model(*, validate_serving_input: bool = True, **kwargs: Any) -> Any:
        import mlflow.tensorflow

        del validate_serving_input  # read by Model.log itself
        return mlflow.tensorflow.save_model(**kwargs)


_TENSORFLOW_UNCHECKED = _TensorflowUnchecked()


def _pinned_requirements() -> Iterator[str]:
    from importlib.metadata import PackageNotFoundError, version

    for name in MODEL_REQUIREMENTS:
        try:
            yield f"{name}=={version(name)}"
        except PackageNotFoundError:
            yield name


def _param_text(value: Any) -> str:
    if isinstance(value, list | tuple | dict):
        return json.dumps(value)
    return str(value)


class Tracker:
    """Opens runs in one experiment of one tracking store.

    ``enabled=False`` gives a tracker whose runs accept every call and log nothing (for
    measuring tracking overhead and for runs without MLflow).
    """

    def __init__(self, *, tracking_uri: str | None = None, experiment: str, enabled: bool = True) -> None:
        self.tracking_uri = check_tracking_uri(tracking_uri or default_tracking_uri())
        self.experiment_name = experiment
        self.enabled = enabled
        self._client: MlflowClient | None = None
        self._experiment_id: str | None = None

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            import mlflow
            from mlflow import MlflowClient

            mlflow.set_tracking_uri(self.tracking_uri)
            self._client = MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    @property
    def experiment_id(self) -> str:
        if self._experiment_id is None:
            self._experiment_id = self._get_or_create_experiment()
        return self._experiment_id

    def _get_or_create_experiment(self) -> str:
        from mlflow.exceptions import MlflowException

        try:
            found = self.client.get_experiment_by_name(self.experiment_name)
            if found is not None:
                if found.lifecycle_stage == "deleted":
                    self.client.restore_experiment(found.experiment_id)
                return str(found.experiment_id)
            try:
                return str(self.client.create_experiment(self.experiment_name))
            except MlflowException:  # created meanwhile by another worker
                again = self.client.get_experiment_by_name(self.experiment_name)
                if again is None:
                    raise
                return str(again.experiment_id)
        except MlflowException as exc:
            raise TrackingError(f"tracking store {self.tracking_uri}: {first_line(exc)}") from None
        except OSError as exc:
            raise TrackingError(f"tracking store {self.tracking_uri}: {exc}") from None

    def find_runs(self, tags: Mapping[str, str], *, max_results: int = 1000) -> list[Run]:
        """The runs of this experiment whose tags have all of ``tags``' values."""
        wanted = " and ".join(f"tags.`{key}` = '{value}'" for key, value in tags.items())
        return list(self.client.search_runs([self.experiment_id], filter_string=wanted, max_results=max_results))

    def check(self) -> None:
        """Fail fast (TrackingError) when the store cannot be reached."""
        if self.enabled:
            _ = self.experiment_id

    @contextlib.contextmanager
    def run(
        self,
        *,
        name: str,
        tags: Mapping[str, Any] | None = None,
        parent_run_id: str | None = None,
        run_id: str | None = None,
        system_metrics: bool = False,
    ) -> Iterator[RunHandle | NullRun]:
        """Open (or with ``run_id``, reopen) a run; end it with the status that matches reality.

        ``system_metrics``: sample CPU, memory (and GPU, with pynvml) into the run while it is open.
        """
        if not self.enabled:
            yield NullRun()
            return
        all_tags = {RUN_NAME_TAG: name, **(tags or {})}
        if parent_run_id:
            all_tags[PARENT_TAG] = parent_run_id
        try:
            if run_id is None:
                created = self.client.create_run(
                    self.experiment_id, tags={k: str(v) for k, v in all_tags.items()}, run_name=name
                )
                run_id = created.info.run_id
            else:
                self.client.update_run(run_id, status="RUNNING")
        except Exception as exc:
            raise TrackingError(f"tracking store {self.tracking_uri}: cannot open run: {first_line(exc)}") from None
        handle = RunHandle(self.client, run_id, self.experiment_id)
        monitor = self._system_metrics(run_id) if system_metrics else None
        try:
            yield handle
        except BaseException as exc:
            _finish(monitor)
            _flush_quietly(handle)
            self._end(run_id, _status_for(exc))
            raise
        _finish(monitor)
        handle.flush()
        self._end(run_id, "FINISHED")

    def _system_metrics(self, run_id: str) -> Any:
        """MLflow's own monitor on ``run_id``, started; None (with a warning) when it cannot run."""
        # MLflow announces every start and stop at INFO on the console, amid the sweep's progress bars.
        logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)
        try:
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

            monitor = SystemMetricsMonitor(
                run_id, sampling_interval=SYSTEM_METRICS_INTERVAL, tracking_uri=self.tracking_uri
            )
            monitor.start()
        except Exception as exc:  # psutil missing, an unreadable sensor: the trial runs on without them
            log.warning("system metrics off for run %s: %s", run_id, first_line(exc))
            return None
        return monitor

    def _end(self, run_id: str, status: str) -> None:
        try:
            self.client.set_terminated(run_id, status=status)
        except Exception as exc:  # the run's outcome is already decided; do not hide the real error
            log.warning("could not mark MLflow run %s %s: %s", run_id, status, first_line(exc))

    def end_run(self, run_id: str, status: str) -> None:
        """End a run opened elsewhere (a crashed worker's trial run, for example)."""
        if self.enabled:
            self._end(run_id, status)

    def running_runs(self, tags: Mapping[str, str]) -> list[tuple[str, dict[str, str]]]:
        """``(run_id, tags)`` of this experiment's RUNNING runs that carry all of ``tags``."""
        if not self.enabled:
            return []
        conditions = [f"tags.`{key}` = '{value}'" for key, value in tags.items()]
        conditions.append("attributes.status = 'RUNNING'")
        runs = self.client.search_runs([self.experiment_id], filter_string=" and ".join(conditions), max_results=200)
        return [(run.info.run_id, dict(run.data.tags)) for run in runs]


class NullRun:
    """A run that logs nothing: what a disabled :class:`Tracker` hands out."""

    run_id = ""
    experiment_id = ""
    artifact_uri = ""

    def log_params(self, params: Mapping[str, Any]) -> None:
        pass

    def log_metrics(self, metrics: Mapping[str, float | None], *, step: int = 0) -> None:
        pass

    def log_metrics_async(self, metrics: Mapping[str, float | None], *, step: int = 0) -> None:
        pass

    def flush(self) -> None:
        pass

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        pass

    def delete_tags(self, keys: Sequence[str]) -> None:
        pass

    def metric_steps(self, key: str) -> set[int]:
        return set()

    def log_figure(self, figure: Figure, artifact_file: str) -> None:
        pass

    def log_file(self, path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
        pass

    def log_text(self, text: str, artifact_file: str) -> None:
        pass

    def log_model(self, model: Any, *, example: np.ndarray) -> str:
        return ""

    def log_inputs(self, dataset: Dataset) -> None:
        pass

    def log_model_metrics(
        self, model_uri: str, metrics: Mapping[str, Mapping[str, float | None]], *, dataset: Dataset
    ) -> None:
        pass


def log_files(run: RunHandle | NullRun, paths: Sequence[Path], artifact_path: str | None = None) -> None:
    for path in paths:
        run.log_file(path, artifact_path)


def run_tags(run_id: str, *, tracking_uri: str | None = None) -> dict[str, str]:
    """The tags of run ``run_id``; TrackingError when the store has no such run."""
    from mlflow import MlflowClient

    uri = check_tracking_uri(tracking_uri or default_tracking_uri())
    try:
        return dict(MlflowClient(tracking_uri=uri).get_run(run_id).data.tags)
    except Exception as exc:
        raise TrackingError(f"tracking store {uri}: run {run_id}: {first_line(exc)}") from None


def logged_model(model_id: str, *, tracking_uri: str | None = None) -> tuple[str, str | None]:
    """``(artifact location, source run id)`` of logged model ``model_id`` (the ``m-...`` of ``models:/m-...``)."""
    from mlflow import MlflowClient

    uri = check_tracking_uri(tracking_uri or default_tracking_uri())
    try:
        found = MlflowClient(tracking_uri=uri).get_logged_model(model_id)
    except Exception as exc:
        raise TrackingError(f"tracking store {uri}: logged model {model_id}: {first_line(exc)}") from None
    return str(found.artifact_location), found.source_run_id


@contextlib.contextmanager
def scratch_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="mnist-sweep-") as tmp:
        yield Path(tmp)


@contextlib.contextmanager
def _keras_progress_bars_off() -> Iterator[None]:
    """Keras's interactive bars off for a while (they would litter the sweep's own progress output)."""
    import keras

    was_on = keras.config.is_interactive_logging_enabled()
    keras.config.disable_interactive_logging()
    try:
        yield
    finally:
        if was_on:
            keras.config.enable_interactive_logging()


# --------------------------------------------------------------------------- reading runs back (reports)


def existing_run(run_id: str, *, tracking_uri: str | None = None) -> RunHandle:
    """A handle on a run that already exists, to add artifacts to it afterwards (e.g. a study report).

    The run's status is left as it is (unlike :meth:`Tracker.run` with ``run_id``, which reopens it).
    """
    import mlflow
    from mlflow import MlflowClient

    uri = check_tracking_uri(tracking_uri or default_tracking_uri())
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(tracking_uri=uri)
    try:
        run = client.get_run(run_id)
    except Exception as exc:
        raise TrackingError(f"tracking store {uri}: run {run_id}: {first_line(exc)}") from None
    return RunHandle(client, run_id, str(run.info.experiment_id))


def run_params(run_id: str, *, tracking_uri: str | None = None) -> dict[str, str]:
    """The params logged to run ``run_id`` (as MLflow stores them: strings)."""
    handle = existing_run(run_id, tracking_uri=tracking_uri)
    return dict(handle.client.get_run(run_id).data.params)


def load_logged_model(model_uri: str, *, tracking_uri: str | None = None) -> Any:
    """The Keras model :meth:`RunHandle.log_model` logged at ``model_uri`` (``models:/m-...``)."""
    import mlflow
    import mlflow.tensorflow

    uri = check_tracking_uri(tracking_uri or default_tracking_uri())
    mlflow.set_tracking_uri(uri)  # models:/ URIs resolve through the tracking store
    try:
        with _keras_progress_bars_off():
            return mlflow.tensorflow.load_model(model_uri)
    except Exception as exc:
        raise TrackingError(f"tracking store {uri}: cannot load model {model_uri}: {first_line(exc)}") from None
