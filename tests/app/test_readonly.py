"""Read-only commands on a store that does not exist: one line, a non-zero exit, no file left behind."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

READ_ONLY = [
    ["report", "nosuch"],
    ["best", "nosuch"],
    ["status", "nosuch"],
    ["studies"],
    ["compare", "nosuch", "other"],
    ["dashboard"],
    ["dashboard", "nosuch"],
    ["promote", "nosuch", "--dry-run"],
]


@pytest.mark.parametrize("storage", [None, "sqlite:///elsewhere.db", "journal://elsewhere.log"])
@pytest.mark.parametrize("args", READ_ONLY, ids=lambda args: " ".join(args))
def test_missing_store_is_one_line_and_writes_nothing(tmp_path: Path, args: list[str], storage: str | None) -> None:
    from mnist_sweep.cli import main

    before = sorted(tmp_path.rglob("*"))
    extra = ["--storage", storage] if storage else []
    result = CliRunner().invoke(main, [*args, *extra])
    assert result.exit_code != 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no Optuna storage at "), result.output
    assert sorted(tmp_path.rglob("*")) == before  # neither optuna.db, mlflow.db nor a journal file
