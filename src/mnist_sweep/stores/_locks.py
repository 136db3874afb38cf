"""A job lock kept in the shared Optuna storage, so it holds across machines.

Every machine that runs a job sees the same Optuna storage, so that is where the lock lives:
for a database storage (SQLite, PostgreSQL, MySQL) a row in a small ``mnist_sweep_locks`` table
of the same database; for a journal file storage a JSON record beside the journal file, read and
written under ``fcntl.flock``. A lock has an owner (``host:pid:token``) and an expiry that a
background thread pushes forward while the owner runs. A process that dies stops refreshing, so
its lock expires after ``ttl`` seconds and the next start takes it over; until then a second
start gets :class:`~mnist_sweep.errors.AlreadyRunning` naming the owner.

Taking a lock is one atomic statement either way: an ``INSERT`` (the name is the primary key),
or an ``UPDATE ... WHERE expires_at < now`` for an expired row, so two machines racing for a
free or stale lock cannot both win. Expiry compares wall clocks of different machines: keep
them in sync (NTP) and ``ttl`` far above any skew.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from mnist_sweep.errors import AlreadyRunning, ConfigError, LockLost, MnistSweepError, StorageError, first_line

if TYPE_CHECKING:
    import sqlalchemy

log = logging.getLogger(__name__)
_T = TypeVar("_T")

__all__ = ["DEFAULT_TTL", "LOCK_TABLE", "JobLock", "LockInfo", "LockLost", "hold", "lock_holder"]

LOCK_TABLE = "mnist_sweep_locks"
DEFAULT_TTL = 300.0
# The heartbeat runs this many times per ttl: a few missed refreshes do not lose the lock.
REFRESHES_PER_TTL = 5


@dataclass(frozen=True)
class LockInfo:
    """Who holds a lock, since when, and until when without another heartbeat (epoch seconds)."""

    name: str
    owner: str
    host: str
    pid: int
    acquired_at: float
    heartbeat_at: float
    expires_at: float

    def expired(self, now: float | None = None) -> bool:
        return self.expires_at < (time.time() if now is None else now)

    def describe(self, now: float | None = None) -> str:
        now = time.time() if now is None else now
        return (
            f"host {self.host} pid {self.pid} since {_utc(self.acquired_at)} "
            f"(last heartbeat {max(0.0, now - self.heartbeat_at):.0f} s ago; "
            f"expires at {_utc(self.expires_at)} unless refreshed)"
        )


class _Store(Protocol):
    def insert(self, info: LockInfo) -> bool: ...
    def take_over(self, info: LockInfo, now: float) -> bool: ...
    def refresh(self, name: str, owner: str, now: float, expires_at: float) -> bool: ...
    def release(self, name: str, owner: str) -> None: ...
    def get(self, name: str) -> LockInfo | None: ...
    def close(self) -> None: ...


class JobLock:
    """The lock ``name`` in the storage at ``storage_url``; use it as a context manager.

    ``acquire`` raises :class:`AlreadyRunning` while a live owner holds it and takes over an
    expired one. While held, a daemon thread refreshes the expiry every ``ttl / 5`` seconds;
    :meth:`check` raises :class:`LockLost` if that failed for longer than ``ttl`` or another
    process took the lock over, so the owner can stop before doing anything irreversible.
    """

    def __init__(self, storage_url: str, name: str, *, ttl: float = DEFAULT_TTL, label: str | None = None) -> None:
        if not ttl > 0:
            raise ConfigError(f"lock ttl must be > 0 seconds, got {ttl!r}")
        self.storage_url = storage_url
        self.name = name
        self.label = label or name
        self.ttl = float(ttl)
        self.owner = f"{platform.node()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self.taken_over: LockInfo | None = None
        self._store: _Store | None = None
        self._held = False
        self._lost_reason: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._expires_at = 0.0

    # -- public -----------------------------------------------------------------------------

    def acquire(self) -> JobLock:
        """Take the lock (or an expired one); AlreadyRunning while a live owner holds it.

        An unreachable storage is retried like every storage call (``$MNIST_SWEEP_RETRY_SECONDS``)
        before it becomes a :class:`StorageError`.
        """
        _storage_call(self.storage_url, f"taking lock {self.name}", self._try_acquire)
        self._held = True
        self._stop.clear()
        self._thread = threading.Thread(target=self._heartbeat, name=f"lock-heartbeat {self.name}", daemon=True)
        self._thread.start()
        return self

    def _try_acquire(self) -> None:
        store = self._open()
        now = time.time()
        mine = LockInfo(
            name=self.name,
            owner=self.owner,
            host=platform.node(),
            pid=os.getpid(),
            acquired_at=now,
            heartbeat_at=now,
            expires_at=now + self.ttl,
        )
        if not store.insert(mine):
            current = store.get(self.name)
            if current is not None and current.owner == self.owner:  # our insert, retried after a lost reply
                self._expires_at = current.expires_at
                return
            if current is not None and not current.expired(now):
                raise AlreadyRunning(f"{self.label} is already running: held by {current.describe(now)}")
            if not store.take_over(mine, now):  # someone else was faster, or refreshed just now
                current = store.get(self.name)
                holder = current.describe() if current else "another process"
                raise AlreadyRunning(f"{self.label} is already running: held by {holder}")
            self.taken_over = current
            if current is not None:
                log.warning(
                    "took over the expired lock %s of host %s pid %s (acquired %s, last heartbeat %s)",
                    self.name,
                    current.host,
                    current.pid,
                    _utc(current.acquired_at),
                    _utc(current.heartbeat_at),
                )
        self._expires_at = mine.expires_at

    def release(self) -> None:
        """Stop the heartbeat and delete the lock if it is still ours."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._held and self._store is not None:
            try:
                self._store.release(self.name, self.owner)
            except Exception as exc:  # it expires on its own; do not hide the job's own outcome
                log.warning("could not release lock %s: %s (it expires after %g s)", self.name, exc, self.ttl)
        self._held = False
        if self._store is not None:
            self._store.close()
            self._store = None

    def check(self) -> None:
        """Raise :class:`LockLost` unless this process still holds the lock."""
        if not self._held:
            raise LockLost(f"lock {self.name} is not held")
        if self._lost_reason is None and time.time() > self._expires_at:
            self._lost_reason = f"no heartbeat reached the storage before the lock expired at {_utc(self._expires_at)}"
        if self._lost_reason is not None:
            raise LockLost(f"lost lock {self.name}: {self._lost_reason}")

    def __enter__(self) -> JobLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    # -- internals --------------------------------------------------------------------------

    def _open(self) -> _Store:
        if self._store is None:
            self._store = _open_store(self.storage_url)
        return self._store

    def _heartbeat(self) -> None:
        interval = self.ttl / REFRESHES_PER_TTL
        while not self._stop.wait(interval):
            now = time.time()
            expires_at = now + self.ttl
            try:
                assert self._store is not None
                still_mine = self._store.refresh(self.name, self.owner, now, expires_at)
            except Exception as exc:
                log.warning("lock %s: heartbeat failed: %s", self.name, exc)
                continue
            if not still_mine:
                self._lost_reason = "another process took it over (this one stalled past the ttl)"
                log.error("lock %s: %s", self.name, self._lost_reason)
                return
            self._expires_at = expires_at


