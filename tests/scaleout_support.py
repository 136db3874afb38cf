"""Helpers for the scale-out tests: throwaway PostgreSQL databases, a real MLflow server, CLI runs."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

# Where the tests find PostgreSQL (CI: trust auth for `postgres` on 127.0.0.1:5432).
PG_ADMIN_URL = os.environ.get("MNIST_SWEEP_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")

SPACE = """\
study: {study}
dataset: mnist
seed: 0
limit: {limit}
objective: {{metric: val_accuracy, direction: maximize}}
sampler: {{name: {sampler}, seed: 0}}
pruner: {{name: none}}
budget: {{n_trials: {n_trials}}}
fixed: {{epochs: {epochs}, batch_size: {batch_size}, optimizer: adam}}
space:
  width: {{type: categorical, choices: [8, 12, 16, 24, 32, 40, 48, 56, 64]}}
  activation: {{type: categorical, choices: [relu, tanh, sigmoid]}}
"""


def write_space(
    folder: Path,
    *,
    study: str,
    n_trials: int,
    epochs: int = 1,
    limit: int = 300,
    batch_size: int = 64,
    sampler: str = "tpe",
) -> Path:
    path = folder / f"{study}.yaml"
    path.write_text(
        SPACE.format(study=study, n_trials=n_trials, epochs=epochs, limit=limit, batch_size=batch_size, sampler=sampler)
    )
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def database_url(name: str) -> str:
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def _admin_connection():  # type: ignore[no-untyped-def]
    import psycopg2

    try:
        conn = psycopg2.connect(PG_ADMIN_URL, connect_timeout=5)
    except psycopg2.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL is not reachable at {PG_ADMIN_URL} ({str(exc).strip().splitlines()[0]}); start it, set "
            "MNIST_SWEEP_TEST_POSTGRES, or deselect these tests with -m 'not postgres'",
            pytrace=False,
        )
    conn.autocommit = True
    return conn


def admin_execute(sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    conn = _admin_connection()
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return list(cur.fetchall()) if cur.description else []
    finally:
        conn.close()


@contextlib.contextmanager
def temporary_database(prefix: str) -> Iterator[str]:
    """A fresh, uniquely named PostgreSQL database; dropped afterwards whatever happens."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin_execute(f'CREATE DATABASE "{name}"')
    try:
        yield database_url(name)
    finally:
        admin_execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def stop_group(process: subprocess.Popen[bytes] | subprocess.Popen[str]) -> None:
    """End a process started with ``start_new_session=True`` and everything it started."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=20)
    with contextlib.suppress(ProcessLookupError):  # server children left behind by the parent
        os.killpg(process.pid, signal.SIGKILL)


def wait_healthy(url: str, process: subprocess.Popen[bytes], log_path: Path, *, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"mlflow server exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"mlflow server not healthy after {timeout:g} s:\n{log_path.read_text()[-3000:]}")


@contextlib.contextmanager
def mlflow_server(command: list[str], url: str, log_path: Path) -> Iterator[str]:
    """Run ``command`` (an MLflow server on ``url``) until the block ends; always stopped."""
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_healthy(url, process, log_path)
        yield url
    finally:
        stop_group(process)


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "mnist_sweep.cli", *args]


def cli_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **extra}
    return env


def run_cli(*args: str, env: Mapping[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cli_command(*args), capture_output=True, text=True, env=dict(env or cli_env()), timeout=timeout, check=False
    )


def error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert lines, f"no error line in:\n{stderr[-3000:]}"
    return lines[-1]
