"""Lockstep training of several seeds (model/_repeats.py), on tiny real data."""

from __future__ import annotations

from typing import Any

import pytest

from mnist_sweep.model import train_seeds

PARAMS = {"width": 16, "epochs": 2, "batch_size": 64}


def test_seeds_train_in_lockstep_and_reproducibly(tiny_mnist: Any) -> None:
    rounds: list[tuple[int, int]] = []
    first = train_seeds(PARAMS, tiny_mnist, seeds=[1, 2], on_epoch=lambda e, records: rounds.append((e, len(records))))
    assert rounds == [(0, 2), (1, 2)]
    assert [len(r.history) for r in first] == [2, 2]
    assert first[0].history[-1]["val_accuracy"] != first[1].history[-1]["val_accuracy"] or (
        first[0].history[-1]["loss"] != first[1].history[-1]["loss"]
    )
    again = train_seeds(PARAMS, tiny_mnist, seeds=[1, 2])
    for a, b in zip(first, again, strict=True):
        assert [h["loss"] for h in a.history] == pytest.approx([h["loss"] for h in b.history])
        assert a.test_accuracy == b.test_accuracy and a.model is not None


def test_a_hook_that_raises_stops_every_seed(tiny_mnist: Any) -> None:
    class Stop(Exception):
        pass

    def stop(epoch: int, records: list[dict[str, float]]) -> None:
        raise Stop

    with pytest.raises(Stop):
        train_seeds(PARAMS, tiny_mnist, seeds=[1, 2], on_epoch=stop)


def test_plateau_and_warm_up_carry_over_the_per_epoch_fits(tiny_mnist: Any) -> None:
    """Each seed keeps its own plateau counters across its one-epoch fit calls (Keras resets them per fit)."""
    from test_axes import _RateAtEpochEnd

    seen = _RateAtEpochEnd()
    params = {
        "lr_schedule": "plateau",
        "warmup_epochs": 1,
        "optimizer": "sgd",
        "momentum": 0.0,
        "learning_rate": 1.0e-6,
        "width": 16,
        "epochs": 4,
    }
    results = train_seeds(params, tiny_mnist, seeds=[1, 2], callbacks=[seen])
    assert all(r.ok for r in results)
    # as in test_axes' single-model case, for each seed in turn: warm-up, full rate, halved after epoch 3
    per_epoch = [1e-6 / 3, 1e-6, 0.5e-6, 0.5e-6]
    assert seen.rates == pytest.approx([rate for rate in per_epoch for _ in range(2)], rel=1e-5)


def test_label_smoothing_trains_on_one_hot_targets(tiny_mnist: Any) -> None:
    results = train_seeds({**PARAMS, "label_smoothing": 0.1, "epochs": 1}, tiny_mnist, seeds=[1, 2])
    assert all(r.ok and r.test_accuracy is not None for r in results), [r.failure for r in results]
