"""Tiny real studies for the registry, predict and inspect tests, trained once per test session.

Three studies in one shared store (so the models are trained once, not once per test):

* ``weak``: MNIST, 100 images, one SGD epoch at a small learning rate: barely better than chance.
* ``strong``: MNIST, 600 images, two epochs: far better than ``weak``.
* ``fashion``: Fashion-MNIST, 100 images, one epoch (for the dataset-mismatch refusal).

Tests that change the registry each use their own registered model name, so they stay
independent while sharing the trained models. Every call passes the store's URIs explicitly:
the autouse fixture in conftest.py points MLFLOW_TRACKING_URI at each test's own empty store.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from spaces import write_space

WEAK_FIXED = "{epochs: 1, batch_size: 100, optimizer: sgd, learning_rate: 0.001, momentum: 0.0}"
WEAK_SPACE = "  width: {type: categorical, choices: [16]}\n"
STRONG_FIXED = "{epochs: 2, batch_size: 32, optimizer: adam}"
STRONG_SPACE = "  width: {type: categorical, choices: [128]}\n"
FASHION_FIXED = "{epochs: 1, batch_size: 32, optimizer: adam}"


@dataclass(frozen=True)
class Studies:
    """Where the shared studies live, and the options every CLI call needs to find them."""

    root: Path
    weak: str = "weak"
    strong: str = "strong"
    fashion: str = "fashion"

    @property
    def storage(self) -> str:
        return f"sqlite:///{self.root / 'optuna.db'}"

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.root / 'mlflow.db'}"

    def options(self) -> list[str]:
        return ["--storage", self.storage, "--tracking-uri", self.tracking_uri]

    def client(self) -> Any:
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    def best(self, study: str) -> Any:
        from mnist_sweep.app._inspect import best_trial

        return best_trial(study, self.storage)


_BUILT: dict[str, Studies] = {}


def trained_studies(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Studies:
    """The three studies, trained on the first call of the session."""
    if "studies" not in _BUILT:
        root = tmp_path_factory.mktemp("registry-studies")
        studies = Studies(root=root)
        with contextlib.chdir(root):  # MLflow puts artifacts in ./mlruns of the cwd that creates the experiment
            _train(studies, data_dir)
        _BUILT["studies"] = studies
    return _BUILT["studies"]


def _train(studies: Studies, data_dir: Path) -> None:
    root = studies.root
    weak = write_space(root, n_trials=1, fixed=WEAK_FIXED, space=WEAK_SPACE, name="weak.yaml")
    _sweep(weak, studies, data_dir, study_name="weak", limit=100)
    strong = write_space(root, n_trials=1, fixed=STRONG_FIXED, space=STRONG_SPACE, name="strong.yaml")
    _sweep(strong, studies, data_dir, study_name="strong", limit=600)
    fashion = write_space(root, n_trials=1, fixed=FASHION_FIXED, space=WEAK_SPACE, name="fashion.yaml")
    fashion.write_text(fashion.read_text().replace("dataset: mnist", "dataset: fashion_mnist"))
    _sweep(fashion, studies, data_dir, study_name="fashion", limit=100)


def _sweep(path: Path, studies: Studies, data_dir: Path, *, study_name: str, limit: int) -> None:
    from mnist_sweep.config._space import load_space
    from mnist_sweep.sweep import SweepOptions, run_sweep

    space = load_space(path).with_overrides(study_name=study_name, limit=limit)
    options = SweepOptions(
        storage=studies.storage, tracking_uri=studies.tracking_uri, data_dir=str(data_dir), quiet=True
    )
    result = run_sweep(space, options)
    assert all(t.state == "COMPLETE" for t in result.trials), result.trials
