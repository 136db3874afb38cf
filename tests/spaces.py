"""A tiny real search-space file for the tests that run sweeps."""

from __future__ import annotations

from pathlib import Path

TINY = """\
study: tiny
dataset: mnist
seed: 0
limit: 300
objective: {{metric: val_accuracy, direction: maximize}}
sampler: {{name: {sampler}, seed: 0}}
pruner: {{name: none}}
budget: {{n_trials: {n_trials}, max_failure_rate: {rate}}}
fixed: {fixed}
space:
{space}
"""

DEFAULT_SPACE = """\
  width: {type: categorical, choices: [16, 32, 48, 64]}
  activation: {type: categorical, choices: [relu, tanh]}
"""


def write_space(
    tmp_path: Path,
    *,
    n_trials: int = 3,
    fixed: str = "{epochs: 2, batch_size: 64, optimizer: adam}",
    space: str = DEFAULT_SPACE,
    rate: str = "null",
    name: str = "tiny.yaml",
    sampler: str = "random",
) -> Path:
    path = tmp_path / name
    path.write_text(TINY.format(n_trials=n_trials, fixed=fixed, space=space.rstrip(), rate=rate, sampler=sampler))
    return path
