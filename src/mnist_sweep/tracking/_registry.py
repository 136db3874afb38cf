"""The MLflow Model Registry and model URIs: every registry call, and loading models by URI.

:class:`Registry` wraps the registry calls the promotion gate needs (read an alias, list and
register versions, move an alias, tag a version), each MLflow error made one line.
:func:`resolve_model` and :func:`load_model` turn ``models:/NAME@ALIAS``, ``models:/NAME/VERSION``,
``models:/m-<id>`` (a logged model) and ``runs:/<run id>/model`` into a Keras model, resolving
through an explicit tracking URI rather than MLflow's process-wide one. What to promote is
:mod:`mnist_sweep.app._promote`'s decision.
"""

from __future__ import annotations

import contextlib
import json
import re
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from mnist_sweep.contract import TAG_DATASET, TAG_MODEL_URI, TAG_PARAMS, TAG_TEST_ACCURACY
from mnist_sweep.errors import MnistSweepError, ModelMissing, TrackingError, first_line
from mnist_sweep.tracking._runs import (
    check_tracking_uri,
    default_tracking_uri,
    logged_model,
    process_tracking_uri,
    run_tags,
)

if TYPE_CHECKING:
    import keras
    from mlflow.entities.model_registry import ModelVersion

_MODEL_ID = re.compile(r"^m-[0-9a-f]{32}$")
# Keras warns when a saved optimizer's state does not match a fresh one; the loaded models
# only predict, so the optimizer state is irrelevant here.
_OPTIMIZER_WARNING = "Skipping variable loading for optimizer"


@dataclass(frozen=True)
class ResolvedModel:
    """Where a model URI's files are, and what the registry and its run say about it."""

    uri: str
    artifact_uri: str
    name: str | None = None
    version: str | None = None
    run_id: str | None = None
    dataset: str | None = None

    def describe(self) -> str:
        facts = [f"version {self.version}"] if self.version else []
        facts += [self.dataset] if self.dataset else []
        return f"{self.uri} ({', '.join(facts)})" if facts else self.uri


@dataclass(frozen=True)
class Champion:
    """The version holding an alias, with what its promotion recorded in tags."""

    model_name: str
    alias: str
    version: str
    source: str
    run_id: str | None
    dataset: str | None
    params: Mapping[str, Any]
    test_accuracy: float | None
    tags: Mapping[str, str]


class Registry:
    """The Model Registry calls of the project (promotion and model URIs), with MLflow errors made one-line."""

    def __init__(self, tracking_uri: str) -> None:
        from mlflow import MlflowClient

        self.uri = tracking_uri
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except MnistSweepError:
            raise
        except Exception as exc:
            raise TrackingError(f"model registry {self.uri}: {what}: {first_line(exc)}") from None

    def holder(self, name: str, alias: str) -> ModelVersion | None:
        """The version ``alias`` points at; None when the model or the alias does not exist."""
        from mlflow.exceptions import MlflowException

        with self._errors(f"reading {name}@{alias}"):
            try:
                model = self.client.get_registered_model(name)
            except MlflowException as exc:
                if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                    return None
                raise
            version = dict(model.aliases or {}).get(alias)
            return self.client.get_model_version(name, str(version)) if version is not None else None

    def version(self, name: str, version: str) -> ModelVersion:
        from mlflow.exceptions import MlflowException

        with self._errors(f"reading {name} version {version}"):
            try:
                return self.client.get_model_version(name, version)
            except MlflowException as exc:
                if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                    raise ModelMissing(f"models:/{name}/{version}: no such model version in {self.uri}") from None
                raise

    def download_uri(self, name: str, version: str) -> str:
        with self._errors(f"locating {name} version {version}"):
            return str(self.client.get_model_version_download_uri(name, version))

    def all_versions(self, name: str) -> list[ModelVersion]:
        with self._errors(f"listing versions of {name}"):
            return list(self.client.search_model_versions(f"name = '{name}'"))

    def latest_number(self, name: str) -> int:
        return max((int(v.version) for v in self.all_versions(name)), default=0)

    def register(
        self, name: str, *, source: str, run_id: str | None, tags: Mapping[str, str], description: str
    ) -> ModelVersion:
        from mlflow.exceptions import MlflowException

        with self._errors(f"registering {source} as {name}"):
            try:
                self.client.create_registered_model(
                    name,
                    description="Digit classifiers from mnist-sweep studies, promoted behind a held-out test gate.",
                )
            except MlflowException as exc:
                if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
                    raise
            model_id = source.removeprefix("models:/")
            with process_tracking_uri(self.uri):  # MLflow resolves the logged model through it
                return self.client.create_model_version(
                    name,
                    source,
                    run_id=run_id,
                    tags=dict(tags),
                    description=description,
                    model_id=model_id if _MODEL_ID.match(model_id) else None,
                )

    def set_alias(self, name: str, alias: str, version: str) -> None:
        with self._errors(f"moving {name}@{alias} to version {version}"):
            self.client.set_registered_model_alias(name, alias, version)

    def set_tag(self, name: str, version: str, key: str, value: str) -> None:
        with self._errors(f"tagging {name} version {version}"):
            self.client.set_model_version_tag(name, version, key, value)


