"""``mnist-sweep dashboard``: optuna-dashboard on the study storage, bound to this machine only.

:func:`prepare_dashboard` builds the ``optuna-dashboard`` command line for any storage the
project supports (SQLite, PostgreSQL, MySQL, journal files); the CLI then ``exec``s it, as
``mnist-sweep ui`` does for MLflow. A PostgreSQL password travels in ``PGPASSWORD`` rather
than on the command line, where any user of the machine could read it in ``ps``.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sys
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mnist_sweep.contract import ATTR_OBJECTIVE_METRIC
from mnist_sweep.errors import DashboardError

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
EXECUTABLE = "optuna-dashboard"


@dataclass(frozen=True)
class DashboardLaunch:
    """The command that starts optuna-dashboard, its environment, and the page to open."""

    argv: list[str]
    env: Mapping[str, str] = field(default_factory=dict)
    url: str = ""
    storage_shown: str = ""


def dashboard_storage_args(url: str) -> tuple[list[str], dict[str, str]]:
    """optuna-dashboard's storage arguments for one of the project's storage URLs, and extra env vars.

    optuna-dashboard reads a journal file given as a bare path (with ``--storage-class
    JournalFileStorage`` so it never guesses), and RDB URLs as SQLAlchemy does: ``postgres://``
    is spelled ``postgresql://`` there.
    """
    from mnist_sweep.stores import sqlalchemy_url, storage_kind

    kind = storage_kind(url)
    if kind == "journal":
        return [journal_path(url), "--storage-class", "JournalFileStorage"], {}
    env: dict[str, str] = {}
    if kind == "postgresql":
        url = sqlalchemy_url(url)
        match = re.match(r"^(?P<head>[^:]+://[^:/@]+):(?P<password>[^@]*)@(?P<tail>.*)$", url)
        if match:
            env["PGPASSWORD"] = match["password"]
            url = f"{match['head']}@{match['tail']}"
    return [url, "--storage-class", "RDBStorage"], env


def journal_path(url: str) -> str:
    """The file of a journal storage URL, as :func:`mnist_sweep.study.open_storage` reads it."""
    path = url.split("journal://", 1)[-1] if url.startswith("journal:") else url
    return path.removeprefix("/") if path.startswith("//") else path


def prepare_dashboard(
    storage: str,
    *,
    study: str | None = None,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
) -> DashboardLaunch:
    """The optuna-dashboard launch for ``storage``, opening on ``study``'s page when one is named.

    A named study must exist (StorageError lists the ones there). Its objective gets the study's
    metric name (``val_accuracy`` rather than "Objective 0") if it has none yet.
    """
    from mnist_sweep.stores import check_store_exists, open_storage, redact_url

    check_store_exists(storage)
    storage_args, env = dashboard_storage_args(storage)
    base = f"http://{_url_host(host)}:{port}/dashboard/"
    url = base
    if study is not None:
        url = f"{base}studies/{_study_id(study, storage)}"
    else:
        open_storage(storage)  # fail here, with our message, rather than in the dashboard
    argv = [_executable(), *storage_args, "--host", host, "--port", str(port)]
    return DashboardLaunch(argv=argv, env=env, url=url, storage_shown=redact_url(storage))


def _study_id(name: str, storage: str) -> int:
    import optuna

    from mnist_sweep.stores import load_study, open_storage

    study = load_study(name, storage)
    metric = study.user_attrs.get(ATTR_OBJECTIVE_METRIC)
    if metric and not study.metric_names and len(study.directions) == 1:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([str(metric)])
    return int(open_storage(storage).get_study_id_from_name(name))


def _executable() -> str:
    beside = Path(sys.executable).with_name(EXECUTABLE)
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(EXECUTABLE)
    if found:
        return found
    raise DashboardError(f"{EXECUTABLE} is not installed here: pip install optuna-dashboard")


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host
