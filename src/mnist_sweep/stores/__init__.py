"""Optuna storages: opening them, heartbeats, study-wide mutexes, job locks, retries, worker identity."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mnist_sweep._lazy import lazy_exports

if TYPE_CHECKING:
    from mnist_sweep.stores._coordination import (
        StudyMutex,
        describe,
        is_transient,
        journal_path,
        local_worker_alive,
        retry_seconds,
        sqlalchemy_url,
        with_retry,
        worker_id,
    )
    from mnist_sweep.stores._locks import JobLock
    from mnist_sweep.stores._storage import (
        MAX_RETRY,
        check_store_exists,
        default_storage,
        heartbeat_settings,
        load_study,
        open_storage,
        preflight_storage,
        redact_url,
        storage_kind,
    )

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "JobLock": "_locks",
        "MAX_RETRY": "_storage",
        "heartbeat_settings": "_storage",
        "StudyMutex": "_coordination",
        "check_store_exists": "_storage",
        "default_storage": "_storage",
        "describe": "_coordination",
        "is_transient": "_coordination",
        "journal_path": "_coordination",
        "load_study": "_storage",
        "local_worker_alive": "_coordination",
        "open_storage": "_storage",
        "preflight_storage": "_storage",
        "redact_url": "_storage",
        "retry_seconds": "_coordination",
        "sqlalchemy_url": "_coordination",
        "storage_kind": "_storage",
        "with_retry": "_coordination",
        "worker_id": "_coordination",
    },
)
