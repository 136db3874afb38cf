"""Helpers for the scale-out tests: throwaway PostgreSQL databases, a real MLflow server, CLI runs."""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

# An external PostgreSQL for the tests, e.g. postgresql://postgres@127.0.0.1:5432/postgres (a
# superuser's URL). Unset, the tests start a throwaway cluster of their own (see PostgresCluster).
EXTERNAL_POSTGRES_ENV = "MNIST_SWEEP_TEST_POSTGRES"
PG_SUPERUSER = "postgres"

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


def _pg_bin(name: str) -> str:
    """``initdb`` / ``pg_ctl``: on PATH, else Debian's versioned folder (the newest there)."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), key=lambda p: int(p.parts[-3]))
    if candidates:
        return str(candidates[-1])
    pytest.fail(
        f"{name} not found: install the PostgreSQL server (apt-get install postgresql), or point "
        f"{EXTERNAL_POSTGRES_ENV} at a server, or deselect these tests with -m 'not postgres'",
        pytrace=False,
    )


class PostgresCluster:
    """A throwaway PostgreSQL cluster in a temp folder on a free port, trust auth on 127.0.0.1.

    ``initdb`` refuses to run as root, so as root the cluster belongs to an unprivileged user
    (``postgres`` where the server package made one, else ``nobody``) and its commands run
    through ``runuser``.
    """

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="mnist-sweep-pg-"))
        self.data = self.folder / "data"
        self.port = free_port()
        self.url = f"postgresql://{PG_SUPERUSER}@127.0.0.1:{self.port}/postgres"
        self._as: list[str] = []
        if os.geteuid() == 0:
            user = "postgres" if _user_exists("postgres") else "nobody"
            shutil.chown(self.folder, user=user)
            self._as = ["runuser", "-u", user, "--"]

    def _run(self, *command: str) -> None:
        done = subprocess.run([*self._as, *command], capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            pytest.fail(f"{' '.join(command[:2])} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}", pytrace=False)

    def start(self) -> PostgresCluster:
        self._run(
            _pg_bin("initdb"), "-D", str(self.data), "-U", PG_SUPERUSER, "-A", "trust", "-E", "UTF8", "--no-sync"
        )  # fmt: skip
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.folder} -c fsync=off -c max_connections=200"
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.folder / "server.log"), "-o", options, "-w",
                  "start")  # fmt: skip
        return self

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run(
                [*self._as, _pg_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"],
                capture_output=True, timeout=60, check=False,
            )  # fmt: skip
        shutil.rmtree(self.folder, ignore_errors=True)


def _user_exists(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


_cluster: PostgresCluster | None = None


def admin_url() -> str:
    """A superuser URL: ``$MNIST_SWEEP_TEST_POSTGRES``, else this test process's own cluster.

    The cluster starts on first use (about 2 s) and is removed when the process exits.
    """
    global _cluster
    external = os.environ.get(EXTERNAL_POSTGRES_ENV)
    if external:
        return external
    if _cluster is None:
        _cluster = PostgresCluster().start()
        atexit.register(_cluster.stop)
    return _cluster.url


def database_url(name: str) -> str:
    return admin_url().rsplit("/", 1)[0] + f"/{name}"


def _admin_connection():  # type: ignore[no-untyped-def]
    import psycopg

    url = admin_url()
    try:
        return psycopg.connect(url, connect_timeout=5, autocommit=True)
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL is not reachable at {url} ({str(exc).strip().splitlines()[0]}); start it, fix "
            f"{EXTERNAL_POSTGRES_ENV}, or deselect these tests with -m 'not postgres'",
            pytrace=False,
        )


def admin_execute(sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    with _admin_connection() as conn, conn.cursor() as cur:
        cur.execute(sql, params)  # type: ignore[arg-type]
        return list(cur.fetchall()) if cur.description else []


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
