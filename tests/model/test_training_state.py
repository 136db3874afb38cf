"""Checkpoint hook and resume in ``train``: saved before the epoch is reported, continued with ``initial_epoch``."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from mnist_sweep.model import TrainingState, capture_state, restore_state
from mnist_sweep.model._data import Dataset
from mnist_sweep.model._training import train

SMALL = {"width": 16, "epochs": 3, "optimizer": "adam"}


def test_checkpoint_comes_before_the_epoch_hook_and_resume_trains_only_the_rest(tiny_mnist: Dataset) -> None:
    events: list[tuple[str, int]] = []
    states: list[TrainingState] = []

    def checkpoint(epochs_done: int, model: Any, history: list[dict[str, float]]) -> None:
        events.append(("checkpoint", epochs_done))
        states.append(capture_state(model, epochs_done=epochs_done, history=history, seed=7))

    def on_epoch(epoch: int, record: dict[str, float]) -> None:
        events.append(("epoch", epoch + 1))

    full = train(SMALL, tiny_mnist, seed=7, checkpoint=checkpoint, on_epoch=on_epoch, evaluate_test=False)
    assert events == [(kind, n) for n in (1, 2, 3) for kind in ("checkpoint", "epoch")]
    assert [s.epochs_done for s in states] == [1, 2, 3]
    assert states[1].history == full.history[:2]
    assert states[1].optimizer, "the optimizer's variables (Adam's moments, its step) are saved"

    resumed_epochs: list[int] = []
    resumed = train(
        SMALL,
        tiny_mnist,
        seed=7,
        resume=states[1],
        on_epoch=lambda epoch, record: resumed_epochs.append(epoch + 1),
        evaluate_test=False,
    )
    assert resumed_epochs == [3], "only the third epoch is trained again"
    assert len(resumed.history) == 3 and resumed.history[:2] == full.history[:2]
    assert full.model is not None and resumed.model is not None
    # The optimizer continued where it stopped: the same number of steps as the uninterrupted run.
    assert int(resumed.model.optimizer.iterations.numpy()) == int(full.model.optimizer.iterations.numpy())


def test_restore_rejects_a_state_of_another_model(tiny_mnist: Dataset) -> None:
    from mnist_sweep.model import Params, build_model

    small = train({**SMALL, "epochs": 1}, tiny_mnist, evaluate_test=False)
    assert small.model is not None
    state = capture_state(small.model, epochs_done=1, history=small.history, seed=0)
    wider = build_model(Params.resolve({**SMALL, "width": 24}))
    with pytest.raises(ValueError):
        restore_state(wider, state)
    state.weights = [np.zeros_like(w) for w in state.weights]
    same = build_model(Params.resolve(SMALL))
    restore_state(same, state)
    assert all(not np.any(w) for w in same.get_weights())
