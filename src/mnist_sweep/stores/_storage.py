"""Opening Optuna storages: the embedded default, URL kinds, heartbeats, loading a study.

Every URL the project accepts for ``--storage`` goes through :func:`storage_kind` first, so an
unsupported one is a one-line config error before anything connects.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mnist_sweep.errors import ConfigError, MnistSweepError, StorageError, first_line
from mnist_sweep.stores._coordination import journal_path, retry_seconds, sqlalchemy_url, with_retry

if TYPE_CHECKING:
    import optuna

DEFAULT_STORAGE_FILE = "optuna.db"
# Heartbeats of running trials on PostgreSQL/MySQL; a trial silent for the grace period is lost.
HEARTBEAT_ENV = "MNIST_SWEEP_HEARTBEAT"
GRACE_ENV = "MNIST_SWEEP_GRACE"
DEFAULT_HEARTBEAT_SECONDS = 10
DEFAULT_GRACE_SECONDS = 30
# How often a lost trial is queued again before it is left FAIL.
MAX_RETRY = 2
# A command's first contact with a database: fail within about 10 s, not the outage window.
PREFLIGHT_SECONDS = 5.0
PREFLIGHT_CONNECT_TIMEOUT = 3


def default_storage(tracking_uri: str | None = None) -> str:
    """The embedded default: ``optuna.db`` (SQLite) beside the MLflow SQLite store."""
    from mnist_sweep.tracking import default_tracking_uri

    uri = tracking_uri or default_tracking_uri()
    if uri.startswith("sqlite:///"):
        db_path = Path(uri[len("sqlite:///") :])
        return (
            f"sqlite:///{db_path.parent / DEFAULT_STORAGE_FILE}"
            if str(db_path.parent) != "."
            else (f"sqlite:///{DEFAULT_STORAGE_FILE}")
        )
    return f"sqlite:///{DEFAULT_STORAGE_FILE}"


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for tags, logs and messages)."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def storage_kind(url: str) -> str:
    """``sqlite``, ``postgresql``, ``mysql`` or ``journal``; a ConfigError for anything else."""
    if url.startswith("journal:"):
        return "journal"
    scheme = url.split(":", 1)[0].split("+", 1)[0].lower() if "://" in url else ""
    if scheme in ("sqlite", "postgresql", "postgres", "mysql"):
        return "postgresql" if scheme == "postgres" else scheme
    if not scheme and url.endswith((".log", ".journal")):
        return "journal"
    raise ConfigError(
        f"storage {redact_url(url)!r}: unsupported; use sqlite:///file.db, postgresql://user@host/db, "
        "or journal:///path/file.log"
    )


def store_file(url: str) -> Path | None:
    """The file a SQLite or journal storage URL names (None for a server or an in-memory database)."""
    kind = storage_kind(url)
    if kind == "journal":
        return journal_path(url)
    if kind == "sqlite":
        path = url.split(":///", 1)[-1].split("?", 1)[0]
        return Path(path) if path and path != ":memory:" else None
    return None


def check_store_exists(url: str) -> str:
    """``url``, or StorageError when it names a SQLite or journal file that does not exist.

    Opening either creates the file, so a read-only command looking in the wrong folder would
    otherwise leave an empty store behind and then report "no study".
    """
    path = store_file(url)
    if path is not None and not path.exists():
        raise StorageError(
            f"no Optuna storage at {redact_url(url)} (run `mnist-sweep run` first, "
            "or pass --storage / $MNIST_SWEEP_STORAGE)"
        )
    return url


def preflight_storage(url: str) -> None:
    """Connect to a database storage once, so an unreachable one is one line within about 10 s.

    The long retry window (:func:`retry_seconds`) is for outages once a sweep is running; a
    wrong host or port at start-up should not take a minute to report.
    """
    if storage_kind(url) not in ("postgresql", "mysql"):
        return
    import sqlalchemy as sa

    engine = sa.create_engine(sqlalchemy_url(url), connect_args={"connect_timeout": PREFLIGHT_CONNECT_TIMEOUT})

    def connect() -> None:
        with engine.connect():
            pass

    try:
        with_retry(connect, what=f"storage {redact_url(url)}", seconds=min(retry_seconds(), PREFLIGHT_SECONDS))
    finally:
        engine.dispose()


def heartbeat_settings() -> tuple[int, int]:
    """(heartbeat interval, grace period) in seconds: ``$MNIST_SWEEP_HEARTBEAT`` / ``$MNIST_SWEEP_GRACE``.

    A running trial records a heartbeat every interval; one without a heartbeat for the
    grace period is taken for lost (its worker crashed or was killed).
    """
    values = {}
    for name, default in ((HEARTBEAT_ENV, DEFAULT_HEARTBEAT_SECONDS), (GRACE_ENV, DEFAULT_GRACE_SECONDS)):
        text = os.environ.get(name, "").strip()
        if not text:
            values[name] = default
            continue
        if not text.isdigit() or int(text) < 1:
            raise ConfigError(f"{name}={text!r}: expected a whole number of seconds >= 1")
        values[name] = int(text)
    interval, grace = values[HEARTBEAT_ENV], values[GRACE_ENV]
    if grace <= interval:
        raise ConfigError(f"{GRACE_ENV}={grace} must exceed {HEARTBEAT_ENV}={interval} (a few heartbeats may be late)")
    return interval, grace


def open_storage(
    url: str,
    *,
    heartbeat: bool = False,
    on_lost_trial: Callable[[optuna.Study, optuna.trial.FrozenTrial], None] | None = None,
) -> optuna.storages.BaseStorage:
    """An Optuna storage for ``url``; heartbeats (crash recovery) on PostgreSQL/MySQL when asked.

    ``on_lost_trial`` runs for each trial failed for lack of heartbeats (default: Optuna's
    ``RetryHeartbeatStaleTrialCallback``, which queues it again).
    """
    import optuna

    kind = storage_kind(url)
    try:
        if kind == "journal":
            from optuna.storages.journal import JournalFileBackend

            path = journal_path(url)
            if not path.parent.is_dir():
                raise StorageError(f"storage {url}: folder {path.parent} does not exist")
            return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
        kwargs: dict[str, Any] = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            if heartbeat and kind != "sqlite":
                interval, grace = heartbeat_settings()
                kwargs.update(
                    heartbeat_interval=interval,
                    grace_period=grace,
                    heartbeat_stale_trial_callback=on_lost_trial
                    or optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY),
                )
            engine_kwargs = {"connect_args": {"connect_timeout": 10}} if kind == "postgresql" else {}
            return optuna.storages.RDBStorage(sqlalchemy_url(url), engine_kwargs=engine_kwargs, **kwargs)
    except MnistSweepError:
        raise
    except Exception as exc:
        raise StorageError(f"storage {redact_url(url)}: {first_line(exc)}") from None


def load_study(name: str, storage: str) -> optuna.Study:
    """An existing study; StorageError lists the studies there when ``name`` is not one."""
    import optuna

    backend = open_storage(check_store_exists(storage))
    try:
        return optuna.load_study(study_name=name, storage=backend)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(backend, include_best_trial=False)]
        known = ", ".join(names) if names else "none"
        raise StorageError(f"no study {name!r} in {redact_url(storage)} (studies there: {known})") from None
