"""``mnist-sweep server``: MLflow's own tracking server, started with this project's defaults.

Many workers on many machines log to one tracking server rather than to files. The defaults:
a PostgreSQL backend store, artifacts served through the server (``--serve-artifacts``) from a
local folder or an S3-compatible bucket, bound to 127.0.0.1 unless told otherwise, and
``--allowed-hosts`` always set (MLflow's protection against DNS rebinding). Every setting is
checked first, so a mistake is one line rather than a traceback from inside MLflow.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import logging
import os
import re
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from mnist_sweep.errors import ConfigError, TrackingError
from mnist_sweep.stores import redact_url, sqlalchemy_url

log = logging.getLogger(__name__)

BACKEND_ENV = "MNIST_SWEEP_BACKEND_STORE_URI"
DEFAULT_BACKEND = "postgresql://localhost:5432/mlflow"
DEFAULT_ARTIFACTS = "./mlartifacts"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5000
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
_BACKEND_SCHEMES = ("postgresql", "postgres", "mysql", "sqlite")


@dataclass(frozen=True)
class ServerConfig:
    """A checked ``mlflow server`` configuration."""

    backend_store_uri: str
    artifacts_destination: str
    host: str
    port: int
    allowed_hosts: tuple[str, ...]
    workers: int | None = None

    @property
    def url(self) -> str:
        """What clients put in ``--tracking-uri`` / ``MLFLOW_TRACKING_URI``."""
        shown = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{f'[{shown}]' if ':' in shown else shown}:{self.port}"


def check_backend_store_uri(uri: str | None) -> str:
    """The backend store URI as MLflow should get it; ConfigError for one it cannot use.

    PostgreSQL is the default and the recommended store (many workers write at once); SQLite
    works for one machine. A bare ``postgresql://`` means psycopg 3, the driver installed here.
    """
    uri = (uri or os.environ.get(BACKEND_ENV) or DEFAULT_BACKEND).strip()
    scheme = uri.split(":", 1)[0].split("+", 1)[0].lower() if "://" in uri else ""
    if scheme not in _BACKEND_SCHEMES:
        raise ConfigError(
            f"backend store {redact_url(uri)!r}: use a database URL such as postgresql://user@host:5432/mlflow "
            "(or sqlite:///mlflow.db on one machine); MLflow 3's file store is not supported"
        )
    if scheme == "sqlite":
        log.warning("backend store %s: SQLite serves one machine; use PostgreSQL for many workers", uri)
    return sqlalchemy_url(uri)


def check_artifacts_destination(destination: str | None) -> str:
    """A local folder (made absolute and created) or ``s3://bucket[/prefix]``; ConfigError otherwise."""
    destination = (destination or DEFAULT_ARTIFACTS).strip()
    scheme = destination.split("://", 1)[0].lower() if "://" in destination else ""
    if scheme == "s3":
        if not re.match(r"^s3://[a-z0-9][a-z0-9.\-]{1,62}(/.*)?$", destination):
            raise ConfigError(f"artifacts destination {destination!r}: expected s3://bucket or s3://bucket/prefix")
        if importlib.util.find_spec("boto3") is None:
            raise ConfigError(
                f"artifacts destination {destination}: S3 needs the boto3 package: pip install boto3 "
                "(and MLFLOW_S3_ENDPOINT_URL for an S3-compatible store such as MinIO)"
            )
        return destination
    if scheme and scheme != "file":
        raise ConfigError(
            f"artifacts destination {destination!r}: use a local folder or s3://bucket/prefix (S3-compatible)"
        )
    path = Path(destination.removeprefix("file://")).expanduser().resolve()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"artifacts destination {path}: cannot create it: {exc.strerror or exc}") from None
    if not os.access(path, os.W_OK):
        raise ConfigError(f"artifacts destination {path}: not writable")
    return str(path)


def default_allowed_hosts(host: str, port: int) -> tuple[str, ...]:
    """Host headers to answer: loopback names, plus this machine's names when bound beyond it."""
    names = ["localhost", "127.0.0.1"]
    if host not in _LOOPBACK:
        names += [socket.gethostname(), socket.getfqdn()]
        if host not in ("0.0.0.0", "::"):
            names.append(host)
    unique = list(dict.fromkeys(n for n in names if n))
    return tuple(entry for name in unique for entry in (name, f"{name}:{port}"))


