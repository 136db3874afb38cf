"""How to run a sweep, and the seam that replaces training (tests, benchmarks)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from mnist_sweep.model import Dataset, Params, TrainResult


RECYCLED = "recycled"
"""How a stopped reason starts when the process stopped at ``SweepOptions.max_trials`` (the study goes on)."""


@dataclass(frozen=True)
class SweepOptions:
    """Where things are stored and what to print.

    ``worker``: one of several processes sharing the study (joins the study's parent run,
    reseeds its sampler). ``parent_run_id`` with ``worker``: nest under that run without
    ending it (whoever created it ends it); without ``worker``: reopen that run and own it.
    ``system_metrics``: MLflow's CPU/memory (and GPU, with pynvml) samples in every trial run; on by
    default, since they cost about 0.03 s per trial (BENCHMARKS.md).
    ``max_trials``: this process stops after running that many trials (the study goes on in
    other processes): how ``run --workers N --max-trials-per-worker M`` recycles its workers.
    Heartbeats need no option: they are always on for PostgreSQL/MySQL storages and
    impossible on the others.
    """

    storage: str | None = None
    tracking_uri: str | None = None
    experiment: str | None = None
    data_dir: str | None = None
    tracking: bool = True
    quiet: bool = False
    log_models: bool = True
    system_metrics: bool = True
    parent_run_id: str | None = None
    worker: bool = False
    checkpoint_store: str | None = None
    """``--checkpoint-store``: where trial checkpoints go (:mod:`~mnist_sweep.sweep._checkpoints`)."""
    keep_checkpoints: int = 0
    """Keep the checkpoints of the study's best ``keep_checkpoints`` COMPLETE trials (0: delete every finished
    trial's), so that a later study's warm start continues them instead of training again (the nightly job)."""
    max_trials: int | None = None


class Trainer(Protocol):
    """Trains one model: :func:`mnist_sweep.model.train`'s signature, the part a sweep uses.

    Pass another to :func:`~mnist_sweep.sweep.run_sweep` (``trainer=``) to replace training
    in a test or a benchmark; everything else (Optuna, MLflow, recovery) runs for real.
    """

    def __call__(
        self,
        params: Params,
        dataset: Dataset,
        *,
        seed: int,
        callbacks: Sequence[Any],
        on_epoch: Callable[[int, Mapping[str, float]], None],
    ) -> TrainResult: ...


def keras_trainer() -> Trainer:
    """The real trainer (imports Keras)."""
    from mnist_sweep.model import train

    return train


class RepeatTrainer(Protocol):
    """Trains one model per seed in lockstep: :func:`mnist_sweep.model.train_seeds`'s signature.

    ``on_epoch(epoch, records)`` gets every seed's record of an epoch at once (``repeats: k``).
    """

    def __call__(
        self,
        params: Params,
        dataset: Dataset,
        *,
        seeds: Sequence[int],
        callbacks: Sequence[Any],
        on_epoch: Callable[[int, list[dict[str, float]]], None],
    ) -> list[TrainResult]: ...


def keras_repeat_trainer() -> RepeatTrainer:
    """The real lockstep trainer (imports Keras)."""
    from mnist_sweep.model import train_seeds

    return train_seeds