def current_champion(model_name: str, alias: str, *, tracking_uri: str | None = None) -> Champion | None:
    """The version holding ``model_name@alias``, or None when no version holds it."""
    uri = check_tracking_uri(tracking_uri or default_tracking_uri())
    holder = Registry(uri).holder(model_name, alias)
    if holder is None:
        return None
    tags = dict(holder.tags or {})
    try:
        params = json.loads(tags.get(TAG_PARAMS, "{}"))
    except ValueError:
        params = {}
    try:
        accuracy: float | None = float(tags[TAG_TEST_ACCURACY])
    except (KeyError, ValueError):
        accuracy = None
    return Champion(
        model_name=model_name,
        alias=alias,
        version=str(holder.version),
        source=str(holder.source),
        run_id=holder.run_id,
        dataset=version_dataset(holder, uri),
        params=params if isinstance(params, dict) else {},
        test_accuracy=accuracy,
        tags=tags,
    )


def resolve_model(model_uri: str, *, tracking_uri: str | None = None) -> ResolvedModel:
    """Where the files of ``model_uri`` are, with its registry version, run and dataset when known.

    Accepts ``models:/NAME@ALIAS``, ``models:/NAME/VERSION``, ``models:/m-<id>`` (a logged
    model, as ``mnist-sweep best`` prints), ``runs:/<run id>/...`` (a trial run: its logged
    model) and anything MLflow can download (a local folder, ``s3://...``).
    """
    uri = check_tracking_uri(tracking_uri or default_tracking_uri())
    expected = "expected models:/NAME@ALIAS, models:/NAME/VERSION, models:/m-<model id> or runs:/<run id>/model"
    if model_uri.startswith("runs:/"):
        run_id = model_uri.removeprefix("runs:/").strip("/").split("/", 1)[0]
        if not run_id:
            raise ModelMissing(f"{model_uri}: no run id; {expected}")
        logged = _run_tags(run_id, uri, model_uri).get(TAG_MODEL_URI)
        if not logged:
            raise ModelMissing(f"{model_uri}: run {run_id} logged no model (no {TAG_MODEL_URI} tag)")
        return _replace_uri(resolve_model(logged, tracking_uri=uri), model_uri)
    if not model_uri.startswith("models:/"):
        return ResolvedModel(uri=model_uri, artifact_uri=model_uri)
    rest = model_uri.removeprefix("models:/").strip("/")
    if _MODEL_ID.match(rest):
        try:
            location, source_run = logged_model(rest, tracking_uri=uri)
        except TrackingError as exc:
            raise ModelMissing(f"{model_uri}: {exc}") from None
        dataset = run_dataset(source_run, uri) if source_run else None
        return ResolvedModel(uri=model_uri, artifact_uri=location, run_id=source_run, dataset=dataset)
    registry = Registry(uri)
    if "@" in rest.rsplit("/", 1)[-1]:
        name, alias = rest.rsplit("@", 1)
        found = registry.holder(name, alias)
        if found is None:
            raise ModelMissing(f"{model_uri}: no version of registered model {name!r} holds alias {alias!r} in {uri}")
    elif "/" in rest:
        name, version = rest.rsplit("/", 1)
        if not version.isdigit():
            raise ModelMissing(f"{model_uri}: version {version!r} is not a number; {expected}")
        found = registry.version(name, version)
    else:
        raise ModelMissing(f"{model_uri}: {expected}")
    return ResolvedModel(
        uri=model_uri,
        artifact_uri=registry.download_uri(name, str(found.version)),
        name=name,
        version=str(found.version),
        run_id=found.run_id,
        dataset=version_dataset(found, uri),
    )


def load_model(model_uri: str, *, tracking_uri: str | None = None) -> keras.Model:
    """The Keras model behind ``model_uri`` (see :func:`resolve_model`); ModelMissing if it cannot load."""
    uri = check_tracking_uri(tracking_uri or default_tracking_uri())
    return load_resolved(resolve_model(model_uri, tracking_uri=uri), tracking_uri=uri)


def load_resolved(resolved: ResolvedModel, *, tracking_uri: str) -> keras.Model:
    """Download ``resolved``'s files into a scratch folder and load them with the tensorflow flavor."""
    import mlflow.artifacts
    import mlflow.tensorflow

    with tempfile.TemporaryDirectory(prefix="mnist-sweep-model-") as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=resolved.artifact_uri, dst_path=tmp, tracking_uri=tracking_uri
            )
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=_OPTIMIZER_WARNING, category=UserWarning)
                return mlflow.tensorflow.load_model(local)
        except Exception as exc:
            raise ModelMissing(f"cannot load model {resolved.uri}: {first_line(exc)}") from None


def version_dataset(version: ModelVersion, tracking_uri: str) -> str | None:
    """The dataset a registered version records, else the one its source run records."""
    dataset = (version.tags or {}).get(TAG_DATASET)
    if dataset:
        return str(dataset)
    return run_dataset(version.run_id, tracking_uri) if version.run_id else None


def run_dataset(run_id: str, tracking_uri: str) -> str | None:
    """The dataset tag of run ``run_id``; None when the run or the tag is missing."""
    try:
        return run_tags(run_id, tracking_uri=tracking_uri).get(TAG_DATASET)
    except TrackingError:
        return None


def _run_tags(run_id: str, tracking_uri: str, model_uri: str) -> dict[str, str]:
    try:
        return run_tags(run_id, tracking_uri=tracking_uri)
    except TrackingError as exc:
        raise ModelMissing(f"{model_uri}: {exc}") from None


def _replace_uri(resolved: ResolvedModel, uri: str) -> ResolvedModel:
    return replace(resolved, uri=uri)