def build_config(
    *,
    backend_store_uri: str | None = None,
    artifacts_destination: str | None = None,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    allowed_hosts: str | None = None,
    workers: int | None = None,
) -> ServerConfig:
    """Check every setting and fill in the defaults; ConfigError names the first bad one."""
    if not 1 <= port <= 65535:
        raise ConfigError(f"--port {port}: must be between 1 and 65535")
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers {workers}: must be at least 1")
    if host not in _LOOPBACK and host not in ("0.0.0.0", "::"):
        try:
            ipaddress.ip_address(host)
        except ValueError:
            if not re.match(r"^[A-Za-z0-9.\-]+$", host):
                raise ConfigError(f"--host {host!r}: expected an IP address or a host name") from None
    hosts = tuple(h.strip() for h in (allowed_hosts or "").split(",") if h.strip())
    if "*" in hosts:
        raise ConfigError("--allowed-hosts '*': answers any Host header (DNS rebinding); name the hosts instead")
    if host not in _LOOPBACK:
        log.warning("binding to %s: the tracking server has no authentication; keep it on a trusted network", host)
    return ServerConfig(
        backend_store_uri=check_backend_store_uri(backend_store_uri),
        artifacts_destination=check_artifacts_destination(artifacts_destination),
        host=host,
        port=port,
        allowed_hosts=hosts or default_allowed_hosts(host, port),
        workers=workers,
    )


def command_line(config: ServerConfig) -> list[str]:
    """The ``mlflow server`` command for ``config`` (run with this Python's MLflow)."""
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        config.backend_store_uri,
        "--serve-artifacts",
        "--artifacts-destination",
        config.artifacts_destination,
        "--host",
        config.host,
        "--port",
        str(config.port),
        "--allowed-hosts",
        ",".join(config.allowed_hosts),
    ]
    if config.workers is not None:
        command += ["--workers", str(config.workers)]
    return command


def shown_command(config: ServerConfig) -> str:
    """:func:`command_line` for printing: the backend password replaced by ``***``."""
    import shlex

    return shlex.join(redact_url(part) if part == config.backend_store_uri else part for part in command_line(config))


def check_backend_reachable(config: ServerConfig, *, timeout: int = 10) -> None:
    """Connect to the backend store once, so that a wrong URL or a stopped database is one line."""
    import sqlalchemy as sa

    uri = config.backend_store_uri
    connect_args = {"connect_timeout": timeout} if uri.startswith("postgresql") else {}
    engine = sa.create_engine(uri, connect_args=connect_args)
    try:
        with engine.connect():
            pass
    except Exception as exc:
        from mnist_sweep.stores import describe

        hint = ""
        if "does not exist" in str(exc) and uri.startswith("postgresql"):
            hint = f"; create it first: createdb -h HOST -U USER {uri.rsplit('/', 1)[-1].split('?')[0]}"
        raise TrackingError(f"backend store {redact_url(uri)}: {describe(exc)}{hint}") from None
    finally:
        engine.dispose()


def check_port_free(config: ServerConfig) -> None:
    """TrackingError when something already listens on the port."""
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((config.host, config.port))
        except OSError as exc:
            raise TrackingError(f"{config.host}:{config.port}: cannot listen there: {exc.strerror or exc}") from None


def check_ready(config: ServerConfig) -> None:
    """TrackingError unless the backend store answers and the port is free."""
    check_backend_reachable(config)
    check_port_free(config)


def serve(config: ServerConfig) -> NoReturn:
    """Replace this process with ``mlflow server`` (call :func:`check_ready` first)."""
    command = command_line(config)
    os.execv(command[0], command)


def wait_until_up(health_url: str, process: subprocess.Popen[bytes], *, timeout: float = 180.0) -> bool:
    """Whether the server ``process`` started answers ``health_url`` within ``timeout`` seconds."""
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(health_url, timeout=5) as response:
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(1.0)
    return False
