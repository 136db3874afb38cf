"""Storage and tracking calls retried while their server is unreachable.

A lost database or tracking server is retried with backoff for ``$MNIST_SWEEP_RETRY_SECONDS``
(60 s); then the worker stops with one line. Finished trials are kept either way.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from mnist_sweep.errors import StorageError, TrackingError
from mnist_sweep.stores import redact_url, with_retry

if TYPE_CHECKING:
    from mnist_sweep.tracking import NullRun, RunHandle

T = TypeVar("T")
RESUME_HINT = "finished trials are kept: run the same command again once it is back"


class Calls:
    """``storage(fn)`` and ``tracking(fn)``: ``fn()`` retried while that server is unreachable."""

    def __init__(self, *, storage_url: str, tracking_uri: str) -> None:
        self.storage_what = f"storage {redact_url(storage_url)}"
        self.tracking_what = f"tracking server {redact_url(tracking_uri)}"

    def storage(self, fn: Callable[[], T]) -> T:
        return with_retry(fn, what=self.storage_what, error=StorageError, hint=RESUME_HINT)

    def tracking(self, fn: Callable[[], T]) -> T:
        return with_retry(fn, what=self.tracking_what, error=TrackingError, hint=RESUME_HINT)


class ResilientRun:
    """A run handle whose calls are retried while the tracking server is unreachable."""

    def __init__(self, run: RunHandle | NullRun, retry: Callable[[Callable[[], Any]], Any]) -> None:
        self.raw = run
        self._retry = retry

    @property
    def run_id(self) -> str:
        return self.raw.run_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        self._retry(lambda: self.raw.log_params(params))

    def log_metrics(self, metrics: Mapping[str, float | None], *, step: int = 0) -> None:
        self._retry(lambda: self.raw.log_metrics(metrics, step=step))

    def log_metrics_async(self, metrics: Mapping[str, float | None], *, step: int = 0) -> None:
        self._retry(lambda: self.raw.log_metrics_async(metrics, step=step))

    def flush(self) -> None:
        self._retry(self.raw.flush)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self._retry(lambda: self.raw.set_tags(tags))

    def delete_tags(self, keys: Sequence[str]) -> None:
        self._retry(lambda: self.raw.delete_tags(keys))

    def metric_steps(self, key: str) -> set[int]:
        return set(self._retry(lambda: self.raw.metric_steps(key)))

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        self._retry(lambda: self.raw.log_figure(figure, artifact_file))

    def log_file(self, path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
        self._retry(lambda: self.raw.log_file(path, artifact_path))

    def log_text(self, text: str, artifact_file: str) -> None:
        self._retry(lambda: self.raw.log_text(text, artifact_file))

    def log_model(self, model: Any, *, example: Any) -> str:
        return str(self._retry(lambda: self.raw.log_model(model, example=example)))

    def log_inputs(self, dataset: Any) -> None:
        self._retry(lambda: self.raw.log_inputs(dataset))

    def log_model_metrics(
        self, model_uri: str, metrics: Mapping[str, Mapping[str, float | None]], *, dataset: Any
    ) -> None:
        self._retry(lambda: self.raw.log_model_metrics(model_uri, metrics, dataset=dataset))
