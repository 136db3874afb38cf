"""Database URLs as the project and the stock tools read them: psycopg 3 for a bare postgresql://."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest
from click.testing import CliRunner


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u:pw@h:5432/db", "postgresql://u:pw@h:5432/db"),
        ("postgres://u@h/db", "postgresql://u@h/db"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        ("sqlite:///optuna.db", "sqlite:///optuna.db"),
        ("mysql://root@h/db", "mysql://root@h/db"),
    ],
)
def test_urls_are_not_rewritten_to_another_driver(url: str, expected: str) -> None:
    from mnist_sweep.stores import sqlalchemy_url

    assert sqlalchemy_url(url) == expected


def test_explicit_psycopg2_url_works_where_psycopg2_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    from mnist_sweep.errors import ConfigError
    from mnist_sweep.stores import sqlalchemy_url
    from mnist_sweep.tracking import check_tracking_uri

    url = "postgresql+psycopg2://u:secret@h/db"
    if importlib.util.find_spec("psycopg2") is not None:
        assert sqlalchemy_url(url) == url
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "psycopg2" else real(name, *a))
    with pytest.raises(ConfigError, match=r"^postgresql\+psycopg2://u:\*\*\*@h/db: psycopg2 is not installed; use "):
        sqlalchemy_url(url)
    with pytest.raises(ConfigError, match="use postgresql://"):
        check_tracking_uri(url)


def test_explicit_psycopg2_url_without_psycopg2_is_one_error_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mnist_sweep.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "psycopg2" else real(name, *a))
    space = Path(__file__).resolve().parents[2] / "search_spaces" / "activation.yaml"
    result = CliRunner().invoke(main, ["run", str(space), "--storage", "postgresql+psycopg2://u@127.0.0.1:1/db"])
    assert result.exit_code != 0
    assert result.output.strip().splitlines() == [
        "error: postgresql+psycopg2://u@127.0.0.1:1/db: psycopg2 is not installed; use postgresql://... (psycopg 3 is)"
    ]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--tracking-uri", "http://127.0.0.1:{port}"], "error: tracking server http://127.0.0.1:{port}: unreachable"),
        (["--storage", "postgresql://u@127.0.0.1:{port}/db"], "error: storage postgresql://u@127.0.0.1:{port}/db: "),
    ],
)
def test_unreachable_server_at_start_fails_within_ten_seconds(args: list[str], expected: str) -> None:
    """The preflight check: MLflow's own HTTP retries and our outage window do not apply yet."""
    import mlflow  # imported before the clock starts: its import time is not the check's
    import sqlalchemy

    from mnist_sweep.cli import main
    from scaleout_support import free_port, write_space

    assert mlflow and sqlalchemy
    port = free_port()  # nothing listens there
    space = write_space(Path.cwd(), study="preflight", n_trials=1)
    started = time.monotonic()
    result = CliRunner().invoke(main, ["run", str(space), *(a.format(port=port) for a in args)])
    took = time.monotonic() - started
    assert result.exit_code != 0, result.output[-2000:]
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith(expected.format(port=port)), result.output[-2000:]
    assert took < 10, took


@pytest.mark.parametrize(
    "command",
    [
        ["status", "s", "--storage", "postgresql://u@127.0.0.1:{port}/db"],
        ["best", "s", "--storage", "postgresql://u@127.0.0.1:{port}/db"],
        ["studies", "--storage", "postgresql://u@127.0.0.1:{port}/db"],
        ["dashboard", "--storage", "postgresql://u@127.0.0.1:{port}/db"],
        ["report", "s", "--storage", "postgresql://u@127.0.0.1:{port}/db"],
        ["compare", "a", "b", "--tracking-uri", "http://127.0.0.1:{port}"],
        ["promote", "s", "--dry-run", "--tracking-uri", "http://127.0.0.1:{port}"],
        ["predict", "models:/m/1", "x.npy", "--tracking-uri", "http://127.0.0.1:{port}"],
    ],
    ids=lambda c: c[0],
)
def test_every_command_that_reaches_a_server_fails_within_ten_seconds(command: list[str]) -> None:
    import mlflow
    import sqlalchemy

    from mnist_sweep.cli import main
    from scaleout_support import free_port

    assert mlflow and sqlalchemy
    port = free_port()  # nothing listens there
    started = time.monotonic()
    result = CliRunner().invoke(main, [a.format(port=port) for a in command])
    took = time.monotonic() - started
    assert result.exit_code != 0, result.output[-2000:]
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and f"127.0.0.1:{port}" in errors[0] and "unreachable" in errors[0], result.output[-2000:]
    assert took < 10, took