def lock_holder(storage_url: str, name: str) -> LockInfo | None:
    """The current record of lock ``name`` (expired or not), or None when nobody holds it."""

    def read() -> LockInfo | None:
        store = _open_store(storage_url)
        try:
            return store.get(name)
        finally:
            store.close()

    return _storage_call(storage_url, f"reading lock {name}", read)


@contextlib.contextmanager
def hold(storage_url: str, name: str, *, ttl: float = DEFAULT_TTL, label: str | None = None) -> Iterator[JobLock]:
    """``with hold(url, name): ...``: the lock for the duration of the block."""
    lock = JobLock(storage_url, name, ttl=ttl, label=label)
    with lock:
        yield lock


# --------------------------------------------------------------------------- backends


def _open_store(storage_url: str) -> _Store:
    from mnist_sweep.stores._coordination import journal_path, sqlalchemy_url
    from mnist_sweep.stores._storage import storage_kind

    if storage_kind(storage_url) == "journal":
        return _FileStore(journal_path(storage_url))
    return _TableStore(sqlalchemy_url(storage_url))


def _storage_call(storage_url: str, what: str, call: Callable[[], _T]) -> _T:
    """``call()``, retried while the storage is unreachable; any other failure in one line."""
    from mnist_sweep.stores._coordination import with_retry
    from mnist_sweep.stores._storage import redact_url

    where = f"storage {redact_url(storage_url)}: {what}"
    try:
        return with_retry(call, what=where, error=StorageError)
    except MnistSweepError:
        raise
    except Exception as exc:
        raise StorageError(f"{where} (table {LOCK_TABLE}): {first_line(exc)}") from None


