"""Shared fixtures: the real data sets (../shared/datasets, else found or downloaded), isolated stores."""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
# The offline copies first; then the project's own order: $MNIST_SWEEP_DATA_DIR, Debian's
# /usr/share/datasets, Keras's downloader (written out once as IDX files, see _from_keras).
DATA_CANDIDATES = [
    str(ROOT.parent / "shared" / "datasets"),
    str(ROOT / "shared" / "datasets"),
    os.environ.get("MNIST_SWEEP_DATA_DIR"),
    "/usr/share/datasets",
]
KERAS_COPY = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mnist-sweep" / "datasets"
SUBFOLDERS = {"mnist": "mnist", "fashion_mnist": "fashion-mnist"}


def _holds_both(path: Path) -> bool:
    return all((path / sub / "train-images-idx3-ubyte.gz").is_file() for sub in SUBFOLDERS.values())


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">HBB", 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0) as out:
        out.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def _from_keras(folder: Path) -> Path:
    """Both data sets from Keras's downloader (its cache), as IDX files plus a README of SHA-256s."""
    import keras

    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for name, sub in SUBFOLDERS.items():
        (x_train, y_train), (x_test, y_test) = getattr(keras.datasets, name).load_data()
        (folder / sub).mkdir(exist_ok=True)
        files = {"train-images-idx3": x_train, "train-labels-idx1": y_train, "t10k-images-idx3": x_test}
        files["t10k-labels-idx1"] = y_test
        for stem, array in files.items():
            path = folder / sub / f"{stem}-ubyte.gz"
            _write_idx(path, array)
            lines.append(f"    {hashlib.sha256(path.read_bytes()).hexdigest()}  {sub}/{path.name}")
    (folder / "README.md").write_text("Written by tests/conftest.py from Keras's downloader.\n\n" + "\n".join(lines))
    return folder


def _find_data_dir() -> Path:
    for candidate in DATA_CANDIDATES:
        if candidate and _holds_both(Path(candidate)):
            return Path(candidate).resolve()
    if _holds_both(KERAS_COPY) and (KERAS_COPY / "README.md").is_file():
        return KERAS_COPY
    try:
        return _from_keras(KERAS_COPY)
    except Exception as exc:  # no network, most often
        looked = ", ".join(c for c in DATA_CANDIDATES if c)
        pytest.fail(
            f"MNIST data not found in {looked}, and Keras's downloader failed ({exc}); set MNIST_SWEEP_DATA_DIR",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The folder holding mnist/ and fashion-mnist/ (tests fail, never skip, without one)."""
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
