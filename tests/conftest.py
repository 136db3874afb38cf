"""Shared fixtures: the real data sets in ../shared/datasets, isolated MLflow/Optuna stores."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA_CANDIDATES = [
    os.environ.get("MNIST_SWEEP_DATA_DIR"),
    str(ROOT.parent / "shared" / "datasets"),
    str(ROOT / "shared" / "datasets"),
]


def _find_data_dir() -> Path:
    looked = []
    for candidate in DATA_CANDIDATES:
        if not candidate:
            continue
        path = Path(candidate)
        looked.append(str(path))
        if (path / "mnist" / "train-images-idx3-ubyte.gz").is_file():
            return path.resolve()
    pytest.fail(
        "MNIST data not found; looked in: " + ", ".join(looked) + " (set MNIST_SWEEP_DATA_DIR)",
        pytrace=False,
    )


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The folder holding mnist/ and fashion-mnist/ (tests fail, never skip, without it)."""
    return _find_data_dir()


@pytest.fixture(autouse=True)
def _isolated_env(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test: data from the shared folder, its own MLflow store, and no run left open."""
    monkeypatch.setenv("MNIST_SWEEP_DATA_DIR", str(data_dir))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    monkeypatch.chdir(tmp_path)
    yield
    import sys

    if "mlflow" in sys.modules:
        import mlflow

        active = mlflow.active_run()
        if active is not None:
            mlflow.end_run("FAILED")
            pytest.fail(f"test left MLflow run {active.info.run_id} open")


@pytest.fixture(scope="session")
def tiny_mnist(data_dir: Path):  # type: ignore[no-untyped-def]
    """300 real training images, 60 validation, 60 test, classes balanced."""
    from mnist_sweep.model._data import load_dataset

    return load_dataset("mnist", data_dir=data_dir, limit=300)
