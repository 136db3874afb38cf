"""What several workers sharing one Optuna study need beyond Optuna itself.

* :class:`StudyMutex`: a short critical section across processes and machines, so that
  "count the trials, then ask for one" is a single step and the budget holds exactly. A
  PostgreSQL transaction-level advisory lock, MySQL ``GET_LOCK``, ``fcntl.flock`` on a file
  beside a journal file, or a plain thread lock for SQLite (one process only).
* :func:`with_retry`: bounded retry with exponential backoff while the database or the tracking
  server cannot be reached, then one clear line (:class:`StorageError` / :class:`TrackingError`).
* Worker identity (``host:pid``) and whether a worker on this machine is still alive, for
  storages without heartbeats (journal files, SQLite).

Optuna's own distributed mode (a shared storage, heartbeats, ``RetryHeartbeatStaleTrialCallback``)
does the rest; nothing here replaces it.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from mnist_sweep.errors import ConfigError, MnistSweepError, StorageError

if TYPE_CHECKING:
    import sqlalchemy

log = logging.getLogger(__name__)

T = TypeVar("T")

RETRY_ENV = "MNIST_SWEEP_RETRY_SECONDS"
DEFAULT_RETRY_SECONDS = 60.0
_FIRST_DELAY = 0.5
_MAX_DELAY = 10.0
MYSQL_LOCK_TIMEOUT = 300

# Exception class names (with the module they come from) that mean "cannot reach the server
# right now" rather than "this request is wrong".
_TRANSIENT_NAMES: dict[str, tuple[str, ...]] = {
    "OperationalError": ("sqlalchemy", "psycopg2", "psycopg", "pymysql", "MySQLdb"),
    "InterfaceError": ("sqlalchemy", "psycopg2", "psycopg", "pymysql", "MySQLdb"),
    "DisconnectionError": ("sqlalchemy",),
    "ConnectionError": ("requests",),
    "Timeout": ("requests",),
    "ConnectTimeout": ("requests",),
    "ReadTimeout": ("requests",),
    "MaxRetryError": ("urllib3",),
    "NewConnectionError": ("urllib3",),
    "ProtocolError": ("urllib3",),
}
_TRANSIENT_HTTP = (408, 425, 429, 500, 502, 503, 504)


# --------------------------------------------------------------------------- retry


def retry_seconds() -> float:
    """How long to keep retrying an unreachable database or server (``$MNIST_SWEEP_RETRY_SECONDS``)."""
    value = os.environ.get(RETRY_ENV, "").strip()
    if not value:
        return DEFAULT_RETRY_SECONDS
    try:
        seconds = float(value)
    except ValueError:
        raise ConfigError(f"{RETRY_ENV}={value!r}: expected a number of seconds") from None
    if not seconds >= 0:
        raise ConfigError(f"{RETRY_ENV}={value!r}: must be >= 0")
    return seconds


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _transient_cause(exc: BaseException) -> BaseException | None:
    """The exception in ``exc``'s chain that says a server could not be reached, if any."""
    for link in _chain(exc):
        if getattr(link, "retries_exhausted", False):  # an outer retry must not start over
            return None
        if isinstance(link, ConnectionError | TimeoutError):
            return link
        name, module = type(link).__name__, type(link).__module__
        if module.startswith(_TRANSIENT_NAMES.get(name, ())):
            return link
        if module == "sqlite3" and name == "OperationalError" and re.search(r"locked|busy", str(link)):
            return link
        status = getattr(link, "get_http_status_code", None)
        if callable(status) and name == "RestException":  # the tracking server answered 5xx / 429
            try:
                if int(status()) in _TRANSIENT_HTTP:
                    return link
            except (TypeError, ValueError):
                pass
    return None


def is_transient(exc: BaseException) -> bool:
    """True when ``exc`` (or what caused it) means a server is unreachable, not a bad request."""
    return _transient_cause(exc) is not None


def describe(exc: BaseException) -> str:
    """The most telling first line of ``exc``: the unreachable-server cause when there is one."""
    cause = _transient_cause(exc) or exc
    lines = [line.strip() for line in str(cause).strip().splitlines() if line.strip()]
    text = lines[0] if lines else type(cause).__name__
    text = re.sub(r"^\([\w.]+\)\s*", "", text)  # SQLAlchemy's "(psycopg.OperationalError) " prefix
    return text[:300]


def with_retry(
    fn: Callable[[], T],
    *,
    what: str,
    error: type[MnistSweepError] = StorageError,
    seconds: float | None = None,
    hint: str = "",
) -> T:
    """``fn()``, retried with exponential backoff while it fails because a server is unreachable.

    Other errors propagate at once. After ``seconds`` (default :func:`retry_seconds`) of
    failures, raises ``error`` with one line naming ``what``, how long it tried and why.
    """
    budget = retry_seconds() if seconds is None else seconds
    started = time.monotonic()
    delay = _FIRST_DELAY
    while True:
        try:
            return fn()
        except Exception as exc:
            if not is_transient(exc):
                raise
            waited = time.monotonic() - started
            left = budget - waited
            if left <= 0:
                message = f"{what}: unreachable, gave up after {waited:.0f} s of retries ({describe(exc)})"
                gave_up = error(message + (f"; {hint}" if hint else ""))
                gave_up.retries_exhausted = True  # type: ignore[attr-defined]
                raise gave_up from None
            pause = min(delay, left)
            log.warning("%s: %s; retrying in %.1f s (giving up in %.0f s)", what, describe(exc), pause, left)
            time.sleep(pause)
            delay = min(delay * 2, _MAX_DELAY)


