"""`mnist-sweep server`: the mlflow server command line it builds, its checks, and a real server."""

from __future__ import annotations

import socket
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from scaleout_support import cli_command, free_port, mlflow_server, temporary_database


def test_defaults_are_postgresql_served_artifacts_and_loopback(tmp_path: Path) -> None:
    from mnist_sweep.tracking.server import build_config, command_line

    config = build_config(artifacts_destination=str(tmp_path / "art"))
    assert config.backend_store_uri == "postgresql://localhost:5432/mlflow"
    assert config.host == "127.0.0.1" and config.port == 5000
    assert config.url == "http://127.0.0.1:5000"
    assert (tmp_path / "art").is_dir()
    command = command_line(config)
    assert command[:4] == [sys.executable, "-m", "mlflow", "server"]

    def flag(name: str) -> str:
        return command[command.index(name) + 1]

    assert "--serve-artifacts" in command
    assert flag("--backend-store-uri") == "postgresql://localhost:5432/mlflow"
    assert flag("--artifacts-destination") == str(tmp_path / "art")
    assert flag("--host") == "127.0.0.1" and flag("--port") == "5000"
    assert flag("--allowed-hosts").split(",") == ["localhost", "localhost:5000", "127.0.0.1", "127.0.0.1:5000"]
    assert "--workers" not in command


def test_backend_from_the_environment_and_relative_artifacts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mnist_sweep.tracking.server import build_config

    monkeypatch.setenv("MNIST_SWEEP_BACKEND_STORE_URI", "postgres://sweep:secret@db:5432/mlflow")
    config = build_config()
    assert config.backend_store_uri == "postgresql://sweep:secret@db:5432/mlflow"
    assert config.artifacts_destination == str(tmp_path / "mlartifacts")  # cwd is tmp_path


def test_binding_beyond_loopback_allows_this_machines_names(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from mnist_sweep.tracking.server import build_config

    config = build_config(artifacts_destination=str(tmp_path), host="0.0.0.0", port=8080)
    assert socket.gethostname() in config.allowed_hosts
    assert f"{socket.gethostname()}:8080" in config.allowed_hosts
    assert "localhost:8080" in config.allowed_hosts
    assert config.url == "http://127.0.0.1:8080"
    assert "no authentication" in caplog.text
    explicit = build_config(
        artifacts_destination=str(tmp_path), host="0.0.0.0", allowed_hosts="mlflow.lan, mlflow.lan:80"
    )
    assert explicit.allowed_hosts == ("mlflow.lan", "mlflow.lan:80")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"backend_store_uri": "file:///tmp/mlruns"}, "file store is not supported"),
        ({"backend_store_uri": "http://other:5000"}, "use a database URL"),
        ({"artifacts_destination": "gs://bucket/x"}, "use a local folder or s3://bucket/prefix"),
        ({"artifacts_destination": "s3://Bad_Bucket"}, "expected s3://bucket"),
        ({"port": 0}, "--port 0: must be between 1 and 65535"),
        ({"workers": 0}, "--workers 0: must be at least 1"),
        ({"allowed_hosts": "*"}, "DNS rebinding"),
        ({"host": "bad host!"}, "expected an IP address or a host name"),
    ],
)
def test_bad_settings_are_one_line_errors(tmp_path: Path, kwargs: dict[str, object], message: str) -> None:
    from mnist_sweep.errors import ConfigError
    from mnist_sweep.tracking.server import build_config

    with pytest.raises(ConfigError) as info:
        build_config(**{"artifacts_destination": str(tmp_path), **kwargs})  # type: ignore[arg-type]
    assert message in str(info.value) and "\n" not in str(info.value)


def test_s3_destination_needs_boto3(tmp_path: Path) -> None:
    import importlib.util

    from mnist_sweep.errors import ConfigError
    from mnist_sweep.tracking.server import check_artifacts_destination

    if importlib.util.find_spec("boto3") is None:
        with pytest.raises(ConfigError, match="pip install boto3"):
            check_artifacts_destination("s3://mlflow-artifacts/sweeps")
    else:
        assert check_artifacts_destination("s3://mlflow-artifacts/sweeps") == "s3://mlflow-artifacts/sweeps"


