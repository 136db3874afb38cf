"""`mnist-sweep dashboard`: the optuna-dashboard command for every storage kind (no server started here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner


@pytest.mark.parametrize(
    ("url", "args", "env"),
    [
        ("sqlite:///optuna.db", ["sqlite:///optuna.db", "--storage-class", "RDBStorage"], {}),
        ("sqlite:////abs/optuna.db", ["sqlite:////abs/optuna.db", "--storage-class", "RDBStorage"], {}),
        (
            "postgresql://sweeper:s3cret@db:5432/optuna",
            ["postgresql://sweeper@db:5432/optuna", "--storage-class", "RDBStorage"],
            {"PGPASSWORD": "s3cret"},
        ),
        (
            "postgres://sweeper@db/optuna",
            ["postgresql://sweeper@db/optuna", "--storage-class", "RDBStorage"],
            {},
        ),
        ("mysql://root@127.0.0.1/optuna", ["mysql://root@127.0.0.1/optuna", "--storage-class", "RDBStorage"], {}),
        (
            "journal:///var/lib/sweeps/optuna.log",
            ["/var/lib/sweeps/optuna.log", "--storage-class", "JournalFileStorage"],
            {},
        ),
        ("journal://optuna.log", ["optuna.log", "--storage-class", "JournalFileStorage"], {}),
        ("runs/optuna.log", ["runs/optuna.log", "--storage-class", "JournalFileStorage"], {}),
    ],
)
def test_storage_arguments(url: str, args: list[str], env: dict[str, str]) -> None:
    from mnist_sweep.app._dashboard import dashboard_storage_args

    assert dashboard_storage_args(url) == (args, env)


def test_unsupported_storage_is_a_config_error() -> None:
    from mnist_sweep.app._dashboard import dashboard_storage_args
    from mnist_sweep.errors import ConfigError

    with pytest.raises(ConfigError, match="unsupported"):
        dashboard_storage_args("redis://localhost:6379")


def make_study(storage: Any, name: str = "tiny") -> Any:
    import optuna

    study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
    study.set_user_attr("objective_metric", "val_accuracy")
    return study


def test_launch_opens_the_study_page_and_names_its_objective(tmp_path: Path) -> None:
    import optuna

    from mnist_sweep.app._dashboard import prepare_dashboard

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    make_study(storage, "other")
    make_study(storage, "tiny")
    launch = prepare_dashboard(storage, study="tiny", port=8123)

    assert launch.url == "http://127.0.0.1:8123/dashboard/studies/2"
    assert Path(launch.argv[0]).name == "optuna-dashboard" and Path(launch.argv[0]).is_file()
    assert launch.argv[1:] == [storage, "--storage-class", "RDBStorage", "--host", "127.0.0.1", "--port", "8123"]
    assert optuna.load_study(study_name="tiny", storage=storage).metric_names == ["val_accuracy"]


def test_launch_on_a_journal_storage(tmp_path: Path) -> None:
    import optuna
    from optuna.storages.journal import JournalFileBackend

    from mnist_sweep.app._dashboard import prepare_dashboard

    path = tmp_path / "optuna.log"
    make_study(optuna.storages.JournalStorage(JournalFileBackend(str(path))))
    launch = prepare_dashboard(f"journal:///{path}", study="tiny")

    assert launch.url == "http://127.0.0.1:8080/dashboard/studies/0"
    assert launch.argv[1:4] == [str(path), "--storage-class", "JournalFileStorage"]


def test_unknown_study_lists_the_known_ones(tmp_path: Path) -> None:
    from mnist_sweep.app._dashboard import prepare_dashboard
    from mnist_sweep.errors import StorageError

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    make_study(storage)
    with pytest.raises(StorageError, match=r"no study 'nope' .*studies there: tiny"):
        prepare_dashboard(storage, study="nope")


def test_cli_execs_optuna_dashboard_bound_to_localhost(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from mnist_sweep.cli import main

    calls: list[tuple[str, list[str], dict[str, str]]] = []
    monkeypatch.setattr(os, "execve", lambda path, argv, env: calls.append((path, argv, env)))
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    make_study(storage)
    result = CliRunner().invoke(main, ["dashboard", "tiny", "--storage", storage, "--port", "8765"])

    assert result.exit_code == 0, result.output
    assert "optuna-dashboard on http://127.0.0.1:8765/dashboard/studies/1" in result.output
    (path, argv, env) = calls[0]
    assert argv[0] == path and argv[-4:] == ["--host", "127.0.0.1", "--port", "8765"]
    assert env["MNIST_SWEEP_DATA_DIR"] == os.environ["MNIST_SWEEP_DATA_DIR"]  # the rest of the environment stays
