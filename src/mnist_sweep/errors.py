"""The project's error types.

Two kinds, as in keras-tuner and Optuna: a :class:`TrialFailed` is one trial going wrong (the
sweep records it and carries on); every other :class:`MnistSweepError` is fatal (a bad config,
missing data, an unreachable server) and stops the command with a one-line message.
"""

from __future__ import annotations


class MnistSweepError(Exception):
    """Base class: a problem to report to the user in one line, without a traceback."""

    exit_code = 2


class ConfigError(MnistSweepError):
    """A search-space, sweep or parameter file (or flag) is invalid.

    The message names the file, the key path and the problem.
    """

    def __init__(self, message: str, *, source: str | None = None, key: str | None = None) -> None:
        self.source = source
        self.key = key
        where = ": ".join(part for part in (source, key) if part)
        super().__init__(f"{where}: {message}" if where else message)


class ParamError(ConfigError):
    """A model/training parameter has an unknown name or a value outside what is allowed."""


class DataError(MnistSweepError):
    """A data file is missing, truncated or corrupt, or no data source could be found."""


class TrackingError(MnistSweepError):
    """The MLflow tracking store or model registry cannot be used."""

    exit_code = 1


class ModelMissing(MnistSweepError):
    """The model to evaluate, promote or predict with cannot be found or loaded."""

    exit_code = 1


class DatasetMismatch(MnistSweepError):
    """The candidate and the alias holder were trained on different data sets."""

    exit_code = 2


class StorageError(MnistSweepError):
    """The Optuna storage cannot be reached or used."""

    exit_code = 1


class AlreadyRunning(MnistSweepError):
    """Another instance holds the lock for this job."""

    exit_code = 3


class TrialFailed(Exception):
    """This trial failed (diverged, ran out of memory, raised); record it and carry on."""


class TrainingFailed(MnistSweepError):
    """A single training run (``mnist-sweep train``) diverged or ran out of memory."""

    exit_code = 1


def first_line(error: BaseException | str, *, limit: int = 500) -> str:
    """The first non-empty line of an error (or its message), cut to ``limit`` characters.

    Every one-line ``error:`` message and every stored failure reason goes through this, so a
    multi-line library error never spills a traceback-like block onto the terminal or a tag.
    """
    text = error if isinstance(error, str) else str(error)
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if lines:
        return lines[0][:limit]
    return "" if isinstance(error, str) else type(error).__name__


class StudyFailing(MnistSweepError):
    """Too many trials of a sweep failed (``max_failure_rate``, or as many as the budget): stop it."""

    exit_code = 1


class LockLost(StorageError):
    """The lock expired under its owner (a stalled process) and another one may hold it now."""


class NoCompleteTrial(MnistSweepError):
    """The study has no COMPLETE trial yet: there is no best trial to show or promote."""

    exit_code = 1


class DashboardError(MnistSweepError):
    """optuna-dashboard is not installed."""

    exit_code = 1


class NightlyFailed(MnistSweepError):
    """The night did not finish (storage, tracking, data or training trouble): retry later."""

    exit_code = 1


class WorkerFailed(MnistSweepError):
    """Worker processes ended without finishing the study."""

    exit_code = 1


class CheckpointStoreError(ConfigError):
    """The checkpoint store cannot be written (refused before the first trial trains)."""


class CheckpointUnusable(Exception):
    """A trial's checkpoint is missing or corrupt: the trial restarts from epoch 0 (not fatal)."""
