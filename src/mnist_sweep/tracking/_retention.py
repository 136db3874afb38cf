"""Retention of trial runs: delete the runs (and logged models) of old nights that no registered version uses."""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Callable
from typing import Any

from mnist_sweep.contract import TAG_MODEL_URI, TAG_STUDY, TAG_TRIAL_NUMBER
from mnist_sweep.tracking._runs import Tracker

log = logging.getLogger(__name__)


def delete_old_trial_runs(tracker: Tracker, *, job: str, night: dt.date, keep: int) -> int:
    """Delete the trial runs (and their logged models) of nights ``keep`` or more days old.

    A run whose model is a registered model version (any registered model), or that is the
    source run of one, is kept; so are the nightly and study runs that hold the reports.
    """
    client = tracker.client
    registered_runs, registered_models = _registered_sources(tracker)
    pattern = re.compile(rf"^{re.escape(job)}-.+-(\d{{4}}-\d{{2}}-\d{{2}})$")
    runs = _every_page(
        lambda token: client.search_runs(
            [tracker.experiment_id],
            filter_string=f"tags.`{TAG_TRIAL_NUMBER}` != ''",
            max_results=1000,
            page_token=token,
        )
    )
    deleted = 0
    for run in runs:
        tags = run.data.tags
        match = pattern.match(tags.get(TAG_STUDY, ""))
        if match is None or (night - dt.date.fromisoformat(match.group(1))).days < keep:
            continue
        model_uri = tags.get(TAG_MODEL_URI, "")
        model_id = model_uri.removeprefix("models:/") if model_uri.startswith("models:/m-") else None
        if run.info.run_id in registered_runs or (model_id is not None and model_id in registered_models):
            continue
        if model_id is not None:
            try:
                client.delete_logged_model(model_id)
            except Exception as exc:  # already gone, or a store without logged models
                log.debug("could not delete logged model %s: %s", model_id, exc)
        client.delete_run(run.info.run_id)
        deleted += 1
    return deleted


def _registered_sources(tracker: Tracker) -> tuple[set[str], set[str]]:
    """Run ids and logged-model ids behind every registered model version of the store."""
    runs: set[str] = set()
    models: set[str] = set()
    client = tracker.client
    for version in _every_page(lambda token: client.search_model_versions(max_results=1000, page_token=token)):
        if version.run_id:
            runs.add(version.run_id)
        model_id = getattr(version, "model_id", None)
        if model_id:
            models.add(model_id)
        source = version.source or ""
        if source.startswith("models:/m-"):
            models.add(source.removeprefix("models:/").split("/", 1)[0])
    return runs, models


def _every_page(search: Callable[[str | None], Any]) -> list[Any]:
    """All results of a paged MLflow search (``search(page_token)`` returns a PagedList)."""
    items: list[Any] = []
    token: str | None = None
    while True:
        page = search(token)
        items.extend(page)
        token = getattr(page, "token", None)
        if not token:
            return items
