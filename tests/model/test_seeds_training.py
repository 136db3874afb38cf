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