class _TableStore:
    """Locks as rows of ``mnist_sweep_locks`` in the storage's own database."""

    def __init__(self, url: str) -> None:
        import sqlalchemy as sa

        self._sa = sa
        connect_args: dict[str, Any] = {"timeout": 30} if url.startswith("sqlite") else {}
        if url.startswith("postgresql"):
            connect_args = {"connect_timeout": 10}
        self.engine: sqlalchemy.engine.Engine = sa.create_engine(url, connect_args=connect_args, pool_pre_ping=True)
        metadata = sa.MetaData()
        self.table = sa.Table(
            LOCK_TABLE,
            metadata,
            sa.Column("name", sa.String(255), primary_key=True),
            sa.Column("owner", sa.String(255), nullable=False),
            sa.Column("host", sa.String(255), nullable=False),
            sa.Column("pid", sa.Integer, nullable=False),
            sa.Column("acquired_at", sa.Float, nullable=False),
            sa.Column("heartbeat_at", sa.Float, nullable=False),
            sa.Column("expires_at", sa.Float, nullable=False),
        )
        try:
            metadata.create_all(self.engine, checkfirst=True)
        except sa.exc.SQLAlchemyError:
            # Another machine created it between our check and our CREATE; fine if it exists now.
            if not sa.inspect(self.engine).has_table(LOCK_TABLE):
                raise

    def insert(self, info: LockInfo) -> bool:
        try:
            with self.engine.begin() as conn:
                conn.execute(self.table.insert().values(**asdict(info)))
        except self._sa.exc.IntegrityError:
            return False
        return True

    def take_over(self, info: LockInfo, now: float) -> bool:
        values = asdict(info)
        del values["name"]
        table = self.table
        with self.engine.begin() as conn:
            result = conn.execute(
                table.update().where(table.c.name == info.name, table.c.expires_at < now).values(**values)
            )
        return bool(result.rowcount == 1)

    def refresh(self, name: str, owner: str, now: float, expires_at: float) -> bool:
        table = self.table
        with self.engine.begin() as conn:
            result = conn.execute(
                table.update()
                .where(table.c.name == name, table.c.owner == owner)
                .values(heartbeat_at=now, expires_at=expires_at)
            )
        return bool(result.rowcount == 1)

    def release(self, name: str, owner: str) -> None:
        table = self.table
        with self.engine.begin() as conn:
            conn.execute(table.delete().where(table.c.name == name, table.c.owner == owner))

    def get(self, name: str) -> LockInfo | None:
        with self.engine.connect() as conn:
            row = conn.execute(self.table.select().where(self.table.c.name == name)).mappings().first()
        return LockInfo(**row) if row is not None else None

    def close(self) -> None:
        self.engine.dispose()


class _FileStore:
    """Locks as JSON records in ``<journal>.locks.json``, changed only under ``fcntl.flock``."""

    def __init__(self, journal: Path) -> None:
        self.path = journal.with_name(journal.name + ".locks.json")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.touch(exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create the lock file {self.path}: {exc.strerror or exc}") from None

    @contextlib.contextmanager
    def _records(self) -> Iterator[dict[str, dict[str, Any]]]:
        import fcntl

        with open(self.path, "r+", encoding="utf-8") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                text = handle.read()
                records: dict[str, dict[str, Any]] = json.loads(text) if text.strip() else {}
                before = dict(records)
                yield records
                if records != before:
                    handle.seek(0)
                    handle.truncate()
                    handle.write(json.dumps(records, indent=1, sort_keys=True))
                    handle.flush()
                    os.fsync(handle.fileno())
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def insert(self, info: LockInfo) -> bool:
        with self._records() as records:
            if info.name in records:
                return False
            records[info.name] = asdict(info)
        return True

    def take_over(self, info: LockInfo, now: float) -> bool:
        with self._records() as records:
            current = records.get(info.name)
            if current is not None and current["expires_at"] >= now:
                return False
            records[info.name] = asdict(info)
        return True

    def refresh(self, name: str, owner: str, now: float, expires_at: float) -> bool:
        with self._records() as records:
            current = records.get(name)
            if current is None or current["owner"] != owner:
                return False
            records[name] = {**current, "heartbeat_at": now, "expires_at": expires_at}
        return True

    def release(self, name: str, owner: str) -> None:
        with self._records() as records:
            if records.get(name, {}).get("owner") == owner:
                del records[name]

    def get(self, name: str) -> LockInfo | None:
        with self._records() as records:
            current = records.get(name)
        return LockInfo(**current) if current is not None else None

    def close(self) -> None:
        pass


def _utc(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
