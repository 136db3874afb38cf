"""A tiny nightly job on a tiny search space, written under a test's tmp_path (for the nightly tests)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

SPACE = """\
study: tiny
dataset: mnist
seed: 0
limit: 300
objective: {metric: val_accuracy}
sampler: {name: random, seed: 0}
pruner: {name: none}
budget: {n_trials: 5}
fixed: {epochs: 1, batch_size: 64, optimizer: adam}
space:
  width: {type: categorical, choices: [8, 16, 32, 64]}
  activation: {type: categorical, choices: [relu, tanh]}
"""

NIGHTLY: dict[str, Any] = {
    "name": "nightly",
    "spaces": ["tiny.yaml"],
    "budget": {"n_trials": 2},
    "promotion": {"metric": "test_accuracy", "margin": 0.0, "model_name": "tiny-model", "alias": "champion"},
    "warm_start": {"champion": True, "previous_top_k": 2},
    "retention": {"nights": 30, "unregistered_models": 7},
    "lock": {"ttl": 60},
}


def write_config(folder: Path, changes: dict[str, Any] | None = None, *, space: str = SPACE) -> Path:
    (folder / "tiny.yaml").write_text(space)
    data = copy.deepcopy(NIGHTLY)
    for key, value in (changes or {}).items():
        data[key] = value
    path = folder / "nightly.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
