"""Links into MLflow 3.17's UI: a study's training runs as a saved view, a run, a logged model.

What the UI reads from a URL (found in its JS bundle, ``mlflow/server/js/build``): the route
``#/experiments/<id>/runs``; ``workflowType=machine_learning`` for the model-training view
instead of the GenAI overview; the search facets ``searchFilter``, ``orderByKey``,
``orderByAsc``, ``startTime``, ``lifecycleFilter``, ``modelVersionFilter``, ``datasetsFilter``;
and ``viewStateShareKey=<key>``, which loads the facets *and* the table's columns from the
experiment tag ``mlflow.sharedViewState.<key>`` (JSON). Columns cannot be given in the URL
itself, so a study's page is a saved view of that kind, rewritten each time it is asked for.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from mnist_sweep.contract import (
    MLFLOW_SHARED_VIEW_PREFIX,
    ROLE_STUDY,
    TAG_OBJECTIVE,
    TAG_ROLE,
    TAG_SAMPLED,
    TAG_STUDY,
    TAG_TRIAL_NUMBER,
)
from mnist_sweep.errors import TrackingError, first_line
from mnist_sweep.tracking._runs import check_tracking_uri, default_tracking_uri

DEFAULT_UI = "http://127.0.0.1:5000"
"""Where ``mnist-sweep ui`` serves a local store by default."""
WORKFLOW = "machine_learning"
COLUMNS = ("Dataset", "Source", "Version", "Models")  # Version: the first characters of the git commit
METRIC_COLUMNS = ("test_accuracy", "train_seconds")


@dataclass(frozen=True)
class StudyPage:
    """A study's training-runs page: which study, in which experiment, at which URL."""

    study: str
    experiment_id: str
    url: str


def ui_base_url(tracking_uri: str | None = None, *, host: str = "127.0.0.1", port: int = 5000) -> str:
    """The MLflow UI of ``tracking_uri``: the server itself, or where ``mnist-sweep ui`` serves a local store."""
    uri = tracking_uri or default_tracking_uri()
    if uri.startswith(("http://", "https://")):
        return uri.rstrip("/")
    return f"http://{host}:{port}"


def run_link(base_url: str, run_id: str) -> str:
    """A run's page (the UI's ``#/runs/<id>`` finds its experiment)."""
    return f"{base_url.rstrip('/')}/#/runs/{run_id}"


def _column(kind: str, name: str) -> str:
    return f"{kind}.`{name}`"


def study_runs_page(study: str | None, *, tracking_uri: str | None = None, base_url: str) -> StudyPage | None:
    """The training-runs page of ``study`` (default: the latest study in the store), sorted by its objective.

    Saves the page's view (filter, order, columns) as an experiment tag, so the URL stays short.
    None when ``study`` is None and the store has no study yet; TrackingError when ``study`` is unknown.
    """
    from mlflow import MlflowClient

    uri = check_tracking_uri(tracking_uri or default_tracking_uri())
    client = MlflowClient(tracking_uri=uri)
    wanted = f"tags.`{TAG_ROLE}` = '{ROLE_STUDY}'"
    if study is not None:
        wanted += f" and tags.`{TAG_STUDY}` = '{_quoted(study)}'"
    try:
        experiments = [e.experiment_id for e in client.search_experiments()]
        parents = client.search_runs(experiments, filter_string=wanted, order_by=["start_time DESC"], max_results=1)
    except Exception as exc:
        raise TrackingError(f"tracking store {uri}: {first_line(exc)}") from None
    if not parents:
        if study is None:
            return None
        raise TrackingError(f"tracking store {uri}: no MLflow runs of study {study!r}")
    parent = parents[0]
    name = parent.data.tags[TAG_STUDY]
    experiment_id = str(parent.info.experiment_id)
    direction, _, metric = parent.data.tags.get(TAG_OBJECTIVE, "maximize val_accuracy").partition(" ")
    trials_filter = f"tags.`{TAG_STUDY}` = '{_quoted(name)}' and tags.`{TAG_TRIAL_NUMBER}` LIKE '%'"
    trials = client.search_runs(
        [experiment_id], filter_string=trials_filter, order_by=["start_time DESC"], max_results=1
    )
    sampled = trials[0].data.tags.get(TAG_SAMPLED, "") if trials else ""
    columns = [
        *(_column("attributes", c) for c in COLUMNS),
        *(_column("params", p) for p in sampled.split(",") if p),
        *(_column("metrics", m) for m in (f"final_{metric}", *METRIC_COLUMNS)),
    ]
    view = {
        "searchFilter": trials_filter,
        "orderByKey": _column("metrics", f"final_{metric}"),
        "orderByAsc": direction == "minimize",
        "selectedColumns": columns,
        "runListHidden": False,
    }
    key = "mnist-sweep-" + re.sub(r"[^A-Za-z0-9_-]", "-", name)
    try:
        client.set_experiment_tag(experiment_id, MLFLOW_SHARED_VIEW_PREFIX + key, json.dumps(view))
    except Exception as exc:
        raise TrackingError(f"tracking store {uri}: cannot save the study's view: {first_line(exc)}") from None
    query = urlencode({"viewStateShareKey": key, "workflowType": WORKFLOW}, quote_via=quote)
    return StudyPage(
        study=name,
        experiment_id=experiment_id,
        url=f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs?{query}",
    )


def _quoted(value: str) -> str:
    return value.replace("'", "\\'")