# --------------------------------------------------------------------------- workers


def worker_id() -> str:
    """This process as ``host:pid``: recorded on each trial it runs."""
    return f"{socket.gethostname()}:{os.getpid()}"


def parse_worker_id(value: object) -> tuple[str, int] | None:
    if not isinstance(value, str) or ":" not in value:
        return None
    host, _, pid = value.rpartition(":")
    return (host, int(pid)) if pid.isdigit() else None


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this machine is alive (a zombie counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def local_worker_alive(value: object) -> bool | None:
    """For a ``host:pid`` worker id: alive (True), dead (False), or unknown (another machine: None)."""
    parsed = parse_worker_id(value)
    if parsed is None:
        return None
    host, pid = parsed
    if host != socket.gethostname():
        return None
    return pid == os.getpid() or pid_alive(pid)


# --------------------------------------------------------------------------- the study mutex


def journal_path(url: str) -> Path:
    """The file of a journal storage URL: ``journal:///abs/path/study.log`` -> ``/abs/path/study.log``.

    ``journal://rel/study.log`` and ``journal:rel/study.log`` are relative to the working
    folder; a bare path ending in ``.log`` / ``.journal`` is taken as is.
    """
    if url.startswith("journal:"):
        rest = url[len("journal:") :]
        rest = rest[2:] if rest.startswith("//") else rest
    else:
        rest = url
    if rest.startswith("//"):
        rest = "/" + rest.lstrip("/")
    if not rest:
        raise ConfigError(f"storage {url!r}: no file; use journal:///absolute/path/study.log")
    return Path(rest)


def sqlalchemy_url(url: str) -> str:
    """``url`` as SQLAlchemy reads it: ``postgres://`` spelled ``postgresql://`` (psycopg 3).

    A bare ``postgresql://`` means psycopg 3, the driver this project ships, so the stock
    MLflow, Optuna and optuna-dashboard tools accept the same URLs. An explicit
    ``postgresql+psycopg2://`` is kept when psycopg2 is importable, else a ConfigError.
    """
    url = re.sub(r"^postgres://", "postgresql://", url)
    if url.startswith("postgresql+psycopg2://") and importlib.util.find_spec("psycopg2") is None:
        shown = re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)
        raise ConfigError(f"{shown}: psycopg2 is not installed; use postgresql://... (psycopg 3 is)")
    return url


def _lock_key(name: str) -> int:
    digest = hashlib.blake2b(f"mnist-sweep:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class StudyMutex:
    """Mutual exclusion for one study across threads, processes and machines.

    Held only for milliseconds (count trials, fail lost ones, ask, record the params), so
    a plain blocking lock is right. ``kind`` is :func:`mnist_sweep.stores.storage_kind`'s.
    """

    def __init__(self, url: str, study_name: str, *, kind: str) -> None:
        self.url = url
        self.study_name = study_name
        self.kind = kind
        self._local = threading.Lock()
        self._engine: sqlalchemy.engine.Engine | None = None

    def _get_engine(self) -> sqlalchemy.engine.Engine:
        if self._engine is None:
            import sqlalchemy as sa

            connect_args: dict[str, Any] = {"connect_timeout": 10} if self.kind == "postgresql" else {}
            self._engine = sa.create_engine(
                sqlalchemy_url(self.url), connect_args=connect_args, pool_pre_ping=True, pool_size=2
            )
        return self._engine

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """The lock for the duration of the block."""
        with self._local:
            if self.kind == "postgresql":
                yield from self._hold_postgresql()
            elif self.kind == "mysql":
                yield from self._hold_mysql()
            elif self.kind == "journal":
                yield from self._hold_file()
            else:
                yield

    def _hold_postgresql(self) -> Iterator[None]:
        import sqlalchemy as sa

        # Transaction-level: released at commit or rollback, and by the server if this
        # connection dies, so a killed worker never leaves it held.
        with self._get_engine().begin() as conn:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _lock_key(self.study_name)})
            yield

    def _hold_mysql(self) -> Iterator[None]:
        import sqlalchemy as sa

        name = f"mnist-sweep:{self.study_name}"[:64]
        with self._get_engine().connect() as conn:
            got = conn.execute(
                sa.text("SELECT GET_LOCK(:name, :timeout)"), {"name": name, "timeout": MYSQL_LOCK_TIMEOUT}
            )
            if got.scalar() != 1:
                raise StorageError(f"study {self.study_name!r}: could not take its lock in {MYSQL_LOCK_TIMEOUT} s")
            try:
                yield
            finally:
                conn.execute(sa.text("SELECT RELEASE_LOCK(:name)"), {"name": name})

    def _hold_file(self) -> Iterator[None]:
        import fcntl

        path = journal_path(self.url)
        lock_path = path.with_name(path.name + ".mutex")
        with open(lock_path, "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