def test_dry_run_prints_the_command_without_the_password(tmp_path: Path) -> None:
    from mnist_sweep.cli import main

    result = CliRunner().invoke(
        main,
        ["server", "--backend-store-uri", "postgresql://sweep:secret@db/mlflow", "--artifacts-destination",
         str(tmp_path / "a"), "--port", "5055", "--workers", "2", "--dry-run"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "secret" not in result.output
    assert "--backend-store-uri 'postgresql://sweep:***@db/mlflow' --serve-artifacts" in result.output
    assert "--port 5055 --allowed-hosts localhost,localhost:5055,127.0.0.1,127.0.0.1:5055 --workers 2" in result.output


def test_unreachable_backend_and_busy_port_are_one_line(tmp_path: Path) -> None:
    from mnist_sweep.errors import TrackingError
    from mnist_sweep.tracking.server import build_config, check_backend_reachable, check_port_free

    port = free_port()
    config = build_config(
        backend_store_uri=f"postgresql://u@127.0.0.1:{port}/mlflow", artifacts_destination=str(tmp_path)
    )
    with pytest.raises(TrackingError, match="Connection refused") as info:
        check_backend_reachable(config, timeout=2)
    assert "\n" not in str(info.value)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = build_config(artifacts_destination=str(tmp_path), port=busy.getsockname()[1])
        with pytest.raises(TrackingError, match="cannot listen there"):
            check_port_free(taken)


@pytest.mark.postgres
def test_real_server_on_postgresql_serves_artifacts_and_checks_host(tmp_path: Path) -> None:
    """`mnist-sweep server` itself: runs nest, artifacts land in the destination folder, Host is checked."""
    from mlflow import MlflowClient

    artifacts = tmp_path / "artifacts"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with temporary_database("mnist_sweep_test_server") as backend:
        command = cli_command(
            "server", "--backend-store-uri", backend, "--artifacts-destination", str(artifacts),
            "--port", str(port), "--workers", "1",
        )  # fmt: skip
        with mlflow_server(command, url, tmp_path / "server.log"):
            client = MlflowClient(tracking_uri=url)
            experiment = client.create_experiment("served")
            parent = client.create_run(experiment, run_name="study")
            child = client.create_run(experiment, run_name="trial-0", tags={"mlflow.parentRunId": parent.info.run_id})
            client.log_text(child.info.run_id, "hello", "notes/hello.txt")
            client.set_terminated(child.info.run_id)
            client.set_terminated(parent.info.run_id)
            assert child.info.artifact_uri.startswith("mlflow-artifacts:")
            stored = list(artifacts.rglob("hello.txt"))
            assert len(stored) == 1 and stored[0].read_text() == "hello"

            request = urllib.request.Request(
                f"{url}/api/2.0/mlflow/experiments/search?max_results=1", headers={"Host": "evil.example"}
            )
            with pytest.raises(urllib.error.HTTPError) as info:
                urllib.request.urlopen(request, timeout=10)
            info.value.close()
            assert info.value.code == 403
            started = time.monotonic()
            runs = client.search_runs([experiment], filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
            assert [r.info.run_id for r in runs] == [child.info.run_id]
            assert time.monotonic() - started < 10


@pytest.mark.postgres
def test_stock_tools_accept_bare_postgresql_urls(tmp_path: Path) -> None:
    """The README's postgresql:// URLs in the stock `mlflow server` and `optuna.load_study` (psycopg 3)."""
    import shutil

    import optuna
    from mlflow import MlflowClient

    from mnist_sweep.stores import open_storage

    mlflow_cli = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or shutil.which("mlflow")
    assert mlflow_cli, "mlflow's own command is not installed beside this Python"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with (
        temporary_database("mnist_sweep_test_stock_mlflow") as backend,
        temporary_database("mnist_sweep_test_stock_optuna") as storage,
    ):
        assert backend.startswith("postgresql://") and storage.startswith("postgresql://")
        command = [mlflow_cli, "server", "--backend-store-uri", backend, "--host", "127.0.0.1", "--port", str(port)]
        with mlflow_server([*command, "--workers", "1"], url, tmp_path / "server.log"):
            client = MlflowClient(tracking_uri=url)
            experiment = client.create_experiment("stock")
            run = client.create_run(experiment, run_name="r")
            client.log_metric(run.info.run_id, "val_accuracy", 0.5)
            client.set_terminated(run.info.run_id)
            assert client.get_run(run.info.run_id).data.metrics == {"val_accuracy": 0.5}

        ours = open_storage(storage)
        written = optuna.create_study(study_name="stock", storage=ours, direction="maximize")
        written.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=3)
        loaded = optuna.load_study(study_name="stock", storage=storage)
        assert [t.params for t in loaded.trials] == [t.params for t in written.trials]
        assert loaded.best_value == written.best_value
        for used in (ours, loaded._storage):  # close their connections before the database is dropped
            getattr(used, "_backend", used).engine.dispose()
