"""A model's training state as plain arrays: what a checkpoint holds and a resume restores.

Knows nothing of where checkpoints are stored (the sweep decides). The model is rebuilt from its
params and compiled as usual; only its weights and its optimizer's variables (step count and
slots, e.g. Adam's moments) are carried over, so a resumed fit continues the same optimization.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import keras

CheckpointHook = Callable[[int, "keras.Model", list[dict[str, float]]], None]
"""Called after each finished epoch, before its metrics go anywhere: ``(epochs_done, model, history)``."""


@dataclass
class TrainingState:
    """Everything a resume needs: ``epochs_done`` epochs trained, their history, the seed, the arrays."""

    epochs_done: int
    history: list[dict[str, float]]
    seed: int
    weights: list[np.ndarray] = field(default_factory=list)
    optimizer: list[np.ndarray] = field(default_factory=list)


def capture_state(model: keras.Model, *, epochs_done: int, history: list[dict[str, float]], seed: int) -> TrainingState:
    """The model's weights and optimizer variables now (copies, safe to write in the background)."""
    optimizer = getattr(model, "optimizer", None)
    variables = list(optimizer.variables) if optimizer is not None and optimizer.built else []
    return TrainingState(
        epochs_done=epochs_done,
        history=[dict(h) for h in history],
        seed=seed,
        weights=[np.array(w) for w in model.get_weights()],
        optimizer=[np.array(v.numpy()) for v in variables],
    )


def restore_state(model: keras.Model, state: TrainingState) -> None:
    """Load ``state`` into a freshly built, compiled ``model``; ValueError when they do not match."""
    model.set_weights(state.weights)
    if not state.optimizer:
        return
    model.optimizer.build(model.trainable_variables)
    variables = list(model.optimizer.variables)
    if len(variables) != len(state.optimizer):
        raise ValueError(f"optimizer has {len(variables)} variables, the checkpoint {len(state.optimizer)}")
    for variable, value in zip(variables, state.optimizer, strict=True):
        if tuple(variable.shape) != tuple(value.shape):
            raise ValueError(f"optimizer variable {variable.name}: shape {tuple(variable.shape)} vs {value.shape}")
        variable.assign(value)
