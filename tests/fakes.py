"""A trainer that trains nothing, for tests of the engine around training (the public seam)."""

from __future__ import annotations

from typing import Any


def fake_trainer(calls: list[dict[str, Any]] | None = None, *, epochs: int = 3) -> Any:
    """Reports ``epochs`` epochs whose val_accuracy grows with the width; records each call."""
    from mnist_sweep.model import Levers, TrainResult

    def trainer(params: Any, dataset: Any, *, seed: int, callbacks: Any, on_epoch: Any) -> TrainResult:
        if calls is not None:
            calls.append(
                {
                    "params": dict(params.values),
                    "seed": seed,
                    "n_train": len(dataset.x_train),
                    "n_test": len(dataset.x_test),
                }
            )
        history = []
        for epoch in range(epochs):
            record = {"loss": 1.0 / (epoch + 1), "val_accuracy": params["width"] / 100 + epoch / 1000}
            history.append(record)
            on_epoch(epoch, record)
        return TrainResult(
            params=dict(params.given),
            history=history,
            test_accuracy=0.5,
            test_loss=1.0,
            levers=Levers(8, False, "arrays"),
        )

    return trainer
